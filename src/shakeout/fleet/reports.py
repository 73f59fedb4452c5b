"""Reading `check` reports written on many hosts: validation and the host attributes merge compares.

A report is accepted only when it has the keys and types merge relies on (schema
"shakeout/1", command "check", a hostname, a start time, host facts and a list of bug
verdicts with known verdict words). Anything else is a `Rejected` with a one-line reason,
never an exception: one broken file in a fleet of thousands must not stop the merge.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from shakeout.results import BUG_VERDICTS, HAZARD_VERDICTS, SCHEMA

KINDS = {"defect": BUG_VERDICTS, "hazard": HAZARD_VERDICTS}
# Options every probe gets with values that differ on each run: not an attribute of the host.
RUN_LENGTH_OPTIONS = ("--duration", "--progress-interval")


@dataclass(frozen=True)
class BugResult:
    bug_id: str
    kind: str  # defect | hazard
    verdict: str


@dataclass(frozen=True)
class HostReport:
    """One host's check, reduced to what merge compares."""

    source: str  # file name, or "<stdin>#N"
    hostname: str
    tool_version: str
    started_at: dt.datetime
    attributes: Tuple[Tuple[str, str], ...]  # (attribute, value), e.g. ("microcode", "0x0830104d")
    bugs: Tuple[BugResult, ...]


@dataclass(frozen=True)
class Rejected:
    source: str
    reason: str


def _text(value: Any) -> str:
    return "unknown" if value is None or value == "" else str(value)


def _hex(value: Any) -> str:
    return "unknown" if value is None else f"0x{value:x}" if isinstance(value, int) else str(value)


def host_attributes(host: Dict[str, Any]) -> Tuple[Tuple[str, str], ...]:
    """The facts that can separate vulnerable hosts from clean ones, as comparable strings."""
    cpu = host.get("cpu") if isinstance(host.get("cpu"), dict) else {}
    assert isinstance(cpu, dict)
    signature = "{}/{}/{}".format(_hex(cpu.get("family")), _hex(cpu.get("model")), _hex(cpu.get("stepping")))
    pairs = [
        ("kernel release", _text(host.get("kernel_release"))),
        ("kernel compiler", _text(host.get("kernel_compiler"))),
        ("CPU vendor", _text(cpu.get("vendor"))),
        ("CPU family/model/stepping", signature),
        ("CPU family/model", "{}/{}".format(_hex(cpu.get("family")), _hex(cpu.get("model")))),
        ("microcode", _text(cpu.get("microcode"))),
    ]
    vectors = host.get("vector_extensions")
    if isinstance(vectors, list):
        pairs.append(("vector extensions", " ".join(str(v) for v in vectors) or "none"))
    return tuple(pairs)


def probe_attributes(probes: Any) -> Tuple[Tuple[str, str], ...]:
    """("options of PROBE", its options) without the binary and the run-length options."""
    out: Dict[str, str] = {}
    if not isinstance(probes, list):
        return ()
    for probe in probes:
        if not isinstance(probe, dict) or not isinstance(probe.get("command"), list):
            continue
        args = [str(a) for a in probe["command"][1:]]
        kept: List[str] = []
        skip_next = False
        for arg in args:
            if skip_next:
                skip_next = False
            elif arg in RUN_LENGTH_OPTIONS:
                skip_next = True
            elif not arg.startswith(RUN_LENGTH_OPTIONS):
                kept.append(arg)
        out[f"options of {probe.get('id')}"] = " ".join(kept) or "(none)"
    return tuple(sorted(out.items()))


def _parse_time(text: Any) -> Optional[dt.datetime]:
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def _bug(entry: Any, index: int) -> Union[BugResult, str]:
    if not isinstance(entry, dict):
        return f"bugs[{index}] is not an object"
    bug_id, kind, verdict = entry.get("id"), entry.get("kind"), entry.get("verdict")
    if not isinstance(bug_id, str) or not bug_id:
        return f"bugs[{index}] has no id"
    if kind not in KINDS:
        return f"bug {bug_id}: unknown kind {kind!r}"
    if verdict not in KINDS[kind]:
        return f"bug {bug_id}: unknown {kind} verdict {verdict!r}"
    return BugResult(bug_id, kind, verdict)


def _foreign(doc: Any) -> Optional[str]:
    """Why doc is not a shakeout check report, or None when it is one."""
    if not isinstance(doc, dict):
        return f"not a shakeout report (a JSON {type(doc).__name__}, not an object)"
    if doc.get("schema") != SCHEMA:
        found = doc.get("schema")
        return f"not a shakeout report (schema {found!r}, expected {SCHEMA!r})" if found else "no 'schema' key"
    if doc.get("command") != "check":
        return f"a '{doc.get('command')}' report; merge reads 'check' reports"
    for key, kind in (("hostname", str), ("tool_version", str), ("host", dict), ("bugs", list)):
        if not isinstance(doc.get(key), kind):
            return f"'{key}' is missing or not a JSON {'string' if kind is str else kind.__name__}"
    if not doc["hostname"]:
        return "'hostname' is empty"
    return None


def parse_report(doc: Any, source: str) -> Union[HostReport, Rejected]:
    """Validate one decoded JSON document; a HostReport or the reason it was rejected."""
    problem = _foreign(doc)
    if problem is not None:
        return Rejected(source, problem)
    started = _parse_time(doc.get("started_at"))
    if started is None:
        return Rejected(source, f"'started_at' is not an ISO 8601 time: {doc.get('started_at')!r}")
    bugs: List[BugResult] = []
    for index, entry in enumerate(doc["bugs"]):
        bug = _bug(entry, index)
        if isinstance(bug, str):
            return Rejected(source, bug)
        bugs.append(bug)
    return HostReport(
        source=source,
        hostname=doc["hostname"],
        tool_version=doc["tool_version"],
        started_at=started,
        attributes=host_attributes(doc["host"]) + probe_attributes(doc.get("probes")),
        bugs=tuple(bugs),
    )
