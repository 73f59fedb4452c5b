"""pkru-signal: the diagnosis of each check and what the injection's verify accepts."""

from shakeout.probes.pkru import interpret, observed_meaning, verify_cleared_bit_caught
from shakeout.results import ProbeResult

# Recorded in the Debian 6.1 guest under QEMU TCG with --inject clear-xstate-bv.
CAUGHT = {
    "pkey": 1,
    "pkru_value": "0x55555558",
    "injected_frames": 1,
    "check": "pkru-after-return",
    "expected": "0x55555558",
    "observed": "0x00000000",
    "xstate_bv_pkru": 1,
    "at_iteration": 50,
}


def _fail(**changes):
    return ProbeResult("pkru-signal", "fail", reason="r", evidence=dict(CAUGHT, **changes))


def test_observed_values_are_named():
    assert observed_meaning(0).startswith("0: the init value")
    assert "510b80a6a0f1" in observed_meaning(0x55555554)
    assert observed_meaning(0x12).startswith("0x00000012: neither")


def test_interpret_adds_the_meaning_of_the_check():
    result = interpret(_fail())
    assert result.evidence["diagnosis"].startswith("sigreturn restored a different PKRU; observed 0: the init value")
    assert result.reason.startswith("r: sigreturn restored")
    init = interpret(_fail(check="pkru-init-after-context-switch", observed="0x55555554"))
    assert "switched out" in init.reason and "kernel's default" in init.reason


def test_interpret_leaves_passes_and_unknown_checks():
    clean = ProbeResult("pkru-signal", "pass", evidence={"pkey": 1})
    assert interpret(clean) is clean
    odd = _fail(check="new-check")
    assert interpret(odd) is odd


def test_verify_accepts_the_recorded_catch_only():
    assert verify_cleared_bit_caught(_fail()) is None
    assert "pkru-after-return" in verify_cleared_bit_caught(_fail(check="pkru-in-frame"))
    assert "expected PKRU 0" in verify_cleared_bit_caught(_fail(observed="0x55555554"))
    assert "without an injected frame" in verify_cleared_bit_caught(_fail(injected_frames=0))
