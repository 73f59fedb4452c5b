"""Synthetic `check` reports (schema shakeout/1) for the fleet tests: only the keys merge and status read."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Dict, Optional

BASE_TIME = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)


def report(
    hostname: str,
    verdicts: Optional[Dict[str, str]] = None,
    microcode: str = "0x1",
    kernel: str = "6.1.0-18-amd64",
    started_at: Optional[dt.datetime] = None,
    version: str = "0.1.0",
    workers: int = 4,
    hazards: Optional[Dict[str, str]] = None,
) -> Dict[str, Any]:
    bugs = [{"id": b, "kind": "defect", "verdict": v} for b, v in (verdicts or {}).items()]
    bugs += [{"id": b, "kind": "hazard", "verdict": v} for b, v in (hazards or {}).items()]
    return {
        "schema": "shakeout/1",
        "command": "check",
        "hostname": hostname,
        "overall": {"exit_status": 0, "meaning": ""},
        "tool_version": version,
        "started_at": (started_at or BASE_TIME).isoformat(),
        "elapsed_s": 10.0,
        "host": {
            "os": "linux",
            "arch": "x86_64",
            "kernel_release": kernel,
            "kernel_compiler": "gcc 12.2.0",
            "cpu": {"vendor": "AuthenticAMD", "family": 23, "model": 49, "stepping": 0, "microcode": microcode},
            "vector_extensions": ["sse2", "avx", "avx2"],
        },
        "bugs": bugs,
        "probes": [
            {
                "id": "signal-vector",
                "command": [
                    "/x/signal_vector",
                    "--duration",
                    "2.5",
                    "--progress-interval",
                    "0.5",
                    "--workers",
                    str(workers),
                ],
            }
        ],
    }


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, indent=2))
    return path
