"""Turn the guest's serial console into probe results (pure functions of the text).

The guest's init (native/vm/init.c) prints lines prefixed "SHAKEOUT:" between the
kernel's own messages; anything else is kept only as context for errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from shakeout.protocol import Protocol, classify
from shakeout.results import ProbeResult

PREFIX = "SHAKEOUT:"
PANIC = re.compile(r"Kernel panic - not syncing: .*|---\[ end Kernel panic .*")


@dataclass
class GuestRun:
    booted: bool = False
    done: bool = False
    host: Optional[Dict[str, Any]] = None
    results: Dict[str, ProbeResult] = field(default_factory=dict)
    started: List[str] = field(default_factory=list)
    panic: Optional[str] = None
    errors: List[str] = field(default_factory=list)
    tail: List[str] = field(default_factory=list)  # the last console lines, for evidence


def _exit_result(probe_id: str, protocol: Protocol, info: Dict[str, Any], deadline_s: float) -> ProbeResult:
    if info.get("signal") is not None:
        returncode: Optional[int] = -int(info["signal"])
    elif info.get("status") is not None:
        returncode = int(info["status"])
    else:
        returncode = None
    timed_out = bool(info.get("timed_out")) or returncode is None
    result = classify(probe_id, returncode, protocol.result, timed_out, deadline_s, protocol.violations)
    if protocol.targets:
        result.evidence.setdefault("targets", protocol.targets)
    return result


def parse_console(text: str, deadlines_s: Dict[str, float], tail_lines: int = 25) -> GuestRun:
    """Everything the guest reported, from the whole console transcript."""
    run = GuestRun()
    protocols: Dict[str, Protocol] = {}
    lines = text.replace("\r", "").split("\n")
    run.tail = [line for line in lines if line.strip()][-tail_lines:]
    for line in lines:
        panic = PANIC.search(line)
        if panic and run.panic is None:
            run.panic = panic.group(0).strip()
        at = line.find(PREFIX)
        if at < 0:
            continue
        kind, _, rest = line[at + len(PREFIX) :].partition(" ")
        if kind == "BOOTED":
            run.booted = True
        elif kind == "DONE":
            run.done = True
        elif kind == "HOST":
            try:
                run.host = json.loads(rest)
            except ValueError:
                run.errors.append("unreadable host facts: " + rest[:200])
        elif kind == "ERROR":
            run.errors.append(rest)
        elif kind == "START":
            run.started.append(rest.strip())
            protocols[rest.strip()] = Protocol(None)
        elif kind == "LINE":
            probe_id, _, payload = rest.partition(" ")
            if probe_id in protocols:
                protocols[probe_id].feed(payload.encode() + b"\n")
        elif kind == "EXIT":
            probe_id, _, payload = rest.partition(" ")
            if probe_id in protocols:
                protocols[probe_id].finish()
                try:
                    info = json.loads(payload)
                except ValueError:
                    info = {}
                run.results[probe_id] = _exit_result(
                    probe_id, protocols[probe_id], info, deadlines_s.get(probe_id, 0.0)
                )
    return run
