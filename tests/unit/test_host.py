from pathlib import Path

from shakeout.host import host_summary, parse_cpuinfo, read_host
from tests.unit.fakehost import AMD_CPUINFO, OLD_CPUINFO, fake_host


def test_cpuinfo_first_processor():
    cpu = parse_cpuinfo(AMD_CPUINFO)
    assert (cpu.vendor, cpu.family, cpu.model, cpu.stepping, cpu.microcode) == (
        "AuthenticAMD",
        25,
        1,
        1,
        "0x1000065",
    )
    assert cpu.vector_extensions == ("sse2", "avx", "avx2")


def test_cpuinfo_without_avx_or_microcode():
    cpu = parse_cpuinfo(OLD_CPUINFO)
    assert cpu.microcode is None
    assert "avx" not in cpu.vector_extensions


def test_fake_root(tmp_path):
    host = fake_host(
        tmp_path,
        "5.4.0-8-generic",
        "Linux version 5.4.0-8-generic (b@h) (gcc version 9.2.1 (Ubuntu 9.2.1-19ubuntu1)) #11-Ubuntu SMP",
    )
    assert host.kernel_release == "5.4.0-8-generic"
    assert str(host.kernel_compiler) == "gcc 9.2.1"
    assert host.ubuntu_abi == (8, 11)
    assert host.memlock_limit_bytes == 65536
    facts = dict(host_summary(host))
    assert facts["RLIMIT_MEMLOCK"] == "64 KiB"
    assert facts["kernel built with"] == "gcc 9.2.1"


def test_empty_root_is_not_an_error(tmp_path):
    host = read_host(tmp_path)
    assert host.cpu.vendor == "unknown"
    assert host.kernel_release  # falls back to uname


def test_this_machine_to_dict():
    facts = read_host().to_dict()
    for key in (
        "kernel_release",
        "kernel_compiler",
        "cpu",
        "vector_extensions",
        "memlock_limit_bytes",
        "cpus",
    ):
        assert key in facts


def test_microcode_load_from_the_kernel_log_lines():
    from shakeout.host import parse_microcode_log

    os_loaded = parse_microcode_log(
        ["microcode: Current revision: 0x0000012f", "microcode: Updated early from: 0x0000012b"], ""
    )
    assert (os_loaded.current, os_loaded.early_from, os_loaded.os_updated_early) == (0x12F, 0x12B, True)
    assert os_loaded.firmware_revision == 0x12B
    firmware = parse_microcode_log(["microcode: Current revision: 0x0000012f"], "")
    assert firmware.firmware_revision == 0x12F and firmware.os_updated_early is False
    old_kernel = parse_microcode_log(["microcode: microcode updated early to revision 0x12f, date = 2025-02-14"], "")
    assert old_kernel.os_updated_early and old_kernel.firmware_revision is None
    rotated = parse_microcode_log(["Linux version 6.1.0"], "")
    assert rotated.firmware_revision is None and "rotated" in rotated.describe()
    unreadable = parse_microcode_log(None, "the kernel log /dev/kmsg cannot be read: Operation not permitted")
    assert unreadable.describe().startswith("the kernel log")


def test_kernel_log_records_lose_their_prefix(tmp_path):
    from shakeout.host import read_kernel_log

    (tmp_path / "kmsg").write_text("6,1,100,-;microcode: Current revision: 0x000000b4\nplain line\n")
    lines, why = read_kernel_log(tmp_path / "kmsg")
    assert lines == ["microcode: Current revision: 0x000000b4", "plain line"] and why == ""


def test_kernel_log_that_is_a_fifo_or_a_device_does_not_block(tmp_path):
    import os
    import time

    from shakeout.host import read_kernel_log

    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer that never writes
    try:
        started = time.monotonic()
        lines, _ = read_kernel_log(fifo)
        assert lines == [] and time.monotonic() - started < 1
    finally:
        os.close(writer)
    assert read_kernel_log(Path("/dev/null"))[0] == []
    lines, _ = read_kernel_log(Path("/dev/zero"))  # endless: stops at the byte cap
    assert lines is not None
    missing, why = read_kernel_log(tmp_path / "absent")
    assert missing is None and "cannot be read" in why


def test_msr_read_on_every_cpu_and_its_absence(tmp_path):
    from shakeout.host import AMD_DE_CFG_MSR, read_msr
    from tests.unit.fakehost import write_msrs

    assert "modprobe msr" in read_msr(tmp_path, AMD_DE_CFG_MSR).reason
    write_msrs(tmp_path, [{AMD_DE_CFG_MSR: 0x200}, {AMD_DE_CFG_MSR: 0x0}])
    reading = read_msr(tmp_path, AMD_DE_CFG_MSR)
    assert reading.values == (0x200, 0x0) and reading.reason == ""
    assert reading.bit_set_everywhere(9) is False and reading.cpus_without(9) == [1]


def test_cpu_facts_for_errata(tmp_path):
    from tests.unit.fakehost import cpuinfo_for, write_msrs

    write_msrs(tmp_path, [{0xC0011029: 0x200}])
    amd = fake_host(
        tmp_path,
        "6.12.0",
        "Linux version 6.12.0 (b@h) (gcc version 14.2.0) #1",
        cpuinfo=cpuinfo_for("AuthenticAMD", 0x17, 0x31, 0, "0x830107b", "fpu avx hypervisor"),
        kmsg="6,1,1,-;microcode: Current revision: 0x0830107b\n",
        smt_active="1",
    )
    assert amd.hypervisor and amd.smt_active is True
    assert amd.msrs[0xC0011029].values == (0x200,)
    assert amd.microcode_load.firmware_revision == 0x0830107B
    facts = dict(host_summary(amd))
    assert facts["hypervisor"].startswith("yes") and facts["MSR 0xc0011029"] == "0x200"
    assert amd.to_dict()["microcode_load"]["current"] == "0x830107b"
    intel = fake_host(tmp_path / "i", "6.12.0", "Linux version 6.12.0", cpuinfo=OLD_CPUINFO)
    assert intel.msrs == {} and intel.smt_active is None and not intel.hypervisor
