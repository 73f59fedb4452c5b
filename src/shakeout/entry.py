"""The `shakeout` command. `shakeout cc` runs once per compilation, so it takes a light
path that imports only the pattern matcher; everything else loads the full CLI."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:2] == ["cc"]:
        from shakeout.bisect.cc import cc_entry

        return cc_entry(sys.argv[2:])
    from shakeout.cli import main as cli_main

    return cli_main()
