"""cpu-integrity's pure parts: option checks, localisation, interpretation, register edits."""

import struct

import pytest

from shakeout.errors import UsageError
from shakeout.injectors import register_flip
from shakeout.probes import cpu_integrity
from shakeout.probes.cpu_integrity import (
    format_cpu_list,
    interpret,
    kernels_acceptable,
    localisation,
    parse_cpu_list,
)
from shakeout.results import ProbeResult
from shakeout.runner import parse_probe_options

SPEC = cpu_integrity.PROBE


@pytest.mark.parametrize(
    "text, cpus",
    [("0", {0}), ("0-3,6", {0, 1, 2, 3, 6}), ("5,1-2", {1, 2, 5}), ("1023", {1023})],
)
def test_cpu_lists_parse(text, cpus):
    assert parse_cpu_list(text) == cpus
    assert parse_cpu_list(format_cpu_list(cpus)) == cpus


@pytest.mark.parametrize("text", ["", ",", "0,,1", "3-1", "1024", "-1", "0-", "a", "\u0661", "\uff11", "1 ", "0x1"])
def test_bad_cpu_lists_are_refused(text):
    assert parse_cpu_list(text) is None


def test_offline_or_forbidden_cpu_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(cpu_integrity.os, "sched_getaffinity", lambda pid: {0, 1})
    assert parse_probe_options(SPEC, ["cpus=0-1"]) == {"cpus": "0-1"}
    with pytest.raises(UsageError, match="cpus"):
        parse_probe_options(SPEC, ["cpus=2"])


@pytest.mark.parametrize(
    "item", ["kernels=", "kernels=fma,nope", "kernels=FMA", "cpus=", "seed=x", "seed=\u0663", "seed=-1", "seed=1e3"]
)
def test_bad_options_are_one_line_usage_errors(item):
    with pytest.raises(UsageError) as caught:
        parse_probe_options(SPEC, [item])
    assert "\n" not in str(caught.value)


def test_seed_range_matches_the_binary():
    assert parse_probe_options(SPEC, [f"seed={2**53 - 1}"])
    with pytest.raises(UsageError):
        parse_probe_options(SPEC, [f"seed={2**53}"])


def test_every_family_is_a_kernel_choice():
    assert kernels_acceptable(",".join(cpu_integrity.FAMILIES))
    assert not kernels_acceptable("fma,")


def _sample(same, other, **extra):
    sample = {
        "cpu": 3,
        "package": 0,
        "core": 1,
        "thread": 1,
        "family": "aes",
        "isa": "aes-ni",
        "check": "golden",
        "seed": 42,
        "after_s": 1.5,
        "expected": "00000000000000ff",
        "observed": "00000000000000fe",
        "differing_bits": [0],
        "retest_same_cpu": {"runs": 3, "reproduced": same},
    }
    if other is not None:
        sample["retest_other_cpu"] = {"cpu": 0, "runs": 3, "reproduced": other}
    sample.update(extra)
    return sample


@pytest.mark.parametrize(
    "same, other, words",
    [
        (3, 0, "this core computes wrong"),
        (0, 0, "intermittent"),
        (3, 3, "not this core alone"),
        (2, None, "no other CPU"),
    ],
)
def test_localisation_names_whose_fault_it_is(same, other, words):
    assert words in localisation(_sample(same, other))


def test_a_fault_is_not_retested():
    assert "not re-tested" in localisation(_sample(0, None, retest_same_cpu={"runs": 0, "reproduced": 0}))


def test_failure_reason_names_cpu_family_bits_and_replay():
    result = ProbeResult("cpu-integrity", "fail", evidence={"samples": [_sample(3, 0, items=480)], "failures": 1})
    reason = interpret(result).reason
    for words in (
        "CPU 3 (package 0, core 1, thread 1)",
        "wrong aes result",
        "expected 00000000000000ff",
        "observed 00000000000000fe",
        "1 bit(s) differ: 0",
        "this core computes wrong",
        "--set seed=42 --set items=480 --set cpus=3 --set kernels=aes",  # items: inputs beyond 32 replay too
    ):
        assert words in reason


def test_a_clean_run_that_got_fewer_golden_inputs_than_asked_says_so():
    summary = interpret(
        ProbeResult("cpu-integrity", "pass", evidence=_clean_evidence(items_per_family=594, items_requested=16384))
    ).reason
    assert "594 of the 16384 inputs per family asked for got a golden answer" in summary


def _clean_evidence(**extra):
    evidence = {
        "seed": 7,
        "families": {"fma": "avx512f vfmadd", "intmul": "mul/div 64-bit"},
        "not_run": {"sha": "this CPU has no SHA extensions (sha_ni)"},
        "cpus": [
            {"cpu": 0, "executions": {"fma": 10, "intmul": 10}},
            {"cpu": 1, "executions": {"fma": 9, "intmul": 9}},
        ],
    }
    evidence.update(extra)
    return evidence


def test_a_pass_lists_families_not_run_never_as_passed():
    result = interpret(ProbeResult("cpu-integrity", "pass", exposures=38, evidence=_clean_evidence()))
    assert result.verdict == "pass"
    assert "not run: sha (this CPU has no SHA extensions" in result.reason


def test_a_cpu_without_executions_of_a_family_is_inconclusive():
    evidence = _clean_evidence()
    evidence["cpus"][1]["executions"]["intmul"] = 0
    result = interpret(ProbeResult("cpu-integrity", "pass", exposures=29, evidence=evidence))
    assert result.verdict == "inconclusive"
    assert "CPU 1: intmul" in result.reason


def test_a_cpu_gone_offline_is_reported_not_failed():
    evidence = _clean_evidence()
    evidence["cpus"][1] = {"cpu": 1, "executions": {"fma": 0, "intmul": 0}, "offline_at_s": 12.5}
    result = interpret(ProbeResult("cpu-integrity", "pass", exposures=20, evidence=evidence))
    assert result.verdict == "pass"
    assert "went offline during the run (not a failure): CPU 1 at 12.5 s" in result.reason


def test_verify_requires_the_flipped_cpu_and_family():
    verify = cpu_integrity._verify_flip("aes")
    injector = {"target_cpu": 3, "caught_flip": {"register": "xmm2"}, "errors": []}
    good = ProbeResult("cpu-integrity", "fail", evidence={"samples": [_sample(0, 0)], "injector": injector})
    assert verify(good) is None
    other_cpu = ProbeResult("cpu-integrity", "fail", evidence={"samples": [_sample(0, 0, cpu=0)], "injector": injector})
    assert "names CPU 0" in verify(other_cpu)
    other_family = ProbeResult(
        "cpu-integrity", "fail", evidence={"samples": [_sample(0, 0, family="fma")], "injector": injector}
    )
    assert "family fma" in verify(other_family)
    no_flip = ProbeResult(
        "cpu-integrity", "fail", evidence={"samples": [_sample(0, 0)], "injector": dict(injector, caught_flip=None)}
    )
    assert "no flip" in verify(no_flip)


def test_xstate_flip_edits_one_xmm_bit_and_marks_sse_in_use():
    image = bytearray(1024)
    register_flip.flip_xstate(image, 3, 70)
    changed = [i for i, b in enumerate(image) if b]
    assert changed == [register_flip.XMM_OFFSET + 16 * 3 + 8, register_flip.XSTATE_BV_OFFSET]
    assert image[register_flip.XMM_OFFSET + 16 * 3 + 8] == 1 << 6
    assert struct.unpack_from("<Q", image, register_flip.XSTATE_BV_OFFSET)[0] == 2


def test_general_flip_edits_the_named_register_only():
    image = bytearray(8 * len(register_flip.GENERAL_REGISTERS))
    register_flip.flip_general(image, "rax", 3)
    values = struct.unpack(f"<{len(register_flip.GENERAL_REGISTERS)}Q", image)
    assert {name: v for name, v in zip(register_flip.GENERAL_REGISTERS, values) if v} == {"rax": 8}
    assert not {"rsp", "rip", "rbp"} & set(register_flip.DATA_REGISTERS)


def test_a_thread_in_a_system_call_is_recognised():
    image = bytearray(8 * len(register_flip.GENERAL_REGISTERS))
    struct.pack_into("<q", image, 8 * register_flip.GENERAL_REGISTERS.index("orig_rax"), -1)
    assert not register_flip.in_system_call(image)
    struct.pack_into("<q", image, 8 * register_flip.GENERAL_REGISTERS.index("orig_rax"), 202)
    assert register_flip.in_system_call(image)


def test_caught_flip_is_the_last_before_detection():
    flipper = register_flip.RegisterFlipper("vector", 1, cpu=0)
    flipper.flips = [
        {"register": "xmm0", "at_monotonic_s": 1.0},
        {"register": "xmm1", "at_monotonic_s": 2.0},
        {"register": "xmm2", "at_monotonic_s": 3.0},
    ]
    flipper.on_event({"event": "mismatch", "cpu": 0, "at_monotonic_s": 2.5})
    evidence = flipper.evidence()
    assert evidence["caught_flip"]["register"] == "xmm1"
    assert evidence["detected_after_s"] == 0.5
