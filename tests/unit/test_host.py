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
