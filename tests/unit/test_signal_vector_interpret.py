import struct

from shakeout.probes.signal_vector import (
    PROBE,
    classify_lane,
    compact_registers,
    differing_byte_ranges,
    interpret,
    summarise_sources,
)
from shakeout.results import ProbeResult

NONCE = 0x1234


def q(worker, reg, lane, nonce=NONCE):
    return (0x5348 << 48) | (worker << 32) | (reg << 24) | (lane << 16) | nonce


def hexq(*values):
    return struct.pack(f"<{len(values)}Q", *values).hex()


def test_lane_sources():
    expected = q(1, 3, 2)
    assert classify_lane(0, expected, NONCE, 1) == "zeros"
    assert classify_lane(expected ^ (2**64 - 1), expected, NONCE, 1) == "inverted"
    assert classify_lane(q(2, 3, 2), expected, NONCE, 1) == "worker 2's register 3 lane 2"
    assert classify_lane(q(1, 5, 0), expected, NONCE, 1) == "this worker's register 5 lane 0"
    assert classify_lane(q(1, 64 + 3, 0), expected, NONCE, 1) == "this worker's k3 lane 0"
    assert classify_lane(q(2, 3, 2, nonce=7), expected, NONCE, 1) == "another process's pattern"
    assert classify_lane(0x0123456789ABCDEF, expected, NONCE, 1) == "other"


def test_differing_ranges():
    a = bytes(32)
    b = bytes(16) + b"\x01" * 16
    assert differing_byte_ranges(a, b) == [(16, 31)]
    assert differing_byte_ranges(a, b"\x01" + bytes(30) + b"\x01") == [(0, 0), (31, 31)]


def _failed(registers, check="registers-after-signal", after_faulted_frame=True):
    sample = {"worker": 0, "after_s": 0.1, "registers": registers}
    sample.update(check=check, after_faulted_frame=after_faulted_frame)
    return ProbeResult("signal-vector", "fail", exposures=10, evidence={"nonce": NONCE, "samples": [sample]})


def test_interpret_names_another_workers_registers():
    """The CVE-2019-19602 signature: the upper half of ymm0 holds worker 3's ymm0."""
    expected = hexq(q(0, 0, 0), q(0, 0, 1), q(0, 0, 2), q(0, 0, 3))
    observed = hexq(q(0, 0, 0), q(0, 0, 1), q(3, 0, 2), q(3, 0, 3))
    result = interpret(_failed([{"register": "ymm0", "expected": expected, "observed": observed}]))
    reg = result.evidence["samples"][0]["registers"][0]
    assert reg["differing_bytes"] == ["20-20", "28-28"]  # the worker byte of lanes 2 and 3
    assert "worker 3's register 0" in reg["source"]
    assert "YMM upper half" in result.reason


def _inverted_upper(reg):
    expected = [q(0, reg, lane) for lane in range(4)]
    observed = expected[:2] + [v ^ (2**64 - 1) for v in expected[2:]]
    return {"register": f"ymm{reg}", "expected": hexq(*expected), "observed": hexq(*observed)}


def test_selftest_verifier_accepts_exact_evidence_and_rejects_partial():
    ymm = next(i for i in PROBE.injections if i.name == "ymm")
    good = interpret(_failed([_inverted_upper(r) for r in range(16)]))
    assert ymm.verify(good) is None
    partial = interpret(_failed([_inverted_upper(r) for r in range(4)]))
    assert "expected registers" in ymm.verify(partial)
    xmm = next(i for i in PROBE.injections if i.name == "xmm8-15")
    assert "expected registers" in xmm.verify(good)


def test_verifier_names_the_check():
    ymm = next(i for i in PROBE.injections if i.name == "ymm")
    registers = [_inverted_upper(r) for r in range(16)]
    assert "check to fire" in ymm.verify(interpret(_failed(registers, check=None)))


def _inverted(name, nbytes, first_byte):
    """A register whose bytes from first_byte on are inverted (patterned like the probe's)."""
    reg = int(name.lstrip("zmk")) + (64 if name.startswith("k") else 0)
    expected = [q(0, reg, lane) for lane in range(nbytes // 8)]
    observed = expected[: first_byte // 8] + [v ^ (2**64 - 1) for v in expected[first_byte // 8 :]]
    return {"register": name, "expected": hexq(*expected), "observed": hexq(*observed)}


def _zmm_injected():
    return (
        [_inverted(f"zmm{r}", 64, 32) for r in range(16)]
        + [_inverted(f"zmm{r}", 64, 0) for r in range(16, 32)]
        + [_inverted(f"k{k}", 8, 0) for k in range(8)]
    )


def test_zmm_verifier_accepts_exact_evidence_and_rejects_the_rest():
    zmm = next(i for i in PROBE.injections if i.name == "zmm")
    assert zmm.verify(interpret(_failed(_zmm_injected()))) is None
    assert "registers (zmm0-31, k0-7)" in zmm.verify(interpret(_failed(_zmm_injected()[:-1])))
    whole_low = _zmm_injected()
    whole_low[0] = _inverted("zmm0", 64, 0)
    assert "zmm0: differing bytes 0-63, expected 32-63" in zmm.verify(interpret(_failed(whole_low)))


def test_exposure_declaration_says_what_is_counted():
    assert "switched out" in PROBE.exposure and "RUSAGE_THREAD" in PROBE.exposure
    assert PROBE.min_exposures >= 1000


def test_zmm_diagnosis_names_each_region():
    reason = interpret(_failed(_zmm_injected())).reason
    assert "bits 256-511 (ZMM upper half)" in reason
    assert "bits 0-511 (whole ZMM)" in reason
    assert "mask register" in reason
    assert "XMM" not in reason and "mixed" not in reason


def test_the_diagnosis_lists_registers_in_numeric_order_and_folds_lanes():
    # What a real vulnerable 5.4.0 kernel produced: 16 YMM registers, 4 lanes each, all from
    # another worker: once 64 lane names sorted as text (2.5 KB), now one short line.
    names = [f"ymm{i}" for i in (10, 2, 11, 0, 1, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15)]
    assert compact_registers(names) == "ymm0–15"
    assert compact_registers(["ymm3", "ymm1", "k2", "k1", "ymm2", "ymm9"]) == "ymm1–3, ymm9, k1–2"
    sources = [", ".join(f"worker 3's register {r} lane {lane}" for lane in range(4)) for r in range(16)]
    assert summarise_sources(sources) == "worker 3's registers 0–15 (lanes 0–3)"
    mixed = summarise_sources(["inverted", "this worker's k2 lane 0", "zeros, inverted"])
    assert mixed == "this worker's k2 (lane 0); inverted; zeros"


def test_refused_userfaultfd_says_why_exposures_are_few_and_how_long_a_pass_takes():
    note = "userfaultfd for kernel-mode faults was refused (EPERM): it needs CAP_SYS_PTRACE"
    few = ProbeResult("signal-vector", "pass", exposures=4, elapsed_s=2.0, evidence={"fault_in_note": note})
    settled = PROBE.settle(interpret(few))
    assert settled.verdict == "inconclusive"
    assert note in settled.reason and "about 500 s at this rate" in settled.reason
    assert "allow userfaultfd" in settled.reason
    enough = ProbeResult("signal-vector", "pass", exposures=5000, elapsed_s=2.0, evidence={"fault_in_note": note})
    assert "few_exposures_because" not in interpret(enough).evidence
    assert PROBE.settle(interpret(enough)).verdict == "pass"
