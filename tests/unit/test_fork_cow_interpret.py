from shakeout.probes.fork_cow import INJECTED_VALUE, VALUE_TAG, describe_value, interpret
from shakeout.results import ProbeResult


def value(iteration, phase):
    return (VALUE_TAG << 40) | (iteration << 1) | phase


def test_values_name_their_origin():
    assert describe_value(value(7, 0), 7) == "the value stored before this fork (a stale read)"
    assert describe_value(value(5, 1), 7) == "the value stored after the fork of iteration 5"
    assert describe_value(INJECTED_VALUE, 7).startswith("a foreign value")
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


def injection(name):
    from shakeout.probes import get_probe

    return next(i for i in get_probe("fork-cow").injections if i.name == name)


TARGETS = [{"pid": 42, "address": "0x7f0000001000"}]


def window_result(check="immediate", observed=INJECTED_VALUE, targets=TARGETS, forks=5000, iteration=1000, **ev):
    s = dict(sample(observed, check), iteration=iteration)
    evidence = {"samples": [s], "targets": targets, "forks": forks, "window_iteration": 1000, "windows_answered": 1}
    evidence.update(ev)
    return ProbeResult("fork-cow", "fail", evidence=evidence)


def test_window_verify_requires_the_injected_value_at_an_announced_word():
    verify = injection("immediate").verify
    assert verify(window_result()) is None
    assert "not the injected value" in verify(window_result(observed=value(3, 0)))
    assert "not one the probe announced" in verify(window_result(targets=[]))


def test_immediate_window_must_be_caught_by_the_immediate_check():
    assert "not 'immediate'" in injection("immediate").verify(window_result(check="end of iteration"))
    assert injection("end").verify(window_result(check="end of iteration")) is None
    assert "not 'end of iteration'" in injection("end").verify(window_result(check="immediate"))


def test_window_verify_requires_forks_and_the_window_iteration():
    verify = injection("immediate").verify
    assert "did not open after forks" in verify(window_result(forks=0))
    assert "never answered" in verify(window_result(windows_answered=0))
    assert "not in the window" in verify(window_result(iteration=17))


def test_tlb_verify_names_its_check():
    verify = injection("tlb").verify
    assert verify(window_result(check="two reads under the lock")) is None
    assert "not 'two reads under the lock'" in verify(window_result(check="immediate"))


def test_the_injected_value_is_never_stored_by_the_probe():
    assert INJECTED_VALUE >> 40 != VALUE_TAG
