"""shakeout memtest against memtester and stressapptest, side by side in one run.

Columns (same buffer size for all):
- copy: a plain memcpy loop on every CPU, compiled here: the machine's copy bandwidth,
  the physical limit a streaming test (fill, then check) can approach (bytes copied per
  second: each byte read once and written once, as a fill plus a check does);
- shakeout: bytes verified per second for each of its tests, one test at a time;
- memtester (Debian's, single-threaded): per test, bytes verified / time, counted from
  its source (tests.c: Stuck Address fills and checks the whole buffer 16 times; Random
  Value fills both halves and compares them once: the buffer's size);
- stressapptest: its own "Memory Copy" statistic (copy with CRC checks, every CPU).
Ratios: shakeout's own-address and random tests against memtester's Stuck Address and
Random Value (target >= 3x), shakeout's streaming tests against copy (target >= 60 %).

Time to detect: one bit of the tester's buffer is flipped from outside
(process_vm_readv/writev, as selftest does) 1.5 s after it starts; the time until the
tester reports it. A flip the tester overwrites before checking is repeated every 5 s.

    python benchmarks/memtest.py            # 1 GiB
    python benchmarks/memtest.py --quick    # 64 MiB, short: a CI smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

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
    printf("%.0f\n", total / (now() - t0));
    return 0;
}
"""
SHAKEOUT_TESTS = ("address", "walking", "mov-inv", "mov-inv-rand", "block-move", "random")
STREAMING = ("address", "walking", "random")
# memtester test -> (shakeout test it compares with, whole-buffer checks it makes)
MEMTESTER_FAMILIES = {"Stuck Address": ("address", 16), "Random Value": ("random", 1)}
FLIP_MASK = 1 << 17


def copy_bandwidth(size: int, cpus: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory(prefix="shakeout-bench-") as tmp:
        exe = Path(tmp, "copy")
        Path(tmp, "copy.c").write_text(MEMCPY_C)
        subprocess.run(["cc", "-O2", "-pthread", "-o", str(exe), str(Path(tmp, "copy.c"))], check=True)
        out = subprocess.run([str(exe), str(size), str(cpus), str(seconds)], check=True, capture_output=True, text=True)
    return float(out.stdout)


def shakeout_rates(size: int, seconds: float) -> Dict[str, float]:
    rates = {}
    for test in SHAKEOUT_TESTS:
        argv = [str(binary_path("memtest")), "--size", str(size), "--duration", str(seconds), "--tests", test]
        argv += ["--progress-interval", "100"]
        out = subprocess.run(argv, check=False, capture_output=True, text=True).stdout.splitlines()
        result = json.loads(out[-1])
        rates[test] = float(result["metrics"]["bytes_verified_per_s"])
    return rates


def memtester_rates(size: int, timeout_s: float) -> Tuple[Dict[str, float], str]:
    """Seconds per memtester test, timed from its output; only the families we compare."""
    proc = spawn(["memtester", f"{size // MIB}M", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    text, marks, rates = "", {}, {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(rates) < len(MEMTESTER_FAMILIES):
            chunk = proc.stdout.read() or b""
            text += chunk.decode("utf-8", "replace")
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
    return rates, "" if rates else "memtester printed no test result in time: " + text[-200:]


def stressapptest_rate(size: int, cpus: int, seconds: int) -> Tuple[Optional[float], str]:
    argv = ["stressapptest", "-M", str(size // MIB), "-s", str(seconds), "-m", str(cpus), "-W"]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=seconds + 60).stdout
    match = re.search(r"Stats: Memory Copy: \S+ at ([0-9.]+)MB/s", out)
    return (float(match.group(1)) * 1e6, "") if match else (None, "no 'Memory Copy' statistic: " + out[-200:])


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
                if address and writer._flip_once(pid, address) is not None:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=4.0, help="per shakeout test and for copy")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 1 s per column: a smoke run")
    args = parser.parse_args()
    size = (64 if args.quick else args.size_mib) * MIB
    seconds = 1.0 if args.quick else args.seconds
    cpus = len(os.sched_getaffinity(0))
    print(f"memtest benchmark: {size // MIB} MiB, {cpus} CPUs, load average {os.getloadavg()[0]:.2f} at start")

    copy = copy_bandwidth(size, cpus, seconds)
    ours = shakeout_rates(size, seconds)
    skipped = []
    theirs: Dict[str, float] = {}
    if shutil.which("memtester"):
        theirs, why = memtester_rates(size, 120 if not args.quick else 30)
        if why:
            skipped.append("memtester: " + why)
    else:
        skipped.append("memtester: not installed (apt-get install memtester)")
    sat: Optional[float] = None
    if shutil.which("stressapptest"):
        sat, why = stressapptest_rate(size, cpus, 2 if args.quick else 10)
        if why:
            skipped.append("stressapptest: " + why)
    else:
        skipped.append("stressapptest: not installed (apt-get install stressapptest)")

    print(f"\ncopy bandwidth (memcpy, {cpus} threads): {gbps(copy)} GB/s")
    print(f"stressapptest Memory Copy ({cpus} threads): {gbps(sat)} GB/s")
    print(f"\n{'shakeout test':<14}{'GB/s verified':>14}{'of copy':>9}   memtester (same family)  ratio")
    for test, rate in ours.items():
        family = next(((n, r) for n, r in theirs.items() if MEMTESTER_FAMILIES[n][0] == test), None)
        compare = f"{family[0]:<17}{gbps(family[1]):>6}  {rate / family[1]:5.1f}x" if family else ""
        print(f"{test:<14}{gbps(rate):>14}{rate / copy:>8.0%}   {compare}")
    print("streaming tests (fill, then check) need >= 60 % of copy; own-address and random need >= 3x memtester")

    size_arg = str(64 * MIB if args.quick else size)
    ours_s, ours_flips = detect_time(
        [str(binary_path("memtest")), "--size", size_arg, "--duration", "60", "--announce", "1", "--passes", "0"],
        '"event":"error"',
        shakeout_target,
        30,
    )
    line = f"\ntime to detect one flipped bit: shakeout {ours_s if ours_s is None else round(ours_s, 3)} s"
    line += f" ({ours_flips} flip(s))"
    if shutil.which("memtester"):
        theirs_s, theirs_flips = detect_time(
            ["memtester", f"{int(size_arg) // MIB}M", "1"], "FAILURE", memtester_target, 60 if args.quick else 240
        )
        line += f", memtester {theirs_s if theirs_s is None else round(theirs_s, 3)} s ({theirs_flips} flip(s))"
        if ours_s and theirs_s:
            line += f": {theirs_s / ours_s:.0f}x faster"
    print(line)
    for note in skipped:
        print("skipped column: " + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
