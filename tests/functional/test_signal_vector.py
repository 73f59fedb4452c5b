"""The real signal-vector probe: clean here, and it catches both injected faults."""

import pytest

from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.runner import injection_env, run_probe

HOST = read_host()
SPEC = get_probe("signal-vector")
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(HOST.arch != "x86_64", reason="the probe checks x86-64 vector registers"),
]


def test_clean_run_passes_with_exposures():
    result = run_probe(SPEC, HOST, 2.0, workers=4)
    assert result.verdict == "pass", result.reason
    assert result.exposures > 1000
    assert result.iterations >= result.exposures
    assert result.metrics["signals_per_s"] > 0
    assert result.evidence["corruptions"] == 0
    assert result.bound == pytest.approx(3 / result.exposures)


def test_xmm_only_register_set():
    result = run_probe(SPEC, HOST, 1.0, workers=2, options={"regs": "xmm"})
    assert result.verdict == "pass"
    assert result.evidence["vector_state"] == "xmm"
    assert result.evidence["registers_checked"] == 16


def test_async_sender_only_has_no_exposures():
    # Without self-signalling nothing releases the stack: signals arrive but are not exposures.
    result = run_probe(SPEC, HOST, 1.0, workers=2, options={"self-signal": "off", "interval-us": "50"})
    assert result.verdict == "pass"
    assert result.evidence["signals"] > 0
    assert result.exposures == 0


@pytest.mark.parametrize("injection", [i.name for i in SPEC.injections])
def test_injected_corruption_is_caught_with_correct_evidence(injection):
    inj = next(i for i in SPEC.injections if i.name == injection)
    if inj.options.get("regs") == "ymm" and "avx" not in HOST.cpu.flags:
        pytest.skip("no AVX")
    env = injection_env(inj.preload, inj.env)
    result = run_probe(SPEC, HOST, inj.duration_s, workers=4, options=inj.options, env=env)
    assert result.verdict == "fail", result.reason
    assert inj.verify(result) is None, inj.verify(result)
    sample = result.evidence["samples"][0]
    assert sample["signals_handled"] >= 1  # this worker's signals; the injector counts the process's
    assert result.evidence["signals"] >= 300
    assert result.evidence["corruptions"] >= 1


def test_keep_going_counts_several_corruptions():
    inj = next(i for i in SPEC.injections if i.name == "xmm8-15")
    env = injection_env(inj.preload, dict(inj.env, SHAKEOUT_INJECT_EVERY="50"))
    result = run_probe(SPEC, HOST, 1.0, workers=2, keep_going=True, env=env)
    assert result.verdict == "fail"
    assert result.evidence["corruptions"] > 5
    assert len(result.evidence["samples"]) == 4  # evidence is capped, the count is not
    assert result.elapsed_s > 0.9  # it did not stop at the first


def test_zmm_request_without_avx512_is_a_skip():
    if "avx512f" in HOST.cpu.flags:
        pytest.skip("this CPU has AVX-512")
    result = run_probe(SPEC, HOST, 1.0, options={"regs": "zmm"})
    assert result.verdict == "skip"
    assert "AVX-512" in result.reason
