"""The real signal-vector probe: clean here, its exposures measured, and every injected fault caught."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from shakeout.binaries import binary_path
from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.runner import ProbeRun, injection_env, run_probe

HOST = read_host()
SPEC = get_probe("signal-vector")
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(HOST.arch != "x86_64", reason="the probe checks x86-64 vector registers"),
]


def _skip_unless_cpu_has(inj):
    regs = inj.options.get("regs")
    if regs == "ymm" and "avx" not in HOST.cpu.flags:
        pytest.skip("no AVX")
    if regs == "zmm" and "avx512f" not in HOST.cpu.flags:
        pytest.skip("no AVX-512")


def test_clean_run_passes_with_exposures_that_opened_the_window():
    result = run_probe(ProbeRun(SPEC, 2.0, workers=4), HOST)
    ev = result.evidence
    assert result.verdict == "pass", result.reason
    assert ev["corruptions"] == 0
    # exposures are the faulted frames whose delivery slept, a subset of the released-stack signals
    assert result.exposures == ev["faulted_frames_slept"]
    assert ev["faulted_frames_slept"] + ev["faulted_frames_preempted_only"] <= ev["faulted_frames"]
    assert ev["faulted_frames"] <= ev["self_signals_onto_released_stack"] <= ev["signals"]
    assert result.bound == pytest.approx(3 / result.exposures)
    assert "switched out" in result.exposure_unit
    if ev["fault_in"] == "userfaultfd":
        assert result.exposures > 1000
        assert result.metrics["faulted_frames_that_slept"] > 0.9  # most exposures are real ones
    else:
        assert "userfaultfd" in ev["fault_in_note"]


def test_zmm_and_mask_registers_pass_clean():
    if "avx512bw" not in HOST.cpu.flags:
        pytest.skip("no AVX-512BW")
    for fault_in in ("userfaultfd", "plain"):
        result = run_probe(ProbeRun(SPEC, 1.0, workers=4, options={"regs": "zmm", "fault-in": fault_in}), HOST)
        if result.verdict == "skip":
            continue  # userfaultfd not allowed for this user
        assert result.verdict in ("pass", "inconclusive"), result.reason
        assert result.evidence["corruptions"] == 0
        assert result.evidence["vector_state"] == "zmm+k"
        assert result.evidence["registers_checked"] == 40
        assert result.evidence["faulted_frames"] > 1000


def test_plain_faults_are_counted_but_rarely_sleep():
    result = run_probe(ProbeRun(SPEC, 1.0, workers=4, options={"fault-in": "plain"}), HOST)
    ev = result.evidence
    assert ev["fault_in"] == "plain"
    assert ev["faulted_frames"] > 1000  # the frame is faulted in ...
    assert result.exposures == ev["faulted_frames_slept"] < ev["faulted_frames"] / 2  # ... but seldom sleeps


def test_xmm_only_register_set():
    result = run_probe(ProbeRun(SPEC, 1.0, workers=2, options={"regs": "xmm"}), HOST)
    assert result.verdict in ("pass", "inconclusive"), result.reason
    assert result.evidence["corruptions"] == 0
    assert result.evidence["vector_state"] == "xmm"
    assert result.evidence["registers_checked"] == 16


@pytest.mark.parametrize("options", [{"self-signal": "off", "interval-us": "50"}, {"release": "off"}])
def test_signals_without_a_released_stack_are_not_exposures(options):
    result = run_probe(ProbeRun(SPEC, 1.0, workers=2, options=options), HOST)
    assert result.verdict == "inconclusive", result.reason
    assert result.evidence["signals"] > 0
    assert result.evidence["faulted_frames"] == 0
    assert result.exposures == 0


@pytest.mark.parametrize("injection", [i.name for i in SPEC.injections])
def test_injected_corruption_is_caught_at_once_with_correct_evidence(injection):
    inj = next(i for i in SPEC.injections if i.name == injection)
    _skip_unless_cpu_has(inj)
    env = injection_env(inj.preload, inj.env)
    started = time.monotonic()
    result = run_probe(ProbeRun(SPEC, 30.0, workers=4, options=inj.options, env=env), HOST)
    wall_s = time.monotonic() - started
    assert result.verdict == "fail", result.reason
    assert inj.verify(result) is None, inj.verify(result)
    sample = result.evidence["samples"][0]
    assert sample["check"] == "registers-after-signal"
    assert isinstance(sample["after_faulted_frame"], bool)  # evidence; see signal_vector._check_that_fired
    # The injector acts on every 300th frame faulted in, counting asynchronous signals too; the
    # probe's own count covers its self-signals only, so it may be a little lower.
    assert result.evidence["faulted_frames"] > 0
    assert result.evidence["corruptions"] == 1  # it stopped at the first
    # the probe's own clock, from process start, and the runner saw its exit at once
    assert 0 < result.evidence["detected_after_s"] == sample["after_s"] < wall_s < 5


@pytest.mark.parametrize("injection", [i.name for i in SPEC.injections])
def test_injection_needs_frames_faulted_in(injection):
    """With the release step disabled no frame is faulted in: the injector must not act."""
    inj = next(i for i in SPEC.injections if i.name == injection)
    _skip_unless_cpu_has(inj)
    env = injection_env(inj.preload, inj.env)
    result = run_probe(ProbeRun(SPEC, 1.5, workers=4, options=dict(inj.options, release="off"), env=env), HOST)
    assert result.verdict != "fail", result.evidence.get("samples")
    assert result.evidence["signals"] > 3000  # plenty of signals that the old injector corrupted


def test_keep_going_counts_several_corruptions():
    inj = next(i for i in SPEC.injections if i.name == "xmm8-15")
    env = injection_env(inj.preload, dict(inj.env, SHAKEOUT_INJECT_EVERY="50"))
    result = run_probe(ProbeRun(SPEC, 1.0, workers=2, keep_going=True, env=env), HOST)
    assert result.verdict == "fail"
    assert result.evidence["corruptions"] > 5
    assert len(result.evidence["samples"]) == 4  # evidence is capped, the count is not
    assert result.elapsed_s > 0.9  # it did not stop at the first


def test_userfaultfd_as_unprivileged_user_falls_back_or_skips():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the probe as nobody")
    if Path("/proc/sys/vm/unprivileged_userfaultfd").read_text().strip() != "0":
        pytest.skip("unprivileged userfaultfd is allowed here")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(binary_path("signal_vector"))]
    auto = subprocess.run([*nobody, "--duration", "0.3", "--workers", "2"], check=False, capture_output=True, text=True)
    assert auto.returncode == 0, auto.stdout + auto.stderr
    assert '"fault_in":"plain"' in auto.stdout and "CAP_SYS_PTRACE" in auto.stdout
    forced = subprocess.run(
        [*nobody, "--duration", "0.3", "--fault-in", "userfaultfd"], check=False, capture_output=True, text=True
    )
    assert forced.returncode == 4 and "CAP_SYS_PTRACE" in forced.stdout


def test_zmm_request_without_avx512_is_a_skip():
    if "avx512f" in HOST.cpu.flags:
        pytest.skip("this CPU has AVX-512")
    result = run_probe(ProbeRun(SPEC, 1.0, options={"regs": "zmm"}), HOST)
    assert result.verdict == "skip"
    assert "AVX-512" in result.reason
