import gzip
import stat

import pytest

from shakeout.errors import ShakeoutError
from shakeout.probes import get_probe
from shakeout.vm import guest_plan, initramfs
from shakeout.vm.console import parse_console
from shakeout.vm.qemu import kernel_arch


def read_newc(data):
    """A minimal reader, to check what the writer produced."""
    entries, at = [], 0
    while True:
        head = data[at : at + 110]
        assert head[:6] == b"070701"
        fields = [int(head[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        name = data[at + 110 : at + 110 + namesize - 1].decode()
        at += 110 + namesize
        at += -at % 4
        body = data[at : at + size]
        at += size
        at += -at % 4
        if name == "TRAILER!!!":
            return entries
        entries.append((name, mode, body, rmaj, rmin))


def test_newc_round_trip():
    archive = initramfs.build(
        [initramfs.directory("dev"), initramfs.console(), initramfs.regular("init", b"\x7fELF..", executable=True)]
    )
    entries = read_newc(gzip.decompress(archive))
    names = [e[0] for e in entries]
    assert names == ["dev", "dev/console", "init"]
    _, mode, _, major, minor = entries[1]
    assert stat.S_ISCHR(mode) and (major, minor) == (5, 1)
    assert entries[2][2] == b"\x7fELF.." and entries[2][1] & 0o111


def test_plan_lines():
    (line,) = guest_plan([get_probe("robust-futex-wakeup")], 3.0, 2)
    assert line.startswith("robust-futex-wakeup 3.0 /shakeout/bin/robust_futex --duration 3.0")
    assert line.endswith("--mode wakeup")


CONSOLE = """[    0.000000] Linux version 6.1.0 (gcc 12)
SHAKEOUT:BOOTED
SHAKEOUT:HOST {"release":"6.1.0-50-amd64","machine":"x86_64","proc_version":"Linux 6.1.0","cpus":2}
SHAKEOUT:START fork-cow
SHAKEOUT:LINE fork-cow {"event":"progress","iterations":1,"exposures":1,"elapsed":0.5}
SHAKEOUT:LINE fork-cow {"event":"result","verdict":"pass","iterations":10,"exposures":9,"elapsed":1.0}
SHAKEOUT:EXIT fork-cow {"status":0,"signal":null,"timed_out":false}
SHAKEOUT:START signal-vector
SHAKEOUT:EXIT signal-vector {"status":null,"signal":11,"timed_out":false}
SHAKEOUT:START robust-futex-wakeup
[   12.5] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b
"""


def test_console_transcript():
    run = parse_console(CONSOLE, {"fork-cow": 7.0, "signal-vector": 7.0})
    assert run.booted and not run.done
    assert run.host["release"] == "6.1.0-50-amd64"
    assert run.results["fork-cow"].verdict == "pass" and run.results["fork-cow"].exposures == 9
    assert run.results["signal-vector"].death_signal == "SIGSEGV"
    assert "robust-futex-wakeup" not in run.results
    assert run.panic.startswith("Kernel panic - not syncing: Attempted to kill init!")


def test_kernel_recognition(tmp_path):
    bz = tmp_path / "bzImage"
    bz.write_bytes(b"\0" * 0x202 + b"HdrS" + b"\0" * 0x200)
    assert kernel_arch(bz) == "x86_64"
    text = tmp_path / "notes.txt"
    text.write_text("hello" * 300)
    with pytest.raises(ShakeoutError, match="not a bootable Linux kernel image"):
        kernel_arch(text)
    with pytest.raises(ShakeoutError, match="cannot read kernel"):
        kernel_arch(tmp_path / "missing")
    arm = tmp_path / "Image"
    arm.write_bytes(b"\0" * 0x38 + b"ARM\x64" + b"\0" * 0x400)
    with pytest.raises(ShakeoutError, match="arm64 kernel"):
        kernel_arch(arm)


def test_memory_larger_than_the_machine_is_a_usage_error(tmp_path):
    from shakeout.errors import UsageError
    from shakeout.vm.qemu import check_memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        2048000 kB\nMemFree: 1 kB\n")
    check_memory("1G", meminfo)
    with pytest.raises(UsageError, match="more than this machine has"):
        check_memory("999999999G", meminfo)


def test_unknown_cpu_model_is_a_usage_error(tmp_path):
    from shakeout.errors import UsageError
    from shakeout.vm.qemu import check_cpu_model

    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text(
        "#!/bin/sh\necho 'Available CPUs:'\n"
        "echo 'x86 Skylake-Client  Intel Core Processor'\necho 'x86 max  Enables all'\n"
    )
    fake.chmod(0o755)
    check_cpu_model(str(fake), "Skylake-Client")
    check_cpu_model(str(fake), "max")
    with pytest.raises(UsageError, match="--cpu bogus: QEMU knows no such CPU model"):
        check_cpu_model(str(fake), "bogus")
