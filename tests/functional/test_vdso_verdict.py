"""vdso-stack is a measurement: no probability bound, no `pass` unless the static analysis
and the measurement agree, and a selftest that proves the measurement path catches a
deep stack probe (the bundled -fstack-check-like library, measured through --library)."""

import pytest

from shakeout.engine import run_selftest
from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.probes.vdso_stack import DEEP_LIBRARY, interpret, verify_deep_probe
from shakeout.results import ProbeResult
from shakeout.vdso import analyze_bytes
from shakeout.vdso.image import VdsoError, running_vdso

HOST = read_host()
try:
    REAL = running_vdso()
except VdsoError:  # pragma: no cover - machines without a vDSO
    REAL = b""
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(HOST.arch != "x86_64" or not REAL, reason="x86-64 with a vDSO"),
]


def probe_output(measured_bytes, image=REAL, verdict="pass"):
    """What the native probe reports: every exported function measured as given."""
    names = sorted({f.name for f in analyze_bytes(REAL, "vdso").functions if f.name.startswith("__vdso_")})
    functions = [{"name": n, "argument_sets": 2, "faulting_with_any_stack": 0, "measured_bytes": measured_bytes(n)}
                 for n in names]  # fmt: skip
    evidence = {"deterministic": True, "source": "vdso", "functions": functions, "image": image.hex()}
    return ProbeResult("vdso-stack", verdict, iterations=100, exposures=len(functions), evidence=evidence)


def static_bytes():
    return {f.name: f.static_bytes for f in analyze_bytes(REAL, "vdso").functions}


def test_agreement_passes_without_a_bound():
    static = static_bytes()
    result = interpret(probe_output(lambda n: static[n]))
    assert result.verdict == "pass", result.reason
    assert result.bound is None and result.to_dict()["failure_probability_bound_95"] is None
    assert "deepest" in result.evidence["summary"]


def test_disagreement_is_not_a_pass():
    static = static_bytes()
    result = interpret(probe_output(lambda n: static[n] + 64 if n == "__vdso_time" else static[n]))
    assert result.verdict == "error"
    assert "disagree" in result.reason and "__vdso_time" in result.reason
    assert result.evidence["inconsistent"] == ["__vdso_time"]
    assert result.bound is None


def test_failed_static_analysis_is_not_a_pass():
    result = interpret(probe_output(lambda n: 16, image=b"\x7fELF" + b"\0" * 60))
    assert result.verdict == "error"
    assert result.reason.startswith("the static analysis failed")
    assert "static_analysis_error" in result.evidence and result.bound is None


def test_measured_depth_fails_even_without_static_analysis():
    result = interpret(probe_output(lambda n: 4144, image=b"not an elf", verdict="fail"))
    assert result.verdict == "fail"
    assert result.evidence["fired"] == ["measured"]


def test_verify_demands_the_measurement_fired():
    static_only = ProbeResult(
        "vdso-stack",
        "fail",
        evidence={"fired": ["static-probe"], "functions": [{"name": "__vdso_time", "measured_bytes": 16}]},
    )
    assert "measurement did not see" in verify_deep_probe(static_only)
    measured = ProbeResult(
        "vdso-stack",
        "fail",
        evidence={
            "fired": ["measured", "static-probe"],
            "functions": [{"name": "__vdso_time", "measured_bytes": 4144}],
        },
    )
    assert verify_deep_probe(measured) is None


@pytest.mark.skipif(not DEEP_LIBRARY.is_file(), reason="the deep-probe library is not built")
def test_selftest_proves_the_measurement_path():
    report = run_selftest(HOST, [get_probe("vdso-stack")])
    control, deep = report.selftests  # the real vDSO first (it must pass), then the injection
    assert control.ran and control.caught, control.reason
    assert deep.injection == "deep-probe-library"
    assert deep.ran and deep.caught, deep.reason
    assert "measured and static-probe" in deep.reason, deep.reason  # the checks that fired, by name
    injected = next(p for p in report.probes if "deep-probe-library" in p.name)
    assert injected.evidence["fired"] == ["measured", "static-probe", "static-bound"]
    for row in injected.evidence["functions"]:
        assert row["measured_bytes"] >= 4096 and row["complete"] and row["consistent"], row
        assert any(p["depth"] >= 4096 for p in row["probes"]), row
