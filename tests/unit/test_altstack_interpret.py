"""altstack probes: the sizes line, the interpretation, and what the injection's verify accepts."""

from shakeout.probes.altstack import interpret, sizes_line, verify_overflow_caught
from shakeout.results import ProbeResult

# Recorded from this machine (Linux 6.18, AVX-512 and AMX): the overflow run under inject_altstack.
SIZES = {
    "deterministic": True,
    "minsigstksz_constant": 2048,
    "sigstksz_constant": 8192,
    "at_minsigstksz": 11952,
    "frame_bytes": 3336,
    "frame_bytes_amx": 11528,
    "avx512": True,
    "amx": True,
}
CAUGHT = dict(
    SIZES,
    check="guard-words",
    minsigstksz={
        "stack_bytes": 2048,
        "outcome": "delivered",
        "frame_bytes": 3336,
        "guard_bytes_changed": 812,
        "lowest_changed_below_base": 1288,
    },
    at_minsigstksz_stack={"stack_bytes": 11952, "outcome": "delivered", "guard_bytes_changed": 0},
)


def test_sizes_line_names_every_number():
    line = sizes_line(SIZES)
    assert line == (
        "frame 3,336 B (11,528 B with AMX tiles); AT_MINSIGSTKSZ 11,952 B; MINSIGSTKSZ 2,048 B; SIGSTKSZ 8,192 B"
    )


def test_sizes_line_without_amx_or_auxv():
    line = sizes_line(dict(SIZES, amx=False, at_minsigstksz=0, frame_bytes=1104))
    assert "AMX" not in line
    assert "AT_MINSIGSTKSZ not given by this kernel (before 5.14)" in line
    assert line.startswith("frame 1,104 B;")


def test_interpret_adds_sizes_and_a_pass_reason():
    result = interpret(ProbeResult("altstack-overflow", "pass", evidence=dict(SIZES)))
    assert result.evidence["sizes"].startswith("frame 3,336 B")
    assert result.reason == "sizes: " + result.evidence["sizes"]


def test_interpret_keeps_the_probe_reason_and_ignores_results_without_sizes():
    kept = interpret(ProbeResult("altstack-size", "fail", reason="too small", evidence=dict(SIZES)))
    assert kept.reason == "too small"
    broken = ProbeResult("altstack-overflow", "error", reason="mmap failed")
    assert interpret(broken) is broken


def test_verify_accepts_the_recorded_catch():
    assert verify_overflow_caught(ProbeResult("altstack-overflow", "fail", evidence=CAUGHT)) is None


def test_verify_rejects_a_change_that_is_not_the_frame():
    too_deep = dict(CAUGHT, minsigstksz=dict(CAUGHT["minsigstksz"], lowest_changed_below_base=4000))
    assert "down to 4000" in verify_overflow_caught(ProbeResult("x", "fail", evidence=too_deep))
    shallow = dict(CAUGHT, minsigstksz=dict(CAUGHT["minsigstksz"], lowest_changed_below_base=8))
    assert "overflows it by 1288" in verify_overflow_caught(ProbeResult("x", "fail", evidence=shallow))


def test_verify_rejects_a_dirty_control_or_another_check():
    dirty = dict(CAUGHT, at_minsigstksz_stack={"outcome": "delivered", "guard_bytes_changed": 16})
    assert "AT_MINSIGSTKSZ" in verify_overflow_caught(ProbeResult("x", "fail", evidence=dirty))
    other = dict(CAUGHT, check="something")
    assert "guard-words" in verify_overflow_caught(ProbeResult("x", "fail", evidence=other))
    refused = dict(CAUGHT, minsigstksz=dict(CAUGHT["minsigstksz"], outcome="refused-at-delivery"))
    assert "not delivered" in verify_overflow_caught(ProbeResult("x", "fail", evidence=refused))
