"""The `shakeout triage` command: read the inputs, match, render; exit 0 whenever it could read."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from shakeout.catalog import load_catalog
from shakeout.report import check_output_path, write_atomically
from shakeout.triage.matcher import Scanner, load_rules
from shakeout.triage.reader import STDIN, check_sources, scan_sources
from shakeout.triage.render import render_json, render_markdown, render_text_string

PASTE_HINT = "shakeout triage: paste the crash output, then press Ctrl-D (or give log files as arguments)"


def triage_command(files: List[str], fmt: str, output: Optional[Path]) -> int:
    names = files or [STDIN]
    check_sources(names)
    if output is not None:
        check_output_path(output)
    if STDIN in names and sys.stdin.isatty():
        print(PASTE_HINT, file=sys.stderr)
    scanner = Scanner(load_rules(load_catalog().values()))
    stats = scan_sources(names, scanner)
    result = scanner.result(note for s in stats for note in s.notes())
    if fmt == "json":
        text = render_json(result, stats)
    elif fmt == "markdown":
        text = render_markdown(result, stats)
    else:
        width = 80 if output is not None or not sys.stdout.isatty() else None
        text = render_text_string(result, stats, width or _terminal_width())
    if output is not None:
        write_atomically(output, text)
        print(f"shakeout: wrote {fmt} triage to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _terminal_width() -> int:
    import shutil

    return max(60, min(shutil.get_terminal_size().columns, 120))
