from shakeout.probes.fork_cow import INJECTED_VALUE, VALUE_TAG, describe_value, interpret
from shakeout.results import ProbeResult


def value(iteration, phase):
    return (VALUE_TAG << 40) | (iteration << 1) | phase


def test_values_name_their_origin():
    assert describe_value(value(7, 0), 7) == "the value stored before this fork (a stale read)"
    assert describe_value(value(5, 1), 7) == "the value stored after the fork of iteration 5"
    assert describe_value(INJECTED_VALUE, 7) == "the value stored before the fork of iteration 0"
    assert describe_value(0xDEADBEEF, 7).startswith("a foreign value")


def sample(observed, check="immediate"):
    return {
        "check": check,
        "expected": f"{value(9, 1):#018x}",
        "observed": f"{observed:#018x}",
        "reread": f"{value(9, 1):#018x}",
        "iteration": 9,
        "pid": 42,
        "address": "0x7f0000001000",
        "cpu": 1,
    }


def test_stale_read_diagnosis():
    result = interpret(
        ProbeResult("fork-cow", "fail", evidence={"mode": "stale-read", "samples": [sample(value(9, 0))]})
    )
    assert "the value stored before this fork (a stale read)" in result.reason
    assert "immediate" in result.reason and "0x7f0000001000" in result.reason


def test_verify_requires_the_injected_value_at_an_announced_word():
    from shakeout.probes import get_probe

    verify = get_probe("fork-cow").injections[0].verify
    targets = [{"pid": 42, "address": "0x7f0000001000"}]
    good = ProbeResult("fork-cow", "fail", evidence={"samples": [sample(INJECTED_VALUE)], "targets": targets})
    assert verify(good) is None
    wrong_value = ProbeResult("fork-cow", "fail", evidence={"samples": [sample(value(3, 0))], "targets": targets})
    assert "not the injected value" in verify(wrong_value)
    unannounced = ProbeResult("fork-cow", "fail", evidence={"samples": [sample(INJECTED_VALUE)], "targets": []})
    assert "not one the probe announced" in verify(unannounced)
