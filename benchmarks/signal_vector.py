"""Time-to-detect: the Go wiki checker vs shakeout's signal-vector probe, side by side.

Both programs run under the same fault injector (libshakeout-inject-sigframe.so, the one
`shakeout selftest` uses), which edits the vector state saved in the signal frame of
every 300th signal whose frame the kernel had to fault in (as the bug did), so that
sigreturn loads wrong registers: the symptom of CVE-2019-19602. Rounds alternate between
the two programs. Unit: seconds until the corruption is reported.
- wall: from spawn to the program's exit with "corruption found", measured the same way
  for both programs (the equal-work comparison);
- own: shakeout's `detected_after_s`, its own clock from process start (a constructor)
  to the failed comparison; the Go checker reports no time of its own.
A round that reaches the cap without detecting counts as a miss, censored at the cap.

Modes: `ymm` (upper halves of YMM0-15: what the Linux bug corrupted), `xmm8-15` (the
FreeBSD-EN-22:02 symptom; the Go checker only compares YMM0-3, so it cannot see it), and
`zmm` (k0-7, ZMM0-15 bits 256-511, ZMM16-31; AVX-512 hosts; shakeout only).
The probe runs with its defaults (fault-in=auto, pin-pairs=on, 2 workers per CPU).

Usage: python benchmarks/signal_vector.py [--rounds 10] [--cap 60] [--xmm-go-rounds 3] [--zmm-rounds 10]
Needs: shakeout installed (pip install .), cc, and ../shared/reference beside the project.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from shakeout.binaries import binary_path, injector_path
from shakeout.proc import kill_group

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "go-wiki-signal-vector-test.c"
EVERY = "300"


def build_go_checker(out_dir: Path) -> Path:
    if not REFERENCE.is_file():
        sys.exit(f"benchmark: the reference checker is missing: {REFERENCE}")
    exe = out_dir / "go-wiki-signal-vector-test"
    subprocess.run(["cc", "-O2", "-pthread", str(REFERENCE), "-o", str(exe)], check=True)
    return exe


Run = Tuple[float, bool, Optional[float]]  # (wall seconds, detected, the probe's own detected_after_s)


def own_detection_s(stdout: bytes) -> Optional[float]:
    """detected_after_s from the probe's result line, if it has one."""
    for line in stdout.decode("utf-8", "replace").splitlines():
        if '"event":"result"' in line:
            value = json.loads(line).get("evidence", {}).get("detected_after_s")
            return float(value) if value is not None else None
    return None


def timed_run(argv: List[str], env: Dict[str, str], cap_s: float) -> Run:
    """One run in its own process group: wall time to exit, detected, and the probe's own time."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=cap_s + 10)
    except subprocess.TimeoutExpired:
        out = b""
    finally:
        kill_group(proc.pid)
        proc.wait()
    elapsed = time.monotonic() - started
    detected = proc.returncode == 1
    return min(elapsed, cap_s), detected, own_detection_s(out) if detected else None


def summarize(name: str, runs: List[Run]) -> Optional[float]:
    """Prints the runs' statistics; returns the median wall time."""
    if not runs:
        return None
    times = [t for t, _, _ in runs]
    detected = sum(1 for _, d, _ in runs if d)
    median = statistics.median(times)
    print(
        f"  {name:<34} detected {detected:>2}/{len(runs):<2}  wall median {median:>7.3f} s  "
        f"min {min(times):>7.3f} s  max {max(times):>7.3f} s"
    )
    own = [o for _, _, o in runs if o is not None]
    if own:
        print(
            f"  {'':<34} own clock (detected_after_s) median {statistics.median(own):>7.4f} s  "
            f"min {min(own):.4f} s  max {max(own):.4f} s"
        )
    return median


def own_median(runs: List[Run]) -> Optional[float]:
    own = [o for _, d, o in runs if d and o is not None]
    return statistics.median(own) if len(own) == len(runs) else None


def machine_load() -> str:
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return "load average {} (1/5/15 min) on {} CPUs".format(" ".join(load), os.cpu_count())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds per program in ymm mode (default 10)")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds before a round counts as a miss")
    parser.add_argument("--xmm-rounds", type=int, default=10, help="rounds of shakeout in xmm8-15 mode")
    parser.add_argument("--xmm-go-rounds", type=int, default=3, help="rounds of the Go checker in xmm8-15 mode")
    parser.add_argument("--xmm-go-cap", type=float, default=20.0, help="cap for the Go checker in xmm8-15 mode")
    parser.add_argument("--zmm-rounds", type=int, default=10, help="rounds of shakeout in zmm mode (AVX-512 only)")
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
        print(
            f"signal-vector benchmark: corruption injected into every {EVERY}th faulted-in frame, cap {args.cap:.0f} s"
        )
        print("at start: " + machine_load())
        print(f"mode ymm (YMM upper halves), {args.rounds} alternating rounds each:")
        go_runs: List[Run] = []
        our_runs: List[Run] = []
        for i in range(args.rounds):
            go_runs.append(timed_run([go], env("ymm", args.cap), args.cap))
            our_runs.append(timed_run(probe_argv, env("ymm", args.cap), args.cap))
            print(
                "  round {:>2}: go-wiki {:>8.3f} s ({})   shakeout {:>7.3f} s ({}, own clock {})".format(
                    i + 1,
                    go_runs[-1][0],
                    "caught" if go_runs[-1][1] else "MISSED",
                    our_runs[-1][0],
                    "caught" if our_runs[-1][1] else "MISSED",
                    f"{our_runs[-1][2]:.4f} s" if our_runs[-1][2] is not None else "-",
                ),
                flush=True,
            )
        go_median = summarize("go wiki checker", go_runs)
        our_median = summarize("shakeout signal-vector", our_runs)
        if go_median and our_median:
            ratio = our_median / go_median
            print(
                "  ratio shakeout/go median wall time-to-detect: {:.4f} (target <= 0.25) -> {}".format(
                    ratio, "MET" if ratio <= 0.25 else "NOT MET"
                )
            )
            own = own_median(our_runs)
            if own is not None:
                print(f"  ratio shakeout own clock / go wall: {own / go_median:.4f}")

        print("mode xmm8-15 (XMM8-15 low halves):")
        xmm_runs = [timed_run(probe_argv, env("xmm", args.cap), args.cap) for _ in range(args.xmm_rounds)]
        summarize("shakeout signal-vector", xmm_runs)
        in_time = sum(1 for t, d, _ in xmm_runs if d and t <= 5.0)
        print(
            "  shakeout caught {}/{} rounds within 5 s (target: all) -> {}".format(
                in_time, len(xmm_runs), "MET" if in_time == len(xmm_runs) else "NOT MET"
            )
        )
        go_xmm = [timed_run([go], env("xmm", args.xmm_go_cap), args.xmm_go_cap) for _ in range(args.xmm_go_rounds)]
        summarize(f"go wiki checker (cap {args.xmm_go_cap:.0f} s)", go_xmm)

        if args.zmm_rounds and "avx512f" in Path("/proc/cpuinfo").read_text():
            print("mode zmm (k0-7, ZMM0-15 bits 256-511, ZMM16-31), shakeout only:")
            zmm_argv = [*probe_argv, "--regs", "zmm"]
            summarize(
                "shakeout signal-vector",
                [timed_run(zmm_argv, env("zmm", args.cap), args.cap) for _ in range(args.zmm_rounds)],
            )
        print("at end: " + machine_load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
