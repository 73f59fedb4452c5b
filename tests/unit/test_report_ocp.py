"""--format ocp: every line validates against the OCP Test & Validation v2.0 JSON Schema
(vendored in tests/fixtures/ocp, see SOURCE.md there), and the verdicts map as documented
in shakeout/report/ocp.py."""

import json
from datetime import datetime
from pathlib import Path

import pytest

from shakeout.outcome import settle
from shakeout.report import FORMATS
from shakeout.results import BugVerdict, ProbeResult, RunReport, SelftestResult

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (test extra) is not installed")
referencing = pytest.importorskip("referencing", reason="referencing (jsonschema >= 4.18) is not installed")

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "ocp"


def _validator():
    from referencing.jsonschema import DRAFT202012

    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], DRAFT202012.create_resource(schema)))
    registry = referencing.Registry().with_resources(resources)
    root = json.loads((SCHEMA_DIR / "root.json").read_text())
    return jsonschema.Draft202012Validator(root, registry=registry)


VALIDATOR = _validator()


def _report(command="check", strict=False):
    report = RunReport(
        command=command,
        tool_version="0.9",
        host={
            "arch": "x86_64",
            "kernel_release": "6.1.0-18-amd64",
            "cpu": {"vendor": "AuthenticAMD", "family": 25, "model": 1, "stepping": 1, "microcode": "0xa0011d1"},
        },
        started_at="2026-01-01T00:00:00+00:00",
        elapsed_s=3.25,
        hostname="node7",
        strict=strict,
    )
    report.bugs = [
        BugVerdict("linux-signal-vector", "defect", "t", "vulnerable", "reproduced", {"probes": [{"x": None}]}, "6.2"),
        BugVerdict("freebsd-xsave-xmm", "defect", "t", "not-applicable", "FreeBSD only", {}),
        BugVerdict("other", "defect", "t", "not-vulnerable", "clean", {}),
        BugVerdict("undecided", "defect", "t", "unknown", "no probe could run", {}),
        BugVerdict("altstack-overflow", "hazard", "t", "present", "frame larger than MINSIGSTKSZ", {}),
    ]
    report.probes = [
        ProbeResult(
            "signal-vector",
            "fail",
            10,
            300,
            0.5,
            {"signals_per_s": 600.0, "odd": float("nan")},
            {"samples": [(1, None)], "first": None, "path": Path("/x")},
            "ymm0 changed",
        ),
        ProbeResult("other", "pass", 10, 1000, 1.0, exposure_unit="signal deliveries"),
        ProbeResult("pkru-signal", "skip", reason="no PKU"),
        ProbeResult("robust-futex", "error", reason="killed by SIGKILL"),
        ProbeResult("fork-cow", "inconclusive", 1, 2, 0.01, reason="too few exposures"),
    ]
    if command == "selftest":
        report.selftests = [
            SelftestResult("signal-vector", "ymm", "flip ymm", True, "caught", 0.002),
            SelftestResult("signal-vector", "zmm", "flip zmm", False, "missed"),
            SelftestResult("signal-vector", "control", "no fault", True, "clean", control=True),
            SelftestResult("pkru-signal", "pkru", "d", False, "no PKU here", ran=False),
        ]
    return settle(report)


def _artifacts(report):
    text = FORMATS["ocp"](report)
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _errors(artifact):
    return [e.message for e in VALIDATOR.iter_errors(artifact)]


@pytest.mark.parametrize("command", ["check", "run", "selftest"])
def test_every_line_is_a_valid_artifact(command):
    artifacts = _artifacts(_report(command))
    for artifact in artifacts:
        assert _errors(artifact) == [], artifact
        datetime.fromisoformat(artifact["timestamp"])
    assert [a["sequenceNumber"] for a in artifacts] == list(range(len(artifacts)))
    assert artifacts[0]["schemaVersion"] == {"major": 2, "minor": 0}
    assert "testRunStart" in artifacts[1]["testRunArtifact"]
    assert "testRunEnd" in artifacts[-1]["testRunArtifact"]


def test_the_schema_rejects_what_the_specification_forbids():
    """The validator is real: a wrong enum, an unknown field and a missing field fail."""
    artifacts = _artifacts(_report())
    diagnosis = next(a for a in artifacts if "diagnosis" in a.get("testStepArtifact", {}))
    diagnosis["testStepArtifact"]["diagnosis"]["type"] = "MAYBE"
    assert _errors(diagnosis)
    start = json.loads(json.dumps(artifacts[1]))
    start["testRunArtifact"]["testRunStart"]["colour"] = "blue"
    assert _errors(start)
    end = json.loads(json.dumps(artifacts[-1]))
    del end["testRunArtifact"]["testRunEnd"]["result"]
    assert _errors(end)


def _steps(artifacts):
    """step name -> list of its artifacts (start, ..., end)."""
    names = {}
    steps = {}
    for artifact in artifacts:
        step = artifact.get("testStepArtifact")
        if step is None:
            continue
        if "testStepStart" in step:
            names[step["testStepId"]] = step["testStepStart"]["name"]
        steps.setdefault(names[step["testStepId"]], []).append(step)
    return steps


def _diagnosis(step):
    found = [a["diagnosis"] for a in step if "diagnosis" in a]
    return found[0] if found else None


def _end_status(step):
    return step[-1]["testStepEnd"]["status"]


def test_check_bug_steps_follow_the_exit_status_contract():
    artifacts = _artifacts(_report())
    steps = _steps(artifacts)
    assert _diagnosis(steps["bug linux-signal-vector"]) == {
        "verdict": "vulnerable",
        "type": "FAIL",
        "message": "reproduced (6.2)",
    }
    assert _diagnosis(steps["bug other"])["type"] == "PASS"
    assert _diagnosis(steps["bug undecided"])["type"] == "UNKNOWN"
    assert _diagnosis(steps["bug altstack-overflow"]) == {
        "verdict": "present",
        "type": "PASS",
        "message": "frame larger than MINSIGSTKSZ",
    }
    assert _diagnosis(steps["bug freebsd-xsave-xmm"]) is None
    assert _end_status(steps["bug freebsd-xsave-xmm"]) == "SKIP"
    end = artifacts[-1]["testRunArtifact"]["testRunEnd"]
    assert end == {"status": "COMPLETE", "result": "FAIL"}


def test_a_present_hazard_fails_only_with_strict():
    report = _report(strict=True)
    report.bugs = [b for b in report.bugs if b.kind == "hazard"]
    settle(report)
    artifacts = _artifacts(report)
    assert _diagnosis(_steps(artifacts)["bug altstack-overflow"])["type"] == "FAIL"
    assert artifacts[-1]["testRunArtifact"]["testRunEnd"]["result"] == "FAIL"


@pytest.mark.parametrize(
    "verdict, result", [("not-vulnerable", "PASS"), ("unknown", "NOT_APPLICABLE"), ("vulnerable", "FAIL")]
)
def test_run_result_follows_the_exit_status(verdict, result):
    report = _report()
    report.bugs = [BugVerdict("b", "defect", "t", verdict, "r", {})]
    settle(report)
    artifacts = _artifacts(report)
    assert artifacts[-1]["testRunArtifact"]["testRunEnd"]["result"] == result
    log = artifacts[-2]["testRunArtifact"]["log"]
    assert log["message"] == report.meaning


def test_probe_steps_carry_measurements_evidence_and_outcome():
    steps = _steps(_artifacts(_report("run")))
    passing = steps["probe other"]
    measurements = {a["measurement"]["name"]: a["measurement"] for a in passing if "measurement" in a}
    assert {"name": "exposures", "value": 1000, "unit": "signal deliveries"}.items() <= measurements[
        "exposures"
    ].items()
    assert measurements["elapsed"]["unit"] == "s"
    assert measurements["failure_probability_bound_95"]["value"] == pytest.approx(0.003)
    assert _diagnosis(passing)["type"] == "PASS"
    failing = steps["probe signal-vector"]
    assert _diagnosis(failing) == {"verdict": "fail", "type": "FAIL", "message": "ymm0 changed"}
    metrics = {a["measurement"]["name"]: a["measurement"]["value"] for a in failing if "measurement" in a}
    assert metrics["signals_per_s"] == 600.0 and metrics["odd"] == "nan"
    evidence = next(a["extension"] for a in failing if "extension" in a)
    assert evidence == {"name": "shakeout.evidence", "content": {"samples": [[1, "null"]], "path": "/x"}}
    assert _end_status(steps["probe pkru-signal"]) == "SKIP"
    broken = steps["probe robust-futex"]
    assert _end_status(broken) == "ERROR"
    error = next(a["error"] for a in broken if "error" in a)
    assert {"symptom": "probe-error", "message": "killed by SIGKILL"}.items() <= error.items()
    assert _diagnosis(steps["probe fork-cow"])["type"] == "UNKNOWN"


def test_selftest_steps():
    steps = _steps(_artifacts(_report("selftest")))
    assert _diagnosis(steps["selftest signal-vector [ymm]"])["verdict"] == "caught"
    assert _diagnosis(steps["selftest signal-vector [zmm]"]) == {
        "verdict": "missed",
        "type": "FAIL",
        "message": "missed",
    }
    assert _diagnosis(steps["selftest signal-vector [control]"])["verdict"] == "clean"
    assert _end_status(steps["selftest pkru-signal [pkru]"]) == "SKIP"
    assert not any(name.startswith("bug ") for name in steps)


def test_the_dut_names_host_kernel_and_cpu():
    start = _artifacts(_report())[1]["testRunArtifact"]["testRunStart"]
    assert start["name"] == "shakeout check" and start["version"] == "0.9"
    assert start["parameters"]["started_at"] == "2026-01-01T00:00:00+00:00"
    assert start["parameters"]["elapsed_ms"] == 3250
    dut = start["dutInfo"]
    assert dut["dutInfoId"] == "node7"
    assert {"name": "kernel", "version": "6.1.0-18-amd64", "softwareType": "SYSTEM"}.items() <= dut["softwareInfos"][
        0
    ].items()
    assert dut["softwareInfos"][1]["version"] == "0xa0011d1"
    assert dut["platformInfos"] == [
        {"info": "x86_64"},
        {"info": "cpu vendor AuthenticAMD, family 25, model 1, stepping 1"},
    ]


def test_an_empty_host_still_validates():
    report = settle(RunReport(command="check", tool_version="0", host={}, started_at="2026-01-01T00:00:00+00:00"))
    for artifact in _artifacts(report):
        assert _errors(artifact) == []


def test_rendering_twice_gives_two_separate_runs():
    """ocptv's writer is module state; each rendering gets its own lines, numbered from 0."""
    first = _artifacts(_report())
    second = _artifacts(_report())
    assert len(first) == len(second)
    assert second[0]["sequenceNumber"] == 0
