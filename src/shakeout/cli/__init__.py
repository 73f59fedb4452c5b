"""Command line: parse, call the library, render, map to an exit code. Nothing else.

Exit codes (contract): 0 nothing vulnerable, 1 a defect is vulnerable (or corruption
reproduced), 2 usage error, 3 nothing vulnerable but something unknown; 130 interrupted.
Every error a user can cause is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import signal
import sys
import unicodedata
from pathlib import Path
from typing import Any, List, NoReturn, Optional, Sequence

from shakeout import __version__
from shakeout.bisect import options as bisect_options
from shakeout.catalog import Bug, load_catalog
from shakeout.cli.progress import ConsoleMonitor
from shakeout.engine import run_check, run_one, run_selftest
from shakeout.errors import ShakeoutError, UsageError
from shakeout.host import read_host
from shakeout.memtest.command import add_memtest_parser, cmd_memtest
from shakeout.probes import all_probes, get_probe
from shakeout.probes.base import is_decimal
from shakeout.report import FORMATS, check_output_path, write_atomically
from shakeout.report.text import (
    plain_console,
    render_bug,
    render_catalog_list,
    render_host,
    render_report,
    render_vdso,
    stdout_console,
)
from shakeout.results import RunReport
from shakeout.runner import parse_probe_options

MAX_DURATION_S = 7 * 24 * 3600
MAX_WORKERS = 1024
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to look) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0 or value > MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"{text} s is out of range (more than 0, at most {MAX_DURATION_S} s = 7 days)")
    return value


def _workers(text: str) -> int:
    if not is_decimal(text) or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"'{text}' is not a worker count from 1 to {MAX_WORKERS}")
    return int(text)


def _memory(text: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*[MG]", text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a memory size like 512M or 2G")
    return text


def _workers_or_bytes(text: str) -> int:
    if not is_decimal(text) or not 0 < int(text) <= 1 << 24:
        raise argparse.ArgumentTypeError(f"'{text}' is not a byte count from 1 to 16777216")
    return int(text)


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="text", choices=list(FORMATS), help="output format (default: text)")
    p.add_argument("--output", type=Path, help="write the report to FILE atomically instead of stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shakeout", description="Is this platform silently corrupting memory?")
    parser.add_argument("--version", action="version", version="shakeout " + __version__)
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("check", help="which known bugs can hurt this machine? (~15 s)")
    p.add_argument("--duration", type=_duration, help="seconds per probe (default: share of a ~12 s budget)")
    p.add_argument("--only", nargs="+", metavar="BUG", help="assess only these catalog bugs")
    p.add_argument("--strict", action="store_true", help="a vulnerable hazard fails the run too")
    _add_output_options(p)

    sub.add_parser("list", help="the catalog of known bugs")

    p = sub.add_parser("show", help="one bug: mechanism, affected ranges, fix, mitigations, references")
    p.add_argument("bug")

    p = sub.add_parser("run", help="run one probe, with live progress")
    p.add_argument("probe")
    p.add_argument("--duration", type=_duration, help="seconds (default: the probe's default)")
    p.add_argument("--workers", type=_workers, help="parallel workers (default: the probe's choice)")
    p.add_argument("--keep-going", action="store_true", help="do not stop at the first reproduced corruption")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a probe option")
    _add_output_options(p)

    p = sub.add_parser("host", help="the facts the verdicts use")
    p.add_argument("--format", default="text", choices=["text", "json"])

    p = sub.add_parser("vm", help="boot a kernel under QEMU and run the probes inside it")
    p.add_argument("--kernel", type=Path, required=True, help="kernel image (bzImage, /boot/vmlinuz-*)")
    p.add_argument("--probes", help="comma-separated probe ids (default: every probe for the kernel's arch)")
    p.add_argument("--duration", type=_duration, default=5.0, help="seconds per probe (default 5)")
    p.add_argument("--cpus", type=_workers, default=2, help="guest CPUs (default 2)")
    p.add_argument("--memory", default="512M", type=_memory, help="guest memory (default 512M)")
    p.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"], help="KVM if it works, else TCG")
    p.add_argument("--cpu", default="max", help="QEMU CPU model (default max)")
    _add_output_options(p)

    p = sub.add_parser("vdso", help="stack use of every vDSO function, static and measured")
    p.add_argument("file", nargs="?", type=Path, help="a vDSO image or vDSO-like shared object (default: this vDSO)")
    p.add_argument("--budget", type=_workers_or_bytes, default=104, help="flag functions above this (default 104)")
    measuring = p.add_mutually_exclusive_group()
    measuring.add_argument(
        "--measure",
        action="store_true",
        help="also measure FILE: this loads FILE with dlopen and RUNS CODE FROM FILE (its constructors "
        "included), so only for a library you trust; without it a FILE is only read (this kernel's vDSO "
        "is measured by default)",
    )
    measuring.add_argument("--no-measure", action="store_true", help="static analysis only, also for this vDSO")
    p.add_argument("--format", default="text", choices=["text", "json"])
    p.add_argument("--output", type=Path, help="write the report to FILE atomically instead of stdout")

    for name, helptext in (
        ("bisect", "find the changes whose enabling makes a command fail (Go's bisect protocol, flaky-aware)"),
        ("config-bisect", "find the kernel options whose change from GOOD to BAD makes a command fail"),
    ):
        p = sub.add_parser(name, help=helptext)
        if name == "config-bisect":
            p.add_argument("good", type=Path, help="the configuration that passes")
            p.add_argument("bad", type=Path, help="the configuration that fails")
        p.add_argument("--confidence", type=bisect_options.confidence, default=0.99,
                       help="of the final answer (default 0.99)")  # fmt: skip
        p.add_argument("-j", "--jobs", type=bisect_options.jobs, default=1, help="trials run in parallel (default 1)")
        p.add_argument("--timeout", type=bisect_options.timeout, help="seconds per trial")
        p.add_argument("--hang", choices=["fail", "error"], default="error", help="what a timed-out trial counts as")
        p.add_argument("--log", type=Path, help="record every trial; rerun with the same log to resume")
        p.add_argument("--max", type=bisect_options.change_sets, default=1, help="look for up to this many change sets")
        p.add_argument("--max-trials", type=bisect_options.trials, default=2000,
                       help="give up after this many trials (default 2000)")  # fmt: skip
        p.add_argument("--format", default="text", choices=["text", "json"])
        p.epilog = "The target follows --: [VAR=value...] CMD ARGS...; the word PATTERN in them is replaced."

    sub.add_parser("cc", help="compiler wrapper adding options to some objects by hash (see shakeout cc --help)")

    p = sub.add_parser("triage", help="from pasted crash output to ranked suspects and the commands that decide")
    p.add_argument("files", nargs="*", metavar="FILE", help="crash logs; '-' or none reads standard input")
    p.add_argument("--format", default="text", choices=["text", "json", "markdown"], help="(default: text)")
    p.add_argument("--output", type=Path, help="write the report to FILE atomically instead of stdout")

    add_memtest_parser(sub)

    p = sub.add_parser("selftest", help="inject each probe's fault and show it is caught here")
    p.add_argument("--only", nargs="+", metavar="PROBE", help="test only these probes")
    _add_output_options(p)
    return parser


def _emit(report: RunReport, fmt: str, output: Optional[Path]) -> None:
    if output is not None:
        write_atomically(output, FORMATS[fmt](report))
        print(f"shakeout: wrote {fmt} report to {output}", file=sys.stderr)
    elif fmt == "text":
        render_report(report, stdout_console())
    else:
        sys.stdout.write(FORMATS[fmt](report))


def _exit(report: RunReport) -> int:
    assert report.exit_status is not None, "every engine function settles its report"
    return report.exit_status


def _select_bugs(only: Optional[List[str]]) -> List[Bug]:
    catalog = load_catalog()
    if not only:
        return list(catalog.values())
    unknown = [b for b in only if b not in catalog]
    if unknown:
        raise UsageError("unknown bug '{}' (known: {})".format(unknown[0], ", ".join(catalog)))
    return [catalog[b] for b in only]


def _cmd_check(args: argparse.Namespace) -> int:
    if args.output:
        check_output_path(args.output)
    bugs = _select_bugs(args.only)
    host = read_host()
    with ConsoleMonitor() as monitor:
        report = run_check(host, bugs, all_probes(), args.duration, monitor, strict=args.strict)
    _emit(report, args.format, args.output)
    return _exit(report)


def _cmd_run(args: argparse.Namespace) -> int:
    spec = get_probe(args.probe)
    options = parse_probe_options(spec, args.set)
    if args.output:
        check_output_path(args.output)
    host = read_host()
    with ConsoleMonitor() as monitor:
        report = run_one(
            host,
            spec,
            list(load_catalog().values()),
            args.duration,
            args.workers,
            args.keep_going,
            options,
            monitor,
        )
    _emit(report, args.format, args.output)
    return _exit(report)


def _cmd_selftest(args: argparse.Namespace) -> int:
    specs = [get_probe(p) for p in args.only] if args.only else list(all_probes().values())
    if args.output:
        check_output_path(args.output)
    host = read_host()
    with ConsoleMonitor() as monitor:
        report = run_selftest(host, specs, monitor)
    _emit(report, args.format, args.output)
    return _exit(report)


def _cmd_vm(args: argparse.Namespace) -> int:
    from shakeout.vm import run_vm  # QEMU support is only loaded when asked for

    if args.output:
        check_output_path(args.output)
    known = all_probes()
    if args.probes:
        specs = [get_probe(p.strip()) for p in args.probes.split(",") if p.strip()]
    else:
        specs = [s for s in known.values() if "linux" in s.needs.os and (not s.needs.arch or "x86_64" in s.needs.arch)]
    with ConsoleMonitor() as monitor:
        report = run_vm(
            args.kernel,
            specs,
            list(load_catalog().values()),
            args.duration,
            args.cpus,
            args.memory,
            args.accel,
            args.cpu,
            monitor,
        )
    _emit(report, args.format, args.output)
    return _exit(report)


def _cmd_vdso(args: argparse.Namespace) -> int:
    from shakeout.vdso.report import vdso_report

    if args.output:
        check_output_path(args.output)
    # A FILE is measured only on request (measuring runs its code); this vDSO by default.
    doc = vdso_report(args.file, args.budget, measure=args.measure if args.file is not None else not args.no_measure)
    if args.format == "json":
        text = json.dumps(doc, indent=2) + "\n"
        if args.output:
            write_atomically(args.output, text)
        else:
            sys.stdout.write(text)
    elif args.output:
        buffer = io.StringIO()
        render_vdso(doc, plain_console(buffer))
        write_atomically(args.output, buffer.getvalue())
    else:
        render_vdso(doc, stdout_console())
    if doc["dangerous"]:
        return 1
    return 3 if doc["incomplete"] or doc["inconsistent"] else 0  # no bound to vouch for: unknown


def _bisect_log(message: str) -> None:
    print("shakeout bisect: " + message, file=sys.stderr, flush=True)


def _cmd_bisect(args: argparse.Namespace) -> int:
    from shakeout.bisect.report import render
    from shakeout.bisect.session import BisectRequest, SearchSettings, run_bisect

    request = BisectRequest(
        command=args.command,
        search=SearchSettings(args.confidence, args.jobs, args.max_trials, args.max),
        timeout_s=args.timeout,
        hang_is_failure=args.hang == "fail",
        log_path=args.log,
        good=getattr(args, "good", None),
        bad=getattr(args, "bad", None),
    )
    sys.stdout.write(render(run_bisect(request, _bisect_log), args.format))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    render_catalog_list(list(load_catalog().values()), stdout_console())
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    catalog = load_catalog()
    if args.bug not in catalog:
        raise UsageError("unknown bug '{}' (known: {})".format(args.bug, ", ".join(catalog)))
    render_bug(catalog[args.bug], stdout_console())
    return 0


def _cmd_host(args: argparse.Namespace) -> int:
    host = read_host()
    if args.format == "json":
        print(json.dumps(host.to_dict(), indent=2))
    else:
        render_host(host, stdout_console())
    return 0


def _cmd_triage(args: argparse.Namespace) -> int:
    from shakeout.triage.cli import triage_command

    return triage_command(args.files, args.format, args.output)


COMMANDS = {
    "check": _cmd_check,
    "run": _cmd_run,
    "selftest": _cmd_selftest,
    "vm": _cmd_vm,
    "vdso": _cmd_vdso,
    "bisect": _cmd_bisect,
    "config-bisect": _cmd_bisect,
    "list": _cmd_list,
    "show": _cmd_show,
    "host": _cmd_host,
    "memtest": cmd_memtest,
    "triage": _cmd_triage,
}


def one_line(text: str) -> str:
    """A message stays one line and cannot drive the terminal: control and separator
    characters (which may come from the user's own input) are shown escaped."""
    return "".join(
        repr(c)[1:-1] if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in text.replace("\n", " ")
    )


def _terminate(signum: int, frame: Any) -> None:
    # Unwind normally so that every runner's finally kills its probe's process group.
    raise SystemExit(128 + signum)


def main(argv: Optional[Sequence[str]] = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv[:1] == ["cc"]:
            from shakeout.bisect.cc import cc_entry

            return cc_entry(argv[1:])
        command: List[str] = []
        if argv[:1] in (["bisect"], ["config-bisect"]) and "--" in argv:
            split = argv.index("--")
            argv, command = argv[:split], argv[split + 1 :]
        args = build_parser().parse_args(argv)
        args.command = command
        return COMMANDS[args.cmd](args)
    except ShakeoutError as exc:
        print(f"shakeout: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("shakeout: interrupted; all probe processes were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a defect of shakeout, not of the input
        if os.environ.get("SHAKEOUT_DEBUG"):
            raise
        print(
            f"shakeout: internal error: {type(exc).__name__}: {exc} (set SHAKEOUT_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
