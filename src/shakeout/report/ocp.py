"""OCP Test & Validation output (specification v2.0): one JSON artifact per line.

Data-centre test executives read this rather than our own JSON. The artifacts are made by
`ocptv`, the OCP project's own Python API for this output, so their shapes follow the
specification by construction (ocptv also checks field types as it goes); the tests
validate every line against the specification's JSON Schema (tests/fixtures/ocp/).

One report is one test run:
- testRunStart: name "shakeout COMMAND", the tool version, parameters (when the run
  started, how long it took, --strict, the exit status and its meaning) and the DUT: the
  hostname, platform infos (architecture, CPU signature), software infos (kernel,
  microcode) and the CPU as hardware info.
- one step per probe run: measurements (iterations, exposures in the probe's own unit,
  elapsed seconds, the rule-of-three bound on a pass, the probe's scalar metrics), a
  diagnosis (pass PASS, fail FAIL, inconclusive UNKNOWN), the evidence as a step
  extension; a skipped probe ends its step SKIP with the reason as a log, a broken one
  ERROR with an error artifact.
- one step per bug (check, vm): a diagnosis that follows the exit-status contract of
  shakeout.outcome (vulnerable FAIL; a present hazard FAIL only with --strict, as in JUnit;
  unknown UNKNOWN); a not-applicable bug ends its step SKIP.
- one step per selftest injection or control run (selftest): caught or clean PASS, missed
  FAIL, could not run SKIP.
- testRunEnd: result PASS on exit status 0, FAIL on 1, NOT_APPLICABLE on 3 (undecided),
  with the meaning as a run log.

The report is rendered after the run, so each artifact's timestamp is the moment it was
written; the run's own start and durations travel as the `started_at` parameter and the
elapsed measurements. Source locations are left out: a line of this renderer says
nothing about the machine (the evidence does).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Union

from ocptv.output.config import Writer, config
from ocptv.output.dut import Dut
from ocptv.output.objects import DiagnosisType, LogSeverity, SoftwareType, TestResult, TestStatus
from ocptv.output.run import TestRun
from ocptv.output.step import TestStep

from shakeout.results import BugVerdict, ProbeResult, RunReport, SelftestResult

ParamValue = Union[str, int]

PROBE_DIAGNOSES = {
    "pass": DiagnosisType.PASS,
    "fail": DiagnosisType.FAIL,
    "inconclusive": DiagnosisType.UNKNOWN,
}
RUN_RESULTS = {0: TestResult.PASS, 1: TestResult.FAIL}


class _Lines(Writer):
    """Collects the serialised artifacts instead of printing them."""

    def __init__(self) -> None:
        self.lines: List[str] = []

    def write(self, buffer: str) -> None:
        self.lines.append(buffer)


def render_ocp(report: RunReport) -> str:
    lines = _Lines()
    config(writer=lines)  # a TestRun keeps the writer it was made with
    run = TestRun(
        name="shakeout " + report.command,
        version=report.tool_version,
        command_line="shakeout " + report.command,
        parameters=_parameters(report),
    )
    run.start(dut=_dut(report))
    for probe in report.probes:
        _probe_step(run, probe)
    if report.command != "selftest":
        for bug in report.bugs:
            _bug_step(run, bug, report.strict)
    for selftest in report.selftests:
        _selftest_step(run, selftest)
    _end_run(run, report)
    return "".join(line + "\n" for line in lines.lines)


def _parameters(report: RunReport) -> Dict[str, ParamValue]:
    return {
        "started_at": report.started_at,
        "elapsed_ms": round(report.elapsed_s * 1000),
        "strict": int(report.strict),
        "exit_status": -1 if report.exit_status is None else report.exit_status,
        "meaning": report.meaning,
    }


def _text(value: Any) -> Optional[str]:
    return None if value is None or value == "" else str(value)


def _dut(report: RunReport) -> Dut:
    host: Dict[str, Any] = report.host or {}
    cpu: Dict[str, Any] = host.get("cpu") or {}
    name = report.hostname or "unknown-host"
    dut = Dut(id=name, name=name)
    if _text(host.get("arch")):
        dut.add_platform_info(str(host["arch"]))
    signature = [f"{key} {cpu[key]}" for key in ("vendor", "family", "model", "stepping") if _text(cpu.get(key))]
    if signature:
        dut.add_platform_info("cpu " + ", ".join(signature))
    if _text(host.get("kernel_release")):
        dut.add_software_info(name="kernel", type=SoftwareType.SYSTEM, version=str(host["kernel_release"]))
    if _text(cpu.get("microcode")):
        dut.add_software_info(name="cpu microcode", type=SoftwareType.FIRMWARE, version=str(cpu["microcode"]))
    if _text(cpu.get("model_name")):
        dut.add_hardware_info(name=str(cpu["model_name"]), manufacturer=_text(cpu.get("vendor")), location="cpu")
    return dut


def _start_step(run: TestRun, name: str) -> TestStep:
    step = run.add_step(name)
    step.start()  # type: ignore[no-untyped-call]  # ocptv 0.1.7 leaves start() unannotated
    return step


def _probe_step(run: TestRun, probe: ProbeResult) -> None:
    step = _start_step(run, "probe " + probe.name)
    _probe_measurements(step, probe)
    if probe.evidence:
        step.add_extension(name="shakeout.evidence", content=_json_object(probe.evidence))
    if probe.verdict in PROBE_DIAGNOSES:
        step.add_diagnosis(
            PROBE_DIAGNOSES[probe.verdict], verdict=probe.verdict, message=_text(probe.reason), source_location=None
        )
        step.end(status=TestStatus.COMPLETE)
    elif probe.verdict == "skip":
        step.add_log(LogSeverity.INFO, "skipped: " + (probe.reason or "no reason given"), source_location=None)
        step.end(status=TestStatus.SKIP)
    else:
        step.add_error(symptom="probe-" + probe.verdict, message=_text(probe.reason), source_location=None)
        step.end(status=TestStatus.ERROR)


def _probe_measurements(step: TestStep, probe: ProbeResult) -> None:
    step.add_measurement(name="iterations", value=probe.iterations, unit="iterations")
    step.add_measurement(name="exposures", value=probe.exposures, unit=probe.exposure_unit or "exposures")
    step.add_measurement(name="elapsed", value=round(probe.elapsed_s, 3), unit="s")
    if probe.bound is not None:
        step.add_measurement(name="failure_probability_bound_95", value=probe.bound, unit="probability")
    for key, value in probe.metrics.items():
        if isinstance(value, (bool, int, float, str)):
            step.add_measurement(name=key, value=_scalar(value))


def _bug_diagnosis(bug: BugVerdict, strict: bool) -> Optional[DiagnosisType]:
    failing = ("vulnerable", "present") if strict else ("vulnerable",)
    if bug.verdict in failing:
        return DiagnosisType.FAIL
    if bug.verdict in ("not-vulnerable", "absent", "present"):
        return DiagnosisType.PASS
    if bug.verdict == "unknown":
        return DiagnosisType.UNKNOWN
    return None  # not-applicable


def _bug_step(run: TestRun, bug: BugVerdict, strict: bool) -> None:
    step = _start_step(run, "bug " + bug.bug_id)
    if bug.evidence:
        step.add_extension(name="shakeout.evidence", content=_json_object(bug.evidence))
    diagnosis = _bug_diagnosis(bug, strict)
    if diagnosis is None:
        step.add_log(LogSeverity.INFO, f"{bug.verdict}: {bug.reason}", source_location=None)
        step.end(status=TestStatus.SKIP)
        return
    message = bug.reason + (f" ({bug.fix})" if bug.fix and bug.verdict == "vulnerable" else "")
    step.add_diagnosis(diagnosis, verdict=bug.verdict, message=_text(message), source_location=None)
    step.end(status=TestStatus.COMPLETE)


def _selftest_step(run: TestRun, selftest: SelftestResult) -> None:
    step = _start_step(run, f"selftest {selftest.probe_id} [{selftest.injection}]")
    if selftest.time_to_detect_s is not None:
        step.add_measurement(name="time_to_detect", value=selftest.time_to_detect_s, unit="s")
    if not selftest.ran:
        step.add_log(LogSeverity.INFO, "could not run: " + selftest.reason, source_location=None)
        step.end(status=TestStatus.SKIP)
        return
    outcome = (
        ("clean" if selftest.caught else "dirty") if selftest.control else ("caught" if selftest.caught else "missed")
    )
    diagnosis = DiagnosisType.PASS if selftest.caught else DiagnosisType.FAIL
    step.add_diagnosis(diagnosis, verdict=outcome, message=_text(selftest.reason), source_location=None)
    step.end(status=TestStatus.COMPLETE)


def _end_run(run: TestRun, report: RunReport) -> None:
    result = RUN_RESULTS.get(report.exit_status if report.exit_status is not None else -1, TestResult.NOT_APPLICABLE)
    if report.meaning:
        severity = LogSeverity.INFO if result == TestResult.PASS else LogSeverity.WARNING
        run.add_log(severity, report.meaning, source_location=None)
    run.end(status=TestStatus.COMPLETE, result=result)


def _json_object(value: Dict[str, Any]) -> Dict[str, Any]:
    """Evidence as data ocptv can write: it cannot write null, so a key whose value is None
    (not measured) is left out and a None in a list becomes "null"; tuples become lists;
    NaN, infinities and other objects become their text (JSON has no NaN)."""
    converted = _plain(value)
    assert isinstance(converted, dict)
    return converted


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return _scalar(value)


def _scalar(value: Any) -> Union[bool, int, float, str]:
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
