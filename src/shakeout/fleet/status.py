"""`shakeout status`: the last scheduled check in one line, in milliseconds, without probes.

It reads STATE_DIR/report.json (see shakeout.fleet.state) and answers:

    ok       no defect vulnerable (with --hazards: no hazard present)
    problem  a defect vulnerable (with --hazards: a hazard present), named
    unknown  no report, unreadable, not a shakeout check report, or older than --max-age

Exit status, plain:        0 ok, 1 problem, 3 unknown (as `check`), 2 usage error.
Exit status, --plugin npd: node-problem-detector's custom plugin protocol
(kubernetes/node-problem-detector pkg/custompluginmonitor/plugin/plugin.go): 0 OK,
1 NonOK, anything else Unknown; we use 2. NPD keeps the trimmed stdout, cut at
max_output_length bytes (default 80), as the condition or event message, so the line is
ASCII and at most 80 bytes. Bugs a check could not decide do not make the node unknown:
they are named in the line, and the report is fresh evidence of everything else.

This module is on the fast path: `shakeout status` with well-formed options is answered
by status_main without argparse's parser or the full CLI; --help and any usage error go
through the full CLI (shakeout.cli.status), which reports them as every command does.
"""

from __future__ import annotations

import argparse  # the module only (cheap); its parser is built on the full CLI's path
import datetime as dt
import json
import math
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

from shakeout.fleet.reports import HostReport, parse_report
from shakeout.fleet.state import DEFAULT_STATE_DIR, REPORT_NAME, report_path

DEFAULT_MAX_AGE_S = 2 * 24 * 3600  # a daily timer, its randomized delay and a missed day's catch-up
MAX_REPORT_BYTES = 16 << 20
NPD_MAX_OUTPUT_BYTES = 80
FUTURE_SLACK_S = 300  # clocks of the writer and the reader may differ a little
PLAIN_EXIT = {"ok": 0, "problem": 1, "unknown": 3}
NPD_EXIT = {"ok": 0, "problem": 1, "unknown": 2}


@dataclass(frozen=True)
class Status:
    state: str  # ok | problem | unknown
    line: str


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{max(0, int(seconds))}s ago"
    if seconds < 2 * 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)}h ago"
    return f"{int(seconds // 86400)}d ago"


def _read_report(path: Path) -> bytes:
    """The report's bytes; OSError or ValueError with a short reason otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = f.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        raise ValueError(f"larger than {MAX_REPORT_BYTES >> 20} MiB")
    return data


def _load(state_dir: Path) -> Union[HostReport, Status]:
    """The parsed report, or why there is none; the reason comes before the (maybe long) path."""
    path = report_path(state_dir)
    try:
        doc = json.loads(_read_report(path))
    except FileNotFoundError:
        if not os.path.isdir(state_dir):
            return Status("unknown", f"unknown: no state directory {state_dir} (has the timer run?)")
        return Status("unknown", f"unknown: no report yet (has the timer run?) in {state_dir}")
    except OSError as exc:
        return Status("unknown", f"unknown: cannot read {REPORT_NAME}: {exc.strerror or exc} in {state_dir}")
    except ValueError as exc:  # not UTF-8 / not JSON / not a regular file / too large
        return Status("unknown", f"unknown: {REPORT_NAME}: {str(exc).splitlines()[0]} in {state_dir}")
    parsed = parse_report(doc, str(path))
    if isinstance(parsed, HostReport):
        return parsed
    return Status("unknown", f"unknown: {REPORT_NAME}: {parsed.reason} in {state_dir}")


def _names(ids: List[str], room: int) -> str:
    """ids joined by commas, ending '+N more' when they do not fit in room characters."""
    shown: List[str] = []
    for i, bug_id in enumerate(ids):
        rest = len(ids) - i - 1
        candidate = ", ".join([*shown, bug_id]) + (f" +{rest} more" if rest else "")
        if len(candidate) > room and shown:
            return ", ".join(shown) + f" +{len(ids) - i} more"
        shown.append(bug_id)
    return ", ".join(shown)


def judge(report: HostReport, now: dt.datetime, max_age_s: float, hazards: bool) -> Status:
    """The status of one parsed report at time now."""
    age_s = (now - report.started_at).total_seconds()
    if age_s > max_age_s:
        return Status("unknown", f"unknown: the last check is {_ago(age_s)}, older than {int(max_age_s)}s")
    if age_s < -FUTURE_SLACK_S:
        return Status("unknown", f"unknown: the last check is dated {int(-age_s)}s in the future")
    kind, alarming, clean = ("hazard", "present", "absent") if hazards else ("defect", "vulnerable", "not-vulnerable")
    bugs = [b for b in report.bugs if b.kind == kind]
    found = [b.bug_id for b in bugs if b.verdict == alarming]
    undecided = [b.bug_id for b in bugs if b.verdict == "unknown"]
    when = f" ({_ago(age_s)})"
    if found:
        head = "hazard present: " if hazards else "VULNERABLE: "
        room = NPD_MAX_OUTPUT_BYTES - len(head) - len(when)
        return Status("problem", head + _names(found, room) + when)
    head = f"ok: {sum(1 for b in bugs if b.verdict == clean)} {kind}s {clean}"
    if undecided:
        tail = f", {len(undecided)} unknown: "
        room = NPD_MAX_OUTPUT_BYTES - len(head) - len(tail) - len(when)
        head += tail + _names(undecided, room)
    return Status("ok", head + when)


def read_status(state_dir: Path, max_age_s: float, hazards: bool = False, now: Optional[dt.datetime] = None) -> Status:
    loaded = _load(state_dir)
    if isinstance(loaded, Status):
        return loaded
    return judge(loaded, now or dt.datetime.now(dt.timezone.utc), max_age_s, hazards)


def printable(line: str) -> str:
    """One line that cannot drive a terminal: control characters (from a path the user named) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)


def npd_line(line: str) -> str:
    """ASCII, one line, at most NPD_MAX_OUTPUT_BYTES bytes: what NPD keeps, cut by us rather than by it."""
    text = printable(line).encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= NPD_MAX_OUTPUT_BYTES else text[: NPD_MAX_OUTPUT_BYTES - 3] + "..."


def _max_age(text: str) -> float:
    value = _positive_seconds(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of seconds")
    return value


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", choices=["npd"], help="speak node-problem-detector's custom plugin protocol")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help=f"default: {DEFAULT_STATE_DIR}")
    p.add_argument(
        "--max-age",
        type=_max_age,
        default=DEFAULT_MAX_AGE_S,
        metavar="S",
        help=f"a report older than S seconds is unknown (default: {DEFAULT_MAX_AGE_S})",
    )
    p.add_argument("--hazards", action="store_true", help="report hazards (present/absent) instead of defects")


def status_command(args: argparse.Namespace) -> int:
    status = read_status(args.state_dir, args.max_age, args.hazards)
    if args.plugin == "npd":
        sys.stdout.write(npd_line(status.line) + "\n")
        return NPD_EXIT[status.state]
    sys.stdout.write(printable(status.line) + "\n")
    return PLAIN_EXIT[status.state]


def parse_plain(argv: Sequence[str]) -> Optional[argparse.Namespace]:
    """The options a scheduler passes, parsed without argparse's import cost; None for anything
    else (--help, an unknown option, a bad value), which the full CLI then parses and reports."""
    args = argparse.Namespace(plugin=None, state_dir=DEFAULT_STATE_DIR, max_age=DEFAULT_MAX_AGE_S, hazards=False)
    words = [part for word in argv for part in (word.split("=", 1) if word.startswith("--") else [word])]
    while words:
        option = words.pop(0)
        if option == "--hazards":
            args.hazards = True
            continue
        if option not in ("--plugin", "--state-dir", "--max-age") or not words:
            return None
        value = words.pop(0)
        if option == "--plugin" and value == "npd":
            args.plugin = value
        elif option == "--state-dir" and value and "\0" not in value:
            args.state_dir = Path(value)
        elif option == "--max-age" and _positive_seconds(value) is not None:
            args.max_age = _positive_seconds(value)
        else:
            return None
    return args


def _positive_seconds(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def status_main(argv: Sequence[str]) -> Optional[int]:
    """The fast path: answer well-formed options at once; None to let the full CLI handle argv."""
    args = parse_plain(argv)
    if args is None:
        return None
    try:
        return status_command(args)
    except BrokenPipeError:
        return 0
