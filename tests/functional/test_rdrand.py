"""The rdrand probe on this CPU and on recorded sequences (its only possible fault injection)."""

import os
import random
import subprocess
import time

import pytest

from shakeout.binaries import binary_path
from shakeout.engine import run_injection
from shakeout.errors import UsageError
from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.probes.rdrand import ZEN2_ALL_ONES, ZEN5_RDSEED_ZEROS
from shakeout.runner import ProbeRun, parse_probe_options, run_probe

SPEC = get_probe("rdrand")
HOST = read_host()
HAS_INSTRUCTIONS = HOST.arch == "x86_64" and ({"rdrand", "rdseed"} & HOST.cpu.flags)


def groups(result):
    return {f"{g['insn']}{g['width']}": g for g in result.evidence["groups"]}


def write_draws(path, lines):
    path.write_text("".join(f"{insn} {width} {value:#x} {cf}\n" for insn, width, value, cf in lines))
    return path


def uniform(insn, width, n, seed):
    rng = random.Random(seed)
    return [(insn, width, rng.getrandbits(width), 1) for _ in range(n)]


@pytest.mark.skipif(not HAS_INSTRUCTIONS, reason="this CPU has neither RDRAND nor RDSEED")
def test_this_cpu_passes_quickly_and_deterministically():
    started = time.monotonic()
    result = run_probe(ProbeRun(SPEC, 2.0), HOST)
    assert result.verdict == "pass", result.reason
    assert time.monotonic() - started < 1.5
    assert result.deterministic and result.evidence["complete"] and result.evidence["source"] == "cpu"
    for name, group in groups(result).items():
        assert group["successes"] >= 64, name
        assert not group["findings"] and not group["constant"]
        if name.startswith("rdrand"):
            assert group["successes"] == 4096 and group["executions"] >= 4096


@pytest.mark.parametrize("injection", SPEC.injections, ids=lambda i: i.name)
def test_selftest_injections_are_caught_with_their_evidence(injection):
    result = run_injection(SPEC, HOST, injection, None)
    assert result.verdict == "fail", result.reason
    assert injection.verify(result) is None
    assert "not this CPU" in result.reason


def test_zen2_recording_names_the_constant(tmp_path):
    result = run_probe(ProbeRun(SPEC, 2.0, options={"source": str(ZEN2_ALL_ONES)}), HOST)
    found = groups(result)
    assert found["rdrand32"]["constant"] and found["rdrand32"]["all_ones"] == 256
    assert "all 256 successes returned 0xffffffffffffffff" in found["rdrand64"]["findings"]


def test_zen5_recording_flags_16_and_32_bit_rdseed_only():
    found = groups(run_probe(ProbeRun(SPEC, 2.0, options={"source": str(ZEN5_RDSEED_ZEROS)}), HOST))
    assert found["rdseed16"]["zeros"] == 60 and found["rdseed16"]["limits"]["zeros"] == 4
    assert found["rdseed32"]["findings"] and not found["rdseed64"]["findings"]
    assert found["rdseed16"]["failures"] == 32 and found["rdseed16"]["exhausted"] == 0


@pytest.mark.parametrize(
    ("lines", "verdict", "needle"),
    [
        (uniform("rdrand", 16, 4096, 1), "pass", "none constant"),
        (uniform("rdrand", 16, 4096, 2) + [("rdrand", 16, 0, 1)] * 5, "pass", "none constant"),
        (uniform("rdrand", 16, 4096, 3) + [("rdrand", 16, 0, 1)] * 6, "fail", "6 zeros with CF=1"),
        ([*uniform("rdseed", 64, 500, 4), ("rdseed", 64, 0, 1)], "fail", "1 zeros with CF=1"),
        (uniform("rdrand", 32, 500, 5) + [("rdrand", 32, 0xFFFFFFFF, 1)] * 2, "fail", "2 all-ones values"),
        (uniform("rdrand", 32, 500, 6) + [("rdrand", 32, 7, 1)] * 3, "fail", "2 repeats"),
        ([("rdrand", 32, 0x1234, 1)] * 8, "fail", "all 8 successes returned 0x1234"),
        ([("rdrand", 32, 0x1234, 1)] * 7, "error", "nothing to analyse"),
        ([("rdseed", 32, 0, 0)] * 33 + uniform("rdseed", 32, 64, 7), "pass", "none constant"),
    ],
    ids=["uniform", "5-zeros16", "6-zeros16", "zero64", "ones32", "repeats32", "constant8", "seven", "failures"],
)
def test_the_analysis_on_recorded_sequences(tmp_path, lines, verdict, needle):
    source = write_draws(tmp_path / "draws.txt", lines)
    result = run_probe(ProbeRun(SPEC, 2.0, options={"source": str(source)}), HOST)
    assert result.verdict == verdict, result.reason
    assert needle in result.reason


def test_failures_and_retries_are_counted_per_attempt(tmp_path):
    lines = [("rdseed", 16, 0, 0)] * 11 + [("rdseed", 16, 0, 0)] * 3 + uniform("rdseed", 16, 64, 8)
    found = groups(run_probe(ProbeRun(SPEC, 2.0, options={"source": str(write_draws(tmp_path / "d", lines))}), HOST))
    assert found["rdseed16"]["exhausted"] == 1 and found["rdseed16"]["retries"] == 3
    assert found["rdseed16"]["failures"] == 14


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("rdrand 32 0x1ffffffff 1\n", "fits the width"),
        ("rdrand 24 0x1 1\n", "width 16, 32 or 64"),
        ("rdrand 32 0x1 2\n", "CF must be 0 or 1"),
        ("rdrand 32 -1 1\n", "unsigned"),
        ("rdrand 32\n", "expected"),
        ("rdrand 32 0x1 1 extra\n", "expected"),
        ("x" * 300 + "\n", "longer than 255"),
        ("rdrand ３２ 0x1 1\n", "width 16, 32 or 64"),
    ],
)
def test_malformed_recordings_are_one_line_errors_with_the_line(tmp_path, text, needle):
    source = tmp_path / "bad.txt"
    source.write_text("# comment\n\n" + text)
    result = run_probe(ProbeRun(SPEC, 2.0, options={"source": str(source)}), HOST)
    assert result.verdict == "error" and needle in result.reason and "line 3" in result.reason


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/nonexistent/draws", "/tmp"])
def test_source_must_be_a_regular_file(path):
    with pytest.raises(UsageError, match="recorded RDRAND/RDSEED draws"):
        parse_probe_options(SPEC, [f"source={path}"])


def test_the_binary_refuses_a_fifo_itself(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = subprocess.run(
        [str(binary_path("rdrand")), "--duration", "2", "--source", str(fifo)],
        check=False,
        capture_output=True,
        timeout=10,
    )
    assert out.returncode == 2 and b"not a regular file" in out.stdout


def test_draws_option_is_bounded():
    for bad in ("63", "1000001", "１２８", "-5", ""):
        with pytest.raises(UsageError):
            parse_probe_options(SPEC, [f"draws={bad}"])
    assert parse_probe_options(SPEC, ["draws=64"]) == {"draws": "64"}
