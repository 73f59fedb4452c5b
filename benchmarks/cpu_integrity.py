"""cpu-integrity side by side in one run: utilisation, work rates, time to detect a flip.

- Utilisation: /proc/stat per CPU (user+nice+system+irq+softirq over all but steal) while
  the probe runs on every CPU; target >= 95 % on each tested CPU. Other load on the machine
  shares the CPUs, so the probe's own CPU time over (wall time x CPUs) is printed too, with
  the machine's load average.
- Work per second: each kernel family alone on every CPU, executions per second per CPU,
  against the same family alone on one CPU (a ratio near 1 means the cores do not slow each
  other; a CPU far below the others is slow or throttled).
- Time to detect: ROUNDS runs with the register flipper (injectors/register_flip.py, as
  selftest uses it) on the highest CPU during fma (an XMM bit); the seconds from the caught
  flip's resume to the probe's mismatch line, and whether the failure named that CPU
  (targets: median <= 1 s, right CPU every round).
- stress-ng --verify (when installed): its cpu stressor pinned to the same CPU with the
  same flipper acting on its worker; the time until it reports a verification failure, or
  "not detected" within STRESS_NG_LIMIT_S.

    python benchmarks/cpu_integrity.py            # 10 rounds, 3 s per family
    python benchmarks/cpu_integrity.py --quick    # a CI smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from typing import Any, Dict, List, Optional, Tuple

from shakeout.binaries import binary_path
from shakeout.injectors.register_flip import RegisterFlipper
from shakeout.probes.cpu_integrity import FAMILIES, family_code
from shakeout.proc import kill_group, spawn

BINARY = str(binary_path("cpu_integrity"))
STRESS_NG_LIMIT_S = 10.0
BUSY_FIELDS = (0, 1, 2, 5, 6)  # user nice system irq softirq


def cpu_times() -> Dict[int, Tuple[int, int]]:
    """CPU -> (busy jiffies, total jiffies without steal) from /proc/stat."""
    times = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                values = [int(v) for v in fields[:8]]
                times[int(name[3:])] = (sum(values[i] for i in BUSY_FIELDS), sum(values[:7]))
    return times


def run_probe(args: List[str], duration_s: float, on_event: Any = None) -> Dict[str, Any]:
    proc = spawn([BINARY, "--duration", str(duration_s), *args], stdout=subprocess.PIPE, text=True)
    result: Dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "result":
                result = event
            elif on_event:
                on_event(event)
        proc.wait(timeout=duration_s + 30)
    finally:
        kill_group(proc.pid)
    return result


def utilisation(duration_s: float) -> Tuple[Dict[int, float], float]:
    """Busy % per tested CPU (anyone's work), and the probe's own CPU time / (wall x CPUs) in %."""
    before, children_before, started = cpu_times(), os.times(), time.monotonic()
    result = run_probe([], duration_s)
    after, children_after, wall_s = cpu_times(), os.times(), time.monotonic() - started
    tested = [c["cpu"] for c in result["evidence"]["cpus"]]
    own_s = sum(children_after[i] - children_before[i] for i in (2, 3))
    busy = {cpu: 100.0 * (after[cpu][0] - before[cpu][0]) / max(1, after[cpu][1] - before[cpu][1]) for cpu in tested}
    return busy, 100.0 * own_s / (wall_s * len(tested))


def rates(family: str, duration_s: float, cpus: Optional[str]) -> Dict[str, float]:
    args = ["--kernels", family, "--seed", "1"] + (["--cpus", cpus] if cpus else [])
    result = run_probe(args, duration_s)
    return {cpu: float(rate) for cpu, rate in result["metrics"]["executions_per_s_per_cpu"][family].items()}


def detect_round(seed: int) -> Tuple[Optional[float], bool]:
    flipper = RegisterFlipper("vector", 40, functions=family_code("fma"))
    try:
        result = run_probe(["--kernels", "fma", "--announce", "1", "--seed", str(seed)], 2.0, flipper.on_event)
    finally:
        flipper.stop()
    evidence = flipper.evidence()
    samples = result.get("evidence", {}).get("samples") or [{}]
    return evidence.get("detected_after_s"), samples[0].get("cpu") == flipper.cpu


def stress_ng_round(cpu: int) -> str:
    """stress-ng's cpu stressor with --verify on `cpu`, its worker's XMM bits flipped until it reports."""
    stress = shutil.which("stress-ng")
    if not stress:
        return "skipped (stress-ng not installed: apt-get install stress-ng)"
    argv = [
        stress,
        "--cpu",
        "1",
        "--cpu-method",
        "all",
        "--verify",
        "--taskset",
        str(cpu),
        "--timeout",
        str(int(STRESS_NG_LIMIT_S) + 2),
        "--metrics-brief",
    ]
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    flipper = RegisterFlipper("vector", 40, cpu=cpu, report_timeout_s=0.0, period_s=0.05)
    try:
        time.sleep(1.0)
        workers = _descendants(proc.pid)
        if not workers:
            return "could not find stress-ng's worker"
        flipper.on_event({"event": "target", "inject": "register-flip", "tid": workers[-1], "cpu": cpu})
        output, _ = proc.communicate(timeout=STRESS_NG_LIMIT_S + 30)
    finally:
        flipper.stop()
        kill_group(proc.pid)
    evidence = flipper.evidence()
    failed = [line for line in output.splitlines() if "fail" in line.lower() and "verif" in line.lower()]
    if failed:
        return f"detected ({evidence['flips']} flips made): {failed[0].strip()[:100]}"
    return f"not detected in {STRESS_NG_LIMIT_S:.0f} s ({evidence['flips']} flips made)"


def _descendants(pid: int) -> List[int]:
    children: List[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            children.append(int(entry))
    return sorted(children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run for CI")
    args = parser.parse_args()
    family_s = 0.5 if args.quick else 3.0
    rounds = 2 if args.quick else 10
    print(f"machine load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    busy, own = utilisation(1.0 if args.quick else 5.0)
    print(
        "utilisation per CPU (target >= 95 %): "
        + ", ".join(f"CPU {c} {p:.0f} %" for c, p in busy.items())
        + f"; the probe's own share of those CPUs (start-up included): {own:.0f} %"
    )
    first = str(min(os.sched_getaffinity(0)))
    print(f"{'family':8} {'alone on CPU ' + first:>18} {'all CPUs, per CPU':>28} {'ratio':>8}")
    for family in FAMILIES:
        alone = rates(family, family_s, first)
        every = rates(family, family_s, None)
        if not alone:
            print(f"{family:8} not run on this CPU")
            continue
        mean = statistics.mean(every.values())
        per_cpu = " ".join(f"{rate:,.0f}" for rate in every.values())
        print(f"{family:8} {alone[first]:>18,.0f} {per_cpu:>28} {mean / alone[first]:>8.2f}")
    times, right = [], 0
    for seed in range(1, rounds + 1):
        after_s, on_right_cpu = detect_round(seed)
        if after_s is not None:
            times.append(after_s)
        right += on_right_cpu
    median = statistics.median(times) if times else float("nan")
    print(
        f"time to detect an XMM flip during fma: median {median * 1000:.3f} ms over {len(times)}/{rounds} rounds "
        f"(target <= 1 s), right CPU in {right}/{rounds} rounds"
    )
    print("stress-ng --verify, same flip on its cpu worker: " + stress_ng_round(max(os.sched_getaffinity(0))))


if __name__ == "__main__":
    main()
