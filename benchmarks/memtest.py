"""shakeout memtest against memtester, stressapptest and a memcpy loop, side by side in one run.

Columns (the same buffer size for all):
- copy: a plain memcpy loop, compiled here, on 1 thread and on every CPU: the machine's copy
  bandwidth, the physical limit a streaming test (fill, then check) can approach (bytes
  copied per second: each byte read once and written once, as a fill plus a check does);
- shakeout: bytes verified per second in one whole pass of each of its tests, one test at a
  time (a pass cut short by a time limit would leave out the fills and copies that come
  before its checks), with --workers 1 and with a thread per CPU (reported apart, so
  per-thread efficiency shows);
- memtester (Debian's, single-threaded, as it is): per test, bytes verified / time, counted
  from its source (tests.c: Stuck Address fills and checks the whole buffer 16 times; Random
  Value fills both halves and compares them once: the buffer's size);
- stressapptest: its own "Memory Copy" statistic (copy with CRC checks, every CPU), once.
Families compared (MEMTESTER_FAMILIES): shakeout's own-address test against memtester's
Stuck Address, its random test against Random Value (target >= 3x); shakeout's streaming
tests (STREAMING) against copy with as many threads (target >= 60 %).

The machine may be shared: every column is measured --repeats times, the columns interleaved
(each round runs them all, in the opposite order to the round before) and the median kept,
with the load average at the start of each round printed. Beside wall-clock rates, bytes per
CPU-second (the process's user and system time, so what it got done with the CPU it was
given; for shakeout it includes setup: the kernel zeroing the locked pages and the first
fill, so it understates the sweeps). Instruction counts (valgrind --tool=callgrind, see the
README) are the load-independent measure of per-byte work.

Time to detect (--repeats times each, interleaved): one bit of the tester's buffer is flipped
from outside (process_vm_readv/writev, as selftest does) 1.5 s after it starts; the time until
the tester reports it. A flip the tester overwrites before checking is repeated every 5 s.

    python benchmarks/memtest.py                         # 1 GiB, 3 rounds
    python benchmarks/memtest.py --quick                 # 64 MiB, 1 round, short: a CI smoke run
    python benchmarks/memtest.py --baseline OLD/memtest  # also another build, for before/after
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from shakeout.binaries import binary_path
from shakeout.injectors.memory_writer import MemoryWriter
from shakeout.proc import kill_group, spawn

MIB = 1 << 20
MEMCPY_C = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static size_t share; static char *src, *dst; static double seconds;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void *run(void *arg) {
    size_t i = (size_t)arg, copied = 0; double end = now() + seconds;
    while (now() < end) { memcpy(dst + i * share, src + i * share, share); copied += share; }
    return (void *)copied;
}
int main(int argc, char **argv) {
    size_t half = strtoull(argv[1], 0, 10) / 2; int n = atoi(argv[2]); seconds = atof(argv[3]);
    share = half / n; src = malloc(half); dst = malloc(half);
    memset(src, 1, half); memset(dst, 2, half);
    pthread_t t[256]; size_t total = 0; double t0 = now();
    for (int i = 0; i < n; i++) pthread_create(&t[i], 0, run, (void *)(size_t)i);
    for (int i = 0; i < n; i++) { void *r; pthread_join(t[i], &r); total += (size_t)r; }
    printf("%.0f %zu\n", total / (now() - t0), total);
    return 0;
}
"""
SHAKEOUT_TESTS = ("address", "walking", "mov-inv", "mov-inv-rand", "block-move", "random")
STREAMING = ("address", "walking", "random")
# memtester test -> (shakeout test it compares with, whole-buffer checks it makes)
MEMTESTER_FAMILIES = {"Stuck Address": ("address", 16), "Random Value": ("random", 1)}
FLIP_MASK = 1 << 17
MAX_PASS_S = 600
PER_CPU = " per CPU-s"

Rates = Dict[str, float]


def build_copy_loop(tmp: str) -> Path:
    exe = Path(tmp, "copy")
    Path(tmp, "copy.c").write_text(MEMCPY_C)
    subprocess.run(["cc", "-O2", "-pthread", "-o", str(exe), str(Path(tmp, "copy.c"))], check=True)
    return exe


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def copy_bandwidth(exe: Path, size: int, threads: int, seconds: float) -> Rates:
    """Bytes copied per second, and per CPU-second (what the loop gets done with the CPU it got)."""
    argv = [str(exe), str(size), str(threads), str(seconds)]
    cpu_s = children_cpu_s()
    rate, total = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
    return {"copy": float(rate), "copy" + PER_CPU: int(total) / max(children_cpu_s() - cpu_s, 1e-6)}


def shakeout_rates(binary: str, size: int, workers: int) -> Rates:
    rates = {}
    for test in SHAKEOUT_TESTS:
        argv = [binary, "--size", str(size), "--passes", "1", "--duration", str(MAX_PASS_S), "--tests", test]
        argv += ["--workers", str(workers), "--progress-interval", str(MAX_PASS_S)]
        cpu_s = children_cpu_s()
        out = subprocess.run(argv, check=False, capture_output=True, text=True)
        cpu_s = max(children_cpu_s() - cpu_s, 1e-6)
        result = json.loads(out.stdout.splitlines()[-1])
        if result["evidence"]["passes_completed"] == 1:
            rates[test] = float(result["metrics"]["bytes_verified_per_s"])
            rates[test + PER_CPU] = result["evidence"]["bytes_verified"] / cpu_s
        else:
            print(f"{binary} {test}: no whole pass in {MAX_PASS_S} s", file=sys.stderr)
    return rates


def memtester_rates(size: int, timeout_s: float) -> Rates:
    """Bytes verified per second in the memtester tests we compare, timed from its output."""
    proc = spawn(["memtester", f"{size // MIB}M", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    text, marks, rates = "", {}, {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(rates) < len(MEMTESTER_FAMILIES):
            text += (proc.stdout.read() or b"").decode("utf-8", "replace")
            for name, (_test, checks) in MEMTESTER_FAMILIES.items():
                if name not in marks and name in text:
                    marks[name] = time.monotonic()
                done = re.search(re.escape(name) + r"\s*:[^\n]*ok", text)
                if name in marks and name not in rates and done:
                    rates[name] = checks * size / (time.monotonic() - marks[name])
            time.sleep(0.005)
    finally:
        kill_group(proc.pid)
        proc.wait()
    if not rates:
        print("memtester printed no test result in time: " + text[-200:], file=sys.stderr)
    return rates


def stressapptest_rate(size: int, cpus: int, seconds: int) -> Tuple[Optional[float], str]:
    argv = ["stressapptest", "-M", str(size // MIB), "-s", str(seconds), "-m", str(cpus), "-W"]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=seconds + 60).stdout
    match = re.search(r"Stats: Memory Copy: \S+ at ([0-9.]+)MB/s", out)
    return (float(match.group(1)) * 1e6, "") if match else (None, "no 'Memory Copy' statistic: " + out[-200:])


def interleaved(columns: Dict[str, Callable[[], Rates]], repeats: int) -> Dict[str, List[Rates]]:
    """Every column once per round, rounds alternating the order; the load at each round's start."""
    runs: Dict[str, List[Rates]] = {name: [] for name in columns}
    order = list(columns)
    for r in range(repeats):
        print(f"round {r + 1} of {repeats}: load average {os.getloadavg()[0]:.2f}", flush=True)
        for name in order if r % 2 == 0 else reversed(order):
            runs[name].append(columns[name]())
    return runs


def medians(runs: List[Rates]) -> Rates:
    keys = set().union(*runs) if runs else set()
    return {k: statistics.median(r[k] for r in runs if k in r) for k in keys}


def spread(runs: List[Rates], key: str) -> str:
    values = [r[key] for r in runs if key in r]
    return f"{min(values) / 1e9:.2f}-{max(values) / 1e9:.2f}" if len(values) > 1 else ""


def largest_anonymous_mapping(pid: int) -> Tuple[int, int]:
    best = (0, 0)
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) == 5 or (len(fields) == 6 and fields[5].startswith("[heap")):
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            best = max(best, (hi - lo, lo), key=lambda b: b[0])
    return best[1], best[0]


def detect_time(argv: List[str], reported: str, target_of: Any, timeout_s: float) -> Tuple[Optional[float], int]:
    """Flip a bit of the target 1.5 s after start; seconds until `reported` appears, and flips made."""
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    writer, text, flips, first = MemoryWriter(FLIP_MASK), "", 0, None
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout_s:
            text += (proc.stdout.read() or b"").decode("utf-8", "replace")
            if first is not None and reported in text:
                return time.monotonic() - first, flips
            now = time.monotonic()
            if now - started > 1.5 and (first is None or (now - first) > 5 * flips):
                pid, address = target_of(proc.pid, text)
                if address and writer.flip_once(pid, address) is not None:
                    first, flips = first or now, flips + 1
            time.sleep(0.002)
        return None, flips
    finally:
        kill_group(proc.pid)
        proc.wait()


def shakeout_target(pid: int, text: str) -> Tuple[int, int]:
    match = re.search(r'"event":"target","pid":([0-9]+),"address":"(0x[0-9a-f]+)"', text)
    return (int(match.group(1)), int(match.group(2), 16)) if match else (pid, 0)


def memtester_target(pid: int, text: str) -> Tuple[int, int]:
    if "locked" not in text:
        return pid, 0
    start, length = largest_anonymous_mapping(pid)
    return pid, start + (length // 2 & ~7)


def gbps(rate: Optional[float]) -> str:
    return "-" if rate is None else f"{rate / 1e9:.2f}"


def print_tests(label: str, runs: List[Rates], copy: Rates, memtester: Rates) -> None:
    """Wall-clock rates (median, range) and rates per CPU-second, each against copy's."""
    rates = medians(runs)
    print(f"\n{label}")
    print(f"{'test':<14}{'GB/s':>6}{'(range)':>11}{'of copy':>8}{'GB/CPU-s':>10}{'of copy':>8}   memtester 1 thread")
    for test in SHAKEOUT_TESTS:
        if test not in rates:
            print(f"{test:<14}{'-':>6}   no whole pass")
            continue
        rate, per_cpu = rates[test], rates[test + PER_CPU]
        family = next(((n, r) for n, r in memtester.items() if MEMTESTER_FAMILIES[n][0] == test), None)
        compare = f"{family[0]:<14}{gbps(family[1]):>5}  {rate / family[1]:5.1f}x" if family else ""
        of_copy = f"{rate / copy['copy']:>8.0%}" if test in STREAMING else f"{'':>8}"
        of_copy_cpu = f"{per_cpu / copy['copy' + PER_CPU]:>8.0%}" if test in STREAMING else f"{'':>8}"
        print(f"{test:<14}{gbps(rate):>6}{spread(runs, test):>11}{of_copy}{gbps(per_cpu):>10}{of_copy_cpu}   {compare}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=3.0, help="of each copy loop run")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every column; medians are reported")
    parser.add_argument("--baseline", metavar="MEMTEST", help="another build of the memtest probe, measured alike")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 1 s of copy, 1 round: a smoke run")
    args = parser.parse_args()
    size = (64 if args.quick else args.size_mib) * MIB
    seconds = 1.0 if args.quick else args.seconds
    repeats = 1 if args.quick else max(1, args.repeats)
    cpus = len(os.sched_getaffinity(0))
    ours = str(binary_path("memtest"))
    print(f"memtest benchmark: {size // MIB} MiB, {cpus} CPUs, {repeats} round(s), load average {os.getloadavg()}")

    skipped = []
    with tempfile.TemporaryDirectory(prefix="shakeout-bench-") as tmp:
        copy_loop = build_copy_loop(tmp)
        columns: Dict[str, Callable[[], Rates]] = {
            "copy 1": lambda: copy_bandwidth(copy_loop, size, 1, seconds),
            "copy N": lambda: copy_bandwidth(copy_loop, size, cpus, seconds),
            "shakeout 1": lambda: shakeout_rates(ours, size, 1),
            "shakeout N": lambda: shakeout_rates(ours, size, cpus),
        }
        if args.baseline:
            columns["baseline 1"] = lambda: shakeout_rates(args.baseline, size, 1)
            columns["baseline N"] = lambda: shakeout_rates(args.baseline, size, cpus)
        if shutil.which("memtester"):
            columns["memtester"] = lambda: memtester_rates(size, 120 if not args.quick else 30)
        else:
            skipped.append("memtester: not installed (apt-get install memtester)")
        runs = interleaved(columns, repeats)
    print(f"load average at the end {os.getloadavg()}")
    sat: Optional[float] = None
    if shutil.which("stressapptest"):
        sat, why = stressapptest_rate(size, cpus, 2 if args.quick else 10)
        if why:
            skipped.append("stressapptest: " + why)
    else:
        skipped.append("stressapptest: not installed (apt-get install stressapptest)")

    copy_1, copy_n = medians(runs["copy 1"]), medians(runs["copy N"])
    memtester = medians(runs.get("memtester", []))
    print()
    for threads, copy, key in ((1, copy_1, "copy 1"), (cpus, copy_n, "copy N")):
        print(
            f"copy bandwidth (memcpy, {threads} thread(s)): {gbps(copy['copy'])} GB/s ({spread(runs[key], 'copy')}),",
            end="",
        )
        print(f" {gbps(copy['copy' + PER_CPU])} GB per CPU-second")
    print(f"stressapptest Memory Copy ({cpus} threads): {gbps(sat)} GB/s")
    print("memtester (1 thread): " + ", ".join(f"{n} {gbps(r)} GB/s" for n, r in sorted(memtester.items())))
    one, every = "1 thread (--workers 1); 'of copy': copy on 1 thread", f"{cpus} threads; 'of copy': copy on {cpus}"
    print_tests("shakeout, " + one, runs["shakeout 1"], copy_1, memtester)
    print_tests("shakeout, " + every, runs["shakeout N"], copy_n, memtester)
    if args.baseline:
        print_tests(f"baseline {args.baseline}, " + one, runs["baseline 1"], copy_1, memtester)
        print_tests(f"baseline {args.baseline}, " + every, runs["baseline N"], copy_n, memtester)
    print("targets: streaming tests (fill, then check) >= 60 % of copy; own-address and random >= 3x memtester")

    size_arg = str(64 * MIB if args.quick else size)
    testers = {
        "shakeout": (
            [ours, "--size", size_arg, "--duration", "60", "--announce", "1", "--passes", "0"],
            '"event":"error"',
            shakeout_target,
            30,
        )
    }
    if shutil.which("memtester"):
        testers["memtester"] = (["memtester", f"{int(size_arg) // MIB}M", "1"], "FAILURE", memtester_target, 240)
    print(f"\ntime to detect one flipped bit ({repeats} time(s) each, interleaved; flips made in brackets):")
    detected: Dict[str, List[float]] = {name: [] for name in testers}
    for _ in range(repeats):
        for name, (argv, reported, target_of, timeout_s) in testers.items():
            seconds_taken, flips = detect_time(argv, reported, target_of, timeout_s)
            print(f"  {name}: {'not detected' if seconds_taken is None else f'{seconds_taken:.3f} s'} ({flips})")
            if seconds_taken is not None:
                detected[name].append(seconds_taken)
    medians_s = {name: statistics.median(times) for name, times in detected.items() if times}
    print("  median: " + ", ".join(f"{name} {s:.3f} s" for name, s in medians_s.items()))
    for note in skipped:
        print("skipped column: " + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
