from shakeout.probes import get_probe
from shakeout.probes.robust_futex import FUTEX_OWNER_DIED, FUTEX_WAITERS, interpret, kernel_rewrite
from shakeout.results import ProbeResult


def test_kernel_rewrite_keeps_only_the_waiters_bit():
    assert kernel_rewrite(1234) == FUTEX_OWNER_DIED
    assert kernel_rewrite(1234 | FUTEX_WAITERS) == FUTEX_OWNER_DIED | FUTEX_WAITERS


def reuse_result(after, control_after="0x000004d3"):
    sample = {
        "before": "0x000004d2",
        "after": after,
        "changed_bits": "x",
        "owner_tid": 1234,
        "control_before": "0x000004d3",
        "control_after": control_after,
    }
    return ProbeResult(
        "robust-futex-reuse", "fail", evidence={"mode": "reuse", "kernel_robust_unlock_api": False, "samples": [sample]}
    )


def test_reuse_verification_demands_the_exact_value():
    verify = get_probe("robust-futex-reuse").injections[0].verify
    assert verify(reuse_result("0x40000000")) is None
    assert "expected 0x40000000" in verify(reuse_result("0x00000000"))
    assert "control word" in verify(reuse_result("0x40000000", control_after="0x0"))


def test_reuse_diagnosis_names_values_and_api():
    result = interpret(reuse_result("0x40000000"))
    assert "0x000004d2" in result.reason and "0x40000000" in result.reason
    assert "does not offer the 2026 robust-unlock API" in result.reason


def test_three_probes_share_one_binary_by_mode():
    modes = {
        get_probe(p).fixed_options["mode"] for p in ("robust-futex-wakeup", "robust-futex-reuse", "robust-futex-glibc")
    }
    assert modes == {"wakeup", "reuse", "glibc"}
    assert {get_probe(p).binary for p in ("robust-futex-wakeup", "robust-futex-glibc")} == {"robust_futex"}


def glibc_result(**evidence):
    base = {"mode": "glibc", "check": "hang", "hangs": 2, "neighbours_intact": True, "hang_mutex_word": "0x00000000"}
    base.update(evidence, wake=evidence.get("wake", False))
    return ProbeResult("robust-futex-glibc", "fail", evidence=base)


def glibc_injection(name):
    return next(i for i in get_probe("robust-futex-glibc").injections if i.name == name)


def test_hang_verification_names_the_hang_check():
    verify = glibc_injection("withheld-wake").verify
    assert verify(glibc_result()) is None
    assert "not the hang check" in verify(glibc_result(check="neighbours"))
    assert "held" in verify(glibc_result(hang_mutex_word="0x00000456"))
    assert "not withheld" in verify(glibc_result(wake=True))


def test_neighbour_verification_names_the_neighbour_check():
    verify = glibc_injection("neighbours").verify
    corrupted = {"neighbours_intact": False, "neighbours": ["0x0000000000000000"]}
    assert verify(glibc_result(check="neighbours", **corrupted)) is None
    assert "not the neighbour check" in verify(glibc_result(check="hang", **corrupted))


def test_glibc_exposures_are_kills_in_the_unlock_window():
    spec = get_probe("robust-futex-glibc")
    assert "released the word" in spec.exposure and "list_op_pending" in spec.exposure
    assert "Not known" in spec.exposure


def test_glibc_diagnosis_says_how_many_kills_were_in_the_window():
    result = interpret(glibc_result(owners_killed=400, kills_in_unlock_window=90))
    assert "400 owners were killed (90 in the unlock window)" in result.reason


def test_unreadable_owner_memory_is_named_as_the_cause_not_a_short_run():
    spec = get_probe("robust-futex-glibc")
    evidence = {"mode": "glibc", "owner_read_error": "Operation not permitted", "owners_killed": 751}
    few = ProbeResult("robust-futex-glibc", "pass", exposures=0, elapsed_s=2.2, evidence=evidence)
    settled = spec.settle(interpret(few))
    assert settled.verdict == "inconclusive"
    assert "process_vm_readv" in settled.reason and "Operation not permitted" in settled.reason
    assert "CAP_SYS_PTRACE" in settled.reason and "run it longer" not in settled.reason
    readable = ProbeResult("robust-futex-glibc", "pass", exposures=0, elapsed_s=2.2, evidence={"mode": "glibc"})
    assert spec.settle(interpret(readable)).reason.endswith("run it longer")
