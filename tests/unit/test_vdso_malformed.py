"""Malformed images: one clear error line (VdsoError), never a traceback — fuzzed too."""

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shakeout.cli import main
from shakeout.vdso import analyze_bytes
from shakeout.vdso.image import VdsoError, running_vdso

try:
    REAL = running_vdso()
except VdsoError:  # pragma: no cover - machines without a vDSO
    REAL = b""
needs_vdso = pytest.mark.skipif(not REAL, reason="this process has no vDSO")


def patched(data, offset, fmt, value):
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@needs_vdso
@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: b"hello, world" * 100, "is not an ELF file"),
        (lambda d: b"", "is not an ELF file"),
        (lambda d: d[:64], "malformed ELF file"),
        (lambda d: d[: len(d) // 3], "truncated|malformed"),
        (lambda d: patched(d, 4, "B", 1), "32-bit|malformed"),  # EI_CLASS = ELFCLASS32
        (lambda d: patched(d, 18, "<H", 40), "machine EM_ARM"),  # e_machine = EM_ARM
        (lambda d: patched(d, 18, "<H", 183), "aarch64 image"),  # e_machine = EM_AARCH64
    ],
)
def test_malformed_images(make, needle):
    with pytest.raises(VdsoError, match=needle):
        analyze_bytes(make(REAL), "img")


def test_object_without_dynamic_symbols(tmp_path):
    src = tmp_path / "x.c"
    src.write_text("int f(void) { return 1; }\n")
    obj = tmp_path / "x.o"
    subprocess.run(["gcc", "-c", str(src), "-o", str(obj)], check=True)
    with pytest.raises(VdsoError, match=r"no loadable segments|no dynamic symbol table"):
        analyze_bytes(obj.read_bytes(), "x.o")


@needs_vdso
def test_garbage_in_text_is_reported_not_crashed():
    text = REAL.find(b"\x55\x48\x89\xe5")  # push rbp; mov rbp,rsp: inside .text
    assert text > 0
    garbage = REAL[:text] + b"\xff" * 64 + REAL[text + 64 :]
    rows = analyze_bytes(garbage, "img").functions
    assert any(not r.complete for r in rows)


@needs_vdso
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 8191), st.integers(0, 255)), min_size=1, max_size=20), st.integers(64, 8192))
def test_fuzz_mutated_real_images(mutations, length):
    data = bytearray(REAL[:length])
    for offset, value in mutations:
        if offset < len(data):
            data[offset] = value
    try:
        analyze_bytes(bytes(data), "fuzzed")
    except VdsoError as exc:
        assert "\n" not in str(exc)


@needs_vdso
def test_fuzz_cli_entry(tmp_path_factory, capsys):
    """Mutated images (and hostile budgets) through `shakeout vdso FILE`: an exit status from
    the contract, one stderr line for a usage error, never an internal error. FILE is only
    analysed (no --measure), so nothing of it runs."""
    tmp = tmp_path_factory.mktemp("vdso-fuzz")
    image = tmp / "image.so"

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(st.tuples(st.integers(0, 8191), st.integers(0, 255)), max_size=20),
        st.integers(0, 8192),
        st.one_of(
            st.none(), st.sampled_from(["0", "-1", "²", "1e9", "", "104", "99999999999999999999"]), st.text(max_size=6)
        ),
        st.sampled_from(["text", "json"]),
    )
    def one(mutations, length, budget, fmt):
        data = bytearray(REAL[:length])
        for offset, value in mutations:
            if offset < len(data):
                data[offset] = value
        image.write_bytes(bytes(data))
        argv = ["vdso", str(image), "--format", fmt] + ([] if budget is None else ["--budget", budget])
        code = main(argv)
        _, err = capsys.readouterr()
        assert code in (0, 1, 2, 3), (code, err)
        assert "internal error" not in err and "Traceback" not in err, err
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err

    one()


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image\n")
    for args, needle in (([str(bad)], "is not an ELF file"), ([str(tmp_path / "missing.so")], "cannot read")):
        proc = subprocess.run(
            [sys.executable, "-m", "shakeout", "vdso", *args], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 2
        assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not Path(tmp_path / "missing.so").exists()
