"""Machine facts read from log lines, and the bounded streaming reader."""

import io

import pytest

from shakeout.kversion import KernelVersion
from shakeout.triage import reader
from shakeout.triage.facts import decode_cpuid_signature, line_facts, syslog_host
from shakeout.triage.reader import InputStats, _blocks


@pytest.mark.parametrize(
    ("line", "expected", "host"),
    [
        (
            "Linux redacted 4.4.0-78-generic #99-Ubuntu SMP Thu Apr 27 15:29:09 UTC 2017 x86_64 x86_64 x86_64 "
            "GNU/Linux",
            {"os": "linux", "arch": "x86_64", "kernel_version": KernelVersion(4, 4, 0), "ubuntu_abi": (78, 99)},
            "redacted",
        ),
        (
            "NetBSD vm6.localdomain 6.1.2 NetBSD 6.1.2 (GENERIC) amd64",
            {"os": "netbsd", "arch": "x86_64"},
            "vm6.localdomain",
        ),
        (
            "[    0.000000] Linux version 5.4.0-1-amd64 (debian-kernel@lists.debian.org) (gcc version 9.2.1 20191130 "
            "(Debian 9.2.1-21)) #1 SMP Debian 5.4.6-1 (2019-12-27)",
            {"os": "linux", "kernel_version": KernelVersion(5, 4, 6)},
            "",
        ),
        (
            "CPU: 3 PID: 1234 Comm: node_exporter Not tainted 5.3.7-arch1-1 #1",
            {"kernel_version": KernelVersion(5, 3, 7)},
            "",
        ),
        ("go version go1.14 linux/amd64", {"os": "linux", "arch": "x86_64"}, ""),
        ("\t/tmp/workdir/go/src/runtime/sys_openbsd_386.s:351 +0x7", {"os": "openbsd", "arch": "i386"}, ""),
        ("microcode: Current revision: 0x0000012b", {"microcode": 0x12B}, ""),
        (
            "smpboot: CPU0: AMD Ryzen 9 5950X 16-Core Processor (family: 0x19, model: 0x21, stepping: 0x0)",
            {"cpu_vendor": "AuthenticAMD", "cpu_family": 0x19, "cpu_model": 0x21},
            "",
        ),
        (
            "EDAC sbridge MC1: PROCESSOR 0:306e4 TIME 1519356496 SOCKET 1 APIC 20",
            {"cpu_family": 6, "cpu_model": 0x3E},
            "",
        ),
    ],
)
def test_line_facts(line, expected, host):
    found, declared = line_facts(line)
    assert {k: found.get(k) for k in expected} == expected
    assert declared == host


def test_compiler_comes_from_kversion():
    found, _ = line_facts("Linux version 5.3.7-arch1-1 (linux@archlinux) (gcc version 9.2.0 (GCC)) #1 SMP PREEMPT")
    assert str(found["kernel_compiler"]) == "gcc 9.2.0"


def test_prose_is_not_a_uname_line():
    assert (
        line_facts("The bug is present in vanilla Linux kernel versions 5.2.x for any x")[0].get("kernel_version")
        is None
    )


def test_cpuid_signature_decoding():
    assert decode_cpuid_signature(0x906EA) == (6, 0x9E, 0xA)
    assert decode_cpuid_signature(0x00A60F12) == (0x19, 0x61, 2)


def test_syslog_host():
    assert syslog_host("May  7 06:45:12 errol kernel: [1.2] mce: x") == "errol"
    assert syslog_host("Feb 23 03:28:16 kernel: mce: [Hardware Error]") == ""
    assert syslog_host("2024-01-02T03:04:05.123+00:00 db7 app[3]: x") == "db7"


def chunks(data, cap=0, block=None, monkeypatch=None):
    stats = InputStats("t")
    return list(_blocks(io.BytesIO(data), stats, cap)), stats


def test_blocks_are_whole_lines_across_block_boundaries(monkeypatch):
    monkeypatch.setattr(reader, "BLOCK_BYTES", 7)
    data = "é line one\nline two\nlast".encode() * 3
    out, stats = chunks(data)
    assert "".join(out) == data.decode()
    assert all(c.endswith("\n") for c in out[:-1])
    assert not stats.undecodable_bytes


def test_mixed_encodings_are_replaced_not_fatal():
    out, stats = chunks(b"ok\n" + "caf\xe9 latin-1\n".encode("latin-1") + b"\xff\xfe\n")
    assert "caf\ufffd latin-1" in "".join(out) and stats.undecodable_bytes


def test_binary_lines_are_skipped_keeping_numbering():
    out, stats = chunks(b"first\n\x00\x01\x02\x03binary\x00\nfatal error: fault\n")
    assert "".join(out).split("\n")[:3] == ["first", "", "fatal error: fault"] and stats.binary_lines == 1


def test_overlong_lines_are_cut(monkeypatch):
    monkeypatch.setattr(reader, "MAX_LINE_CHARS", 10)
    monkeypatch.setattr(reader, "BLOCK_BYTES", 4)
    out, stats = chunks(b"short\n" + b"x" * 50 + b"\nafter\n")
    assert "".join(out).split("\n") == ["short", "x" * 10, "after", ""]
    assert stats.lines_cut == 1


def test_stream_cap_cuts_with_a_note():
    out, stats = chunks(b"line\n" * 100, cap=50)
    assert len("".join(out)) == 50 and stats.truncated_at == 50
    assert any("first" in n for n in stats.notes())


def test_empty_input_is_noted():
    out, stats = chunks(b"")
    assert out == [] and stats.notes() == ["t: empty"]
