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
