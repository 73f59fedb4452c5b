"""The `shakeout` command. `shakeout cc` runs once per compilation, so it takes a light
path that imports only the pattern matcher (so does `shakeout bisect-match`, run once per
change by shell targets); `shakeout status` (NPD's plugin) one that
imports only the report reader; everything else loads the full CLI."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:2] == ["cc"]:
        from shakeout.bisect.cc import cc_entry

        return cc_entry(sys.argv[2:])
    if sys.argv[1:2] == ["bisect-match"] and not {"-h", "--help"} & set(sys.argv[2:3]):
        from shakeout.bisect.target import bisect_match_main

        return bisect_match_main(sys.argv[2:])
    if sys.argv[1:2] == ["status"]:  # node-problem-detector runs it every few minutes: milliseconds count
        from shakeout.fleet.status import status_main

        answered = status_main(sys.argv[2:])
        if answered is not None:
            return answered
    from shakeout.cli import main as cli_main

    return cli_main()
