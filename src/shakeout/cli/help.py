"""Help texts that commands share: the valid bug and probe names, for the `--help` of the
commands that take them. Called from a command's `configure`, so only the command asked
about loads the catalog and the probe registry."""

from __future__ import annotations

import argparse
import textwrap

WIDTH = 78


def catalog_names() -> str:
    from shakeout.catalog import load_catalog

    return ", ".join(load_catalog())


def probe_names() -> str:
    from shakeout.probes import all_probes

    return ", ".join(all_probes())


def name_lists(bugs: bool = True, probes: bool = True) -> str:
    """'bugs: a, b, …' and 'probes: c, d, …', wrapped to the help's width."""
    parts = ([("bugs", catalog_names())] if bugs else []) + ([("probes", probe_names())] if probes else [])
    return "\n".join(
        textwrap.fill(f"{label}: {names}", WIDTH, subsequent_indent="  ", break_on_hyphens=False)
        for label, names in parts
    )


def add_epilog(p: argparse.ArgumentParser, examples: str, bugs: bool = False, probes: bool = False) -> None:
    """The epilog: real examples, then the names the command accepts."""
    names = name_lists(bugs, probes) if bugs or probes else ""
    p.epilog = "examples:\n" + examples.strip("\n") + ("\n\n" + names if names else "")
