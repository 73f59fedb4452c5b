"""Fleet scale: `shakeout merge` over 10,000 synthetic check reports (target <= 5 s) and
`shakeout status` wall time including Python's start (target <= 100 ms).

The reports are generated here, in a temporary directory, with the size and shape of a
real `check` report (7 bugs, 6 probes, pretty-printed, ~9 KB); 1 % of the hosts carry a
"bad" microcode and are vulnerable, so merge has a pattern to find. Both commands run as a
user runs them (`python -m shakeout ...` in a child process); the machine's load average is
printed beside the numbers, because this machine is shared.

    python benchmarks/merge.py [--hosts 10000] [--status-runs 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

BUGS = [
    ("bsd-fork-cow", "defect"),
    ("freebsd-xsave-xmm", "defect"),
    ("linux-signal-vector", "defect"),
    ("ram-weak-cells", "defect"),
    ("robust-futex-lost-wakeup", "defect"),
    ("robust-futex-reuse", "hazard"),
    ("vdso-stack-probe", "defect"),
]
PROBES = ["memtest", "robust-futex-reuse", "robust-futex-wakeup", "robust-futex-glibc", "signal-vector", "vdso-stack"]


def synthetic_report(i: int, rng: random.Random) -> Dict[str, Any]:
    bad = i % 100 == 7
    verdicts = {b: ("present" if kind == "hazard" else "not-vulnerable") for b, kind in BUGS}
    if bad:
        verdicts["linux-signal-vector"] = "vulnerable"
    elif rng.random() < 0.05:
        verdicts["ram-weak-cells"] = "unknown"
    started = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=rng.randrange(86400))
    return {
        "schema": "shakeout/1",
        "command": "check",
        "hostname": f"node{i:05d}",
        "overall": {"exit_status": 1 if bad else 0, "meaning": "synthetic"},
        "tool_version": "0.1.0",
        "started_at": started.isoformat(),
        "elapsed_s": 10.0,
        "host": {
            "os": "linux",
            "arch": "x86_64",
            "kernel_release": rng.choice(["6.1.0-18-amd64", "6.1.0-21-amd64", "6.12.9-amd64"]),
            "kernel_compiler": "gcc 12.2.0",
            "cpu": {
                "vendor": "AuthenticAMD",
                "family": 23,
                "model": 49,
                "stepping": 0,
                "microcode": "0x0830104d" if bad else rng.choice(["0x0830107b", "0x0830107c"]),
                "model_name": "AMD EPYC 7502 32-Core Processor",
            },
            "vector_extensions": ["sse2", "avx", "avx2"],
            "cpus": 64,
        },
        "bugs": [
            {"id": b, "kind": kind, "title": "x" * 80, "verdict": verdicts[b], "reason": "y" * 300, "evidence": {}}
            for b, kind in BUGS
        ],
        "probes": [
            {
                "id": p,
                "verdict": "pass",
                "reason": "",
                "iterations": rng.randrange(10**6),
                "exposures": rng.randrange(10**6),
                "command": [
                    f"/opt/shakeout/_bin/{p}",
                    "--duration",
                    "2.5",
                    "--progress-interval",
                    "0.5",
                    "--workers",
                    "64",
                ],
                "evidence": {"detail": "z" * 600},
            }
            for p in PROBES
        ],
    }


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def time_command(argv: List[str], cwd: Path) -> Tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of one run of argv."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def summary(runs: List[Tuple[float, float]], scale: float, unit: str) -> str:
    walls = sorted(w * scale for w, _ in runs)
    cpus = sorted(c * scale for _, c in runs)
    return (
        f"wall {walls[0]:.2f}/{statistics.median(walls):.2f}/{walls[-1]:.2f} {unit}, "
        f"CPU {cpus[0]:.2f}/{statistics.median(cpus):.2f}/{cpus[-1]:.2f} {unit} (best/median/worst of {len(runs)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--status-runs", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(1)
    shakeout = Path(sys.executable).parent / "shakeout"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fleet = root / "fleet"
        fleet.mkdir()
        size = 0
        for i in range(args.hosts):
            text = json.dumps(synthetic_report(i, rng), indent=2)
            size += len(text)
            (fleet / f"node{i:05d}.json").write_text(text)
        print(f"{args.hosts} reports, {size / args.hosts / 1024:.1f} KiB each; load average {load_average()}")
        runs = [time_command([str(shakeout), "merge", str(fleet)], root) for _ in range(3)]
        print(f"merge: {summary(runs, 1, 's')} (target <= 5 s)")
        out = subprocess.run(
            [str(shakeout), "merge", str(fleet)], cwd=root, capture_output=True, text=True, check=False
        )
        print("  " + "\n  ".join(line for line in out.stdout.splitlines() if "microcode" in line)[:300])
        state = root / "state"
        state.mkdir()
        doc = synthetic_report(0, rng)
        doc["started_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
        (state / "report.json").write_text(json.dumps(doc, indent=2))
        argv = [str(shakeout), "status", "--plugin", "npd", "--state-dir", str(state)]
        runs = [time_command(argv, root) for _ in range(args.status_runs)]
        print(f"status --plugin npd: {summary(runs, 1000, 'ms')} (target <= 100 ms wall)")
        print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
