"""Fork rate: the NetBSD PR 56535 reproducer (forkstress) vs shakeout's fork-cow probe.

Both run with one instance, side by side in alternating rounds of the same length. Each
round's rate is forks divided by the wall time of the whole process (spawn to exit),
measured here the same way for both; CPU utilisation is the children's CPU time over
wall time times CPUs. A last run shows the probe with its default settings (instances
sized to keep every CPU busy), which is what `shakeout check` runs.

Usage: python benchmarks/fork_cow.py [--rounds 5] [--duration 5]
Needs: shakeout installed (pip install .), cc, and ../shared/reference beside the project.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from shakeout.runner import binary_path

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
TARGET_RATIO = 1.0


def build_forkstress(out_dir: Path) -> Path:
    sources = [REFERENCE / "forkstress.c", REFERENCE / "fork-linux-x86_64.S"]
    if not all(s.is_file() for s in sources):
        sys.exit(f"benchmark: the reference forkstress is missing under {REFERENCE}")
    exe = out_dir / "forkstress"
    subprocess.run(["cc", "-O2", "-pthread", *map(str, sources), "-o", str(exe)], check=True)
    return exe


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: List[str], env: Optional[Dict[str, str]] = None) -> Tuple[str, float, float]:
    """(stdout, wall seconds, CPU utilisation) of one run."""
    cpu0, t0 = _children_cpu_s(), time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=600)
    wall = time.monotonic() - t0
    utilisation = (_children_cpu_s() - cpu0) / (wall * (os.cpu_count() or 1))
    if proc.returncode != 0:
        sys.exit(f"benchmark: {argv[0]} exited with {proc.returncode}: {proc.stdout[-300:]}")
    return proc.stdout, wall, utilisation


def forkstress_round(exe: Path, duration_s: int) -> Tuple[float, float]:
    out, wall, util = timed([str(exe)], dict(os.environ, DURATION_S=str(duration_s)))
    loops = int(out.strip().splitlines()[-1].split()[0].split("=")[1])
    return loops / wall, util


def probe_round(duration_s: float, workers: Optional[int], *extra: str) -> Tuple[float, float, Dict[str, object]]:
    argv = [str(binary_path("fork_cow")), "--duration", str(duration_s), *extra]
    if workers:
        argv += ["--workers", str(workers)]
    out, wall, util = timed(argv)
    result = json.loads(out.strip().splitlines()[-1])
    return int(result["evidence"]["forks"]) / wall, util, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per round (whole seconds: forkstress)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shakeout-bench-") as tmp:
        forkstress = build_forkstress(Path(tmp))
        print(f"fork-cow benchmark: {args.rounds} alternating rounds of {args.duration} s, one instance each")
        theirs: List[float] = []
        ours: List[float] = []
        for i in range(args.rounds):
            rate, util = forkstress_round(forkstress, args.duration)
            theirs.append(rate)
            our_rate, our_util, _ = probe_round(args.duration, 1)
            ours.append(our_rate)
            print(
                f"  round {i + 1}: forkstress {rate:>7,.0f} forks/s (CPU {util:>3.0%})   "
                f"fork-cow {our_rate:>7,.0f} forks/s (CPU {our_util:>3.0%})",
                flush=True,
            )
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(
            f"  median: forkstress {statistics.median(theirs):,.0f} forks/s, "
            f"fork-cow {statistics.median(ours):,.0f} forks/s"
        )
        print(
            "  ratio fork-cow/forkstress: {:.2f} (target >= {:.1f}) -> {}".format(
                ratio, TARGET_RATIO, "MET" if ratio >= TARGET_RATIO else "NOT MET"
            )
        )
        sync_rate, _, _ = probe_round(args.duration, 1, "--max-children", "1")
        print(
            f"  fork-cow waiting for every child as forkstress does (--max-children 1): {sync_rate:,.0f} forks/s "
            f"(ratio {sync_rate / statistics.median(theirs):.2f})"
        )
        rate, util, result = probe_round(args.duration, None)
        metrics = result["metrics"]
        print(
            "  fork-cow defaults ({} instance(s) on {} CPUs): {:,.0f} forks/s, {:,.0f} exposures/s, "
            "CPU utilisation {:.0%} (probe's own measure {:.0%})".format(
                result["evidence"]["instances"],
                os.cpu_count(),
                rate,
                metrics["exposures_per_s"],
                util,
                metrics["cpu_utilisation"],
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
