"""Scale of the vDSO static analysis on real, large images: time, peak memory, output size.

The unit of work is what `shakeout vdso FILE --no-measure --format json` does: read FILE,
analyse every exported function (and everything it calls), build the report and encode it
as JSON. Each image is analysed in a fresh child process, so the peak resident set size
(getrusage's ru_maxrss of that child) belongs to that image alone; wall time and CPU time
are taken around the work inside the child, output size is the JSON's length in bytes.

Targets (issue 10): this machine's libc.so.6 in at most 10 s and 500 MB. Before the
analysis was memoised with callee references, /bin/ls wrote 90 MB of JSON and libc.so.6
ran out of 4 GB. Not a timed test: run it by hand, on a quiet machine.

Usage: python benchmarks/vdso_scale.py [FILE ...]   (default: libc.so.6 and /bin/ls)
"""

from __future__ import annotations

import argparse
import ctypes.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

TARGET_S = 10.0
TARGET_MB = 500.0


def default_targets() -> List[Path]:
    found = [Path(p) for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6", "/lib64/libc.so.6")]
    libc = next((p for p in found if p.is_file()), None)
    if libc is None and ctypes.util.find_library("c"):
        libc = Path("/usr/lib") / str(ctypes.util.find_library("c"))
    return [p for p in (libc, Path("/bin/ls")) if p is not None and p.is_file()]


def measure_one(path: Path) -> Dict[str, Any]:
    """In this (child) process: the report's work, timed; peak memory of the process."""
    from shakeout.engine import vdso_report

    wall0, cpu0 = time.monotonic(), time.process_time()
    doc = vdso_report(path, 104, measure=False).to_dict("shakeout/1", "benchmark")
    text = json.dumps(doc, indent=2)
    return {
        "file": str(path),
        "image_bytes": doc["image_bytes"],
        "functions": len(doc["functions"]),
        "incomplete": len(doc["incomplete"]),
        "functions_with_notes": len(doc["incomplete_functions"]),
        "wall_s": round(time.monotonic() - wall0, 2),
        "cpu_s": round(time.process_time() - cpu0, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "json_bytes": len(text),
    }


def run_child(path: Path) -> Dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--one", str(path)], capture_output=True, text=True, check=False, timeout=600
    )
    if proc.returncode != 0:
        return {"file": str(path), "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    result: Dict[str, Any] = json.loads(proc.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one)))
        return 0
    rows = [run_child(p) for p in args.files or default_targets()]
    print(
        f"{'file':36} {'image':>9} {'funcs':>6} {'incompl':>7} {'wall s':>7} {'cpu s':>6} {'peak MB':>8} {'JSON':>10}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['file']:36} error: {r['error']}")
            continue
        print(
            f"{r['file']:36} {r['image_bytes']:>9,} {r['functions']:>6} {r['incomplete']:>7} {r['wall_s']:>7.2f} "
            f"{r['cpu_s']:>6.2f} {r['peak_rss_mb']:>8.1f} {r['json_bytes']:>10,}"
        )
    libc = [r for r in rows if "libc.so" in r["file"] and "error" not in r]
    for r in libc:
        ok = r["wall_s"] <= TARGET_S and r["peak_rss_mb"] <= TARGET_MB
        print(f"target for {r['file']}: <= {TARGET_S:.0f} s and <= {TARGET_MB:.0f} MB: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
