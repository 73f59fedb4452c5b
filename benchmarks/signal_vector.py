"""Time-to-detect: the Go wiki checker vs shakeout's signal-vector probe, side by side.

Both programs run under the same fault injector (libshakeout-inject-sigframe.so, the one
`shakeout selftest` uses), which edits the vector state saved in the signal frame after
every 300th signal, so that sigreturn loads wrong registers: the symptom of
CVE-2019-19602. Rounds alternate between the two programs; each round measures the wall
time from start to the program's exit with "corruption found". A round that reaches the
cap without detecting counts as a miss and is censored at the cap.

Modes: `ymm` (upper halves of YMM0-15: what the Linux bug corrupted) and `xmm8-15`
(the FreeBSD-EN-22:02 symptom; the Go checker only compares YMM0-3, so it cannot see it).

Usage: python benchmarks/signal_vector.py [--rounds 10] [--cap 60] [--xmm-go-rounds 3]
Needs: shakeout installed (pip install .), cc, and ../shared/reference beside the project.
"""

# ruff: noqa: E402 (the path fix below must run before the other imports)
from __future__ import annotations

import os
import sys

# Run as a script, benchmarks/ comes first on sys.path, where bisect.py would shadow the
# standard library's bisect module (imported by random and statistics).
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from shakeout.proc import kill_group
from shakeout.runner import binary_path, injector_path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "go-wiki-signal-vector-test.c"
EVERY = "300"


def build_go_checker(out_dir: Path) -> Path:
    if not REFERENCE.is_file():
        sys.exit(f"benchmark: the reference checker is missing: {REFERENCE}")
    exe = out_dir / "go-wiki-signal-vector-test"
    subprocess.run(["cc", "-O2", "-pthread", str(REFERENCE), "-o", str(exe)], check=True)
    return exe


def timed_run(argv: List[str], env: Dict[str, str], cap_s: float) -> Tuple[float, bool]:
    """(seconds until exit, detected) for one run in its own process group."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = proc.wait(timeout=cap_s + 10)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        kill_group(proc.pid)
        proc.wait()
    elapsed = time.monotonic() - started
    return min(elapsed, cap_s), code == 1


def summarize(name: str, runs: List[Tuple[float, bool]]) -> Optional[float]:
    if not runs:
        return None
    times = [t for t, _ in runs]
    detected = sum(1 for _, d in runs if d)
    median = statistics.median(times)
    print(
        f"  {name:<34} detected {detected:>2}/{len(runs):<2}  median {median:>8.3f} s  "
        f"min {min(times):>8.3f} s  max {max(times):>8.3f} s"
    )
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds per program in ymm mode (default 10)")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds before a round counts as a miss")
    parser.add_argument("--xmm-rounds", type=int, default=10, help="rounds of shakeout in xmm8-15 mode")
    parser.add_argument("--xmm-go-rounds", type=int, default=3, help="rounds of the Go checker in xmm8-15 mode")
    parser.add_argument("--xmm-go-cap", type=float, default=20.0, help="cap for the Go checker in xmm8-15 mode")
    args = parser.parse_args()

    shim = str(injector_path("inject_sigframe"))
    probe = str(binary_path("signal_vector"))
    with tempfile.TemporaryDirectory(prefix="shakeout-bench-") as tmp:
        go = str(build_go_checker(Path(tmp)))

        def env(mode: str, cap: float) -> Dict[str, str]:
            return dict(
                os.environ,
                LD_PRELOAD=shim,
                SHAKEOUT_INJECT=mode,
                SHAKEOUT_INJECT_EVERY=EVERY,
                DURATION_S=str(int(cap)),
            )

        probe_argv = [probe, "--duration", str(args.cap)]
        print(f"signal-vector benchmark: injected corruption after every {EVERY}th signal, cap {args.cap:.0f} s")
        print(f"mode ymm (YMM upper halves), {args.rounds} alternating rounds each:")
        go_runs: List[Tuple[float, bool]] = []
        our_runs: List[Tuple[float, bool]] = []
        for i in range(args.rounds):
            go_runs.append(timed_run([go], env("ymm", args.cap), args.cap))
            our_runs.append(timed_run(probe_argv, env("ymm", args.cap), args.cap))
            print(
                "  round {:>2}: go-wiki {:>8.3f} s ({})   shakeout {:>7.3f} s ({})".format(
                    i + 1,
                    go_runs[-1][0],
                    "caught" if go_runs[-1][1] else "MISSED",
                    our_runs[-1][0],
                    "caught" if our_runs[-1][1] else "MISSED",
                ),
                flush=True,
            )
        go_median = summarize("go wiki checker", go_runs)
        our_median = summarize("shakeout signal-vector", our_runs)
        if go_median and our_median:
            ratio = our_median / go_median
            print(
                "  ratio shakeout/go median time-to-detect: {:.4f} (target <= 0.25) -> {}".format(
                    ratio, "MET" if ratio <= 0.25 else "NOT MET"
                )
            )

        print("mode xmm8-15 (XMM8-15 low halves):")
        xmm_runs = [timed_run(probe_argv, env("xmm", args.cap), args.cap) for _ in range(args.xmm_rounds)]
        summarize("shakeout signal-vector", xmm_runs)
        in_time = sum(1 for t, d in xmm_runs if d and t <= 5.0)
        print(
            "  shakeout caught {}/{} rounds within 5 s (target: all) -> {}".format(
                in_time, len(xmm_runs), "MET" if in_time == len(xmm_runs) else "NOT MET"
            )
        )
        go_xmm = [timed_run([go], env("xmm", args.xmm_go_cap), args.xmm_go_cap) for _ in range(args.xmm_go_rounds)]
        summarize(f"go wiki checker (cap {args.xmm_go_cap:.0f} s)", go_xmm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
