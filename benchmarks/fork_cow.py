"""Exposure rate: the NetBSD PR 56535 reproducer (forkstress) vs shakeout's fork-cow probe.

The unit of work is the one the bug cares about: an *exposure*, a fork during which the
writer thread stored to the page (the race needs a store to the page while the fork
write-protects it). Both programs count it the same way: the writer's store counter is
read before and after each fork. fork-cow does this itself; forkstress is linked, from
../shared/reference unchanged, with a small counter of ours (`-Wl,--wrap=my_fork`) that
reads forkstress's own writer counter (`sink`) around each of its forks and prints the
counts at exit, at the cost of two loads and a compare per fork, as in fork-cow.

Both run with one instance, in alternating rounds of the same length, each round
swapping which program runs first. Rates are counts divided by the wall time of the whole
process (spawn to exit), measured here the same way for both; CPU utilisation is the
children's CPU time over wall time times CPUs. fork-cow runs twice per round: with its
default batched reaping (up to 16 children outstanding) and waiting for every child as
forkstress does (`max-children 1`), so the share of the ratio that reaping buys is seen.
A last run shows the probe with its default settings (instances sized to keep every CPU
busy), which is what `shakeout check` runs.

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

from shakeout.binaries import binary_path

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
TARGET_RATIO = 1.0


# Our exposure counter for forkstress: wraps its my_fork and reads its writer's counter.
EXPOSURE_COUNTER_C = r"""
#include <stdint.h>
#include <stdio.h>
extern volatile uint32_t sink; /* forkstress's writer increments it after each store */
uint64_t __real_my_fork(void);
static uint64_t forks, exposures;
uint64_t __wrap_my_fork(void)
{
	uint32_t before = sink;
	uint64_t pid = __real_my_fork(); /* the child never returns here */
	forks++;
	if (sink != before)
		exposures++;
	return pid;
}
__attribute__((destructor)) static void report(void)
{
	fprintf(stderr, "forks=%llu exposures=%llu\n", (unsigned long long)forks, (unsigned long long)exposures);
}
"""


def build_forkstress(out_dir: Path) -> Path:
    sources = [REFERENCE / "forkstress.c", REFERENCE / "fork-linux-x86_64.S"]
    if not all(s.is_file() for s in sources):
        sys.exit(f"benchmark: the reference forkstress is missing under {REFERENCE}")
    counter = out_dir / "exposure_counter.c"
    counter.write_text(EXPOSURE_COUNTER_C)
    exe = out_dir / "forkstress"
    argv = ["cc", "-O2", "-pthread", "-Wl,--wrap=my_fork", *map(str, sources), str(counter), "-o", str(exe)]
    subprocess.run(argv, check=True)
    return exe


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: List[str], env: Optional[Dict[str, str]] = None) -> Tuple[str, str, float, float]:
    """(stdout, stderr, wall seconds, CPU utilisation) of one run."""
    cpu0, t0 = _children_cpu_s(), time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=600)
    wall = time.monotonic() - t0
    utilisation = (_children_cpu_s() - cpu0) / (wall * (os.cpu_count() or 1))
    if proc.returncode != 0:
        sys.exit(f"benchmark: {argv[0]} exited with {proc.returncode}: {proc.stdout[-300:]}")
    return proc.stdout, proc.stderr, wall, utilisation


class Round:
    """One run's counts over the process's wall time."""

    def __init__(self, forks: int, exposures: int, wall_s: float, utilisation: float) -> None:
        self.forks_per_s = forks / wall_s
        self.exposures_per_s = exposures / wall_s
        self.utilisation = utilisation

    def __str__(self) -> str:
        return f"{self.exposures_per_s:>6,.0f} exp/s {self.forks_per_s:>6,.0f} forks/s CPU {self.utilisation:>3.0%}"


def forkstress_round(exe: Path, duration_s: int) -> Round:
    out, err, wall, util = timed([str(exe)], dict(os.environ, DURATION_S=str(duration_s)))
    counts = dict(item.split("=") for item in err.strip().splitlines()[-1].split())
    loops = int(out.strip().splitlines()[-1].split()[0].split("=")[1])
    if int(counts["forks"]) != loops - 1:  # the last loop ends before its fork
        sys.exit(f"benchmark: the counter saw {counts['forks']} forks, forkstress {loops} loops")
    return Round(int(counts["forks"]), int(counts["exposures"]), wall, util)


def probe_round(duration_s: float, workers: Optional[int], *extra: str) -> Tuple[Round, Dict[str, object]]:
    argv = [str(binary_path("fork_cow")), "--duration", str(duration_s), *extra]
    if workers:
        argv += ["--workers", str(workers)]
    out, _, wall, util = timed(argv)
    result = json.loads(out.strip().splitlines()[-1])
    return Round(int(result["evidence"]["forks"]), int(result["exposures"]), wall, util), result


def median_rate(rounds: List[Round]) -> float:
    return statistics.median(r.exposures_per_s for r in rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per round (whole seconds: forkstress)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shakeout-bench-") as tmp:
        forkstress = build_forkstress(Path(tmp))
        print(f"fork-cow benchmark: {args.rounds} alternating rounds of {args.duration} s, one instance each")
        print(f"load before: {os.getloadavg()[0]:.2f} (1-minute average)")
        runs: Dict[str, List[Round]] = {"forkstress": [], "fork-cow": [], "fork-cow max-children 1": []}
        programs = {
            "forkstress": lambda: forkstress_round(forkstress, args.duration),
            "fork-cow": lambda: probe_round(args.duration, 1)[0],
            "fork-cow max-children 1": lambda: probe_round(args.duration, 1, "--max-children", "1")[0],
        }
        order = list(programs)
        for i in range(args.rounds):
            line = []
            for name in order if i % 2 == 0 else order[::-1]:
                runs[name].append(programs[name]())
                line.append(f"{name}: {runs[name][-1]}")
            print(f"  round {i + 1}: " + " | ".join(line), flush=True)
        theirs = median_rate(runs["forkstress"])
        for name in ("fork-cow", "fork-cow max-children 1"):
            ours = median_rate(runs[name])
            verdict = "MET" if ours >= TARGET_RATIO * theirs else "NOT MET"
            print(
                f"  median exposures/s: {name} {ours:,.0f}, forkstress {theirs:,.0f}; "
                f"ratio {ours / theirs:.2f} (target >= {TARGET_RATIO:.1f}) -> {verdict}"
            )
        for name, rounds in runs.items():
            print(f"  median forks/s {name}: {statistics.median(r.forks_per_s for r in rounds):,.0f}")
        default, result = probe_round(args.duration, None)
        print(
            "  fork-cow defaults ({} instance(s) on {} CPUs): {}".format(
                result["evidence"]["instances"], os.cpu_count(), default
            )
        )
        print(f"load after: {os.getloadavg()[0]:.2f} (1-minute average)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
