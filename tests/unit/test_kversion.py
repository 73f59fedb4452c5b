import pytest

from shakeout.kversion import (
    KernelVersion,
    parse_kernel_compiler,
    parse_kernel_version,
    ubuntu_abi,
    upstream_kernel_version,
)

UBUNTU_54 = (
    "Linux version 5.4.0-8-generic (buildd@lgw01-amd64-024) (gcc version 9.2.1 20191109 "
    "(Ubuntu 9.2.1-19ubuntu1)) #11-Ubuntu SMP Wed Dec 4 11:14:55 UTC 2019"
)
DEBIAN_61 = (
    "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, "
    "GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"
)
FIRECRACKER = (
    "Linux version 6.18.44-fc-v595 (builder@sandboxing) (gcc (GCC) 15.3.0, GNU ld (GNU Binutils) 2.46) "
    "#1 SMP PREEMPT_DYNAMIC @0"
)
ARCH = "Linux version 5.4.2-arch1-1 (linux@archlinux) (gcc version 9.2.0 (GCC)) #1 SMP PREEMPT Thu, 05 Dec 2019"
CLANG = "Linux version 6.5.0 (u@h) (clang version 16.0.6, LLD 16.0.6) #1 SMP"
NO_COMPILER = "Linux version 5.3.7 (root@box) #1 SMP"


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("5.3.0-24-generic", KernelVersion(5, 3, 0)),
        ("5.4.0-1-amd64", KernelVersion(5, 4, 0)),
        ("5.4.2-arch1-1", KernelVersion(5, 4, 2)),
        ("6.18.44-fc-v657", KernelVersion(6, 18, 44)),
        ("5.2", KernelVersion(5, 2, 0)),
        ("4.19.0-26-cloud-amd64", KernelVersion(4, 19, 0)),
        ("5.5.0-rc1", KernelVersion(5, 5, 0, 1)),
        ("  6.1.76 ", KernelVersion(6, 1, 76)),
    ],
)
def test_release_strings(release, expected):
    assert parse_kernel_version(release) == expected


@pytest.mark.parametrize("release", ["", "vmlinuz", "linux-5.4", "x.y.z"])
def test_release_without_version(release):
    assert parse_kernel_version(release) is None


def test_release_candidate_sorts_before_release():
    assert parse_kernel_version("5.5.0-rc1") < parse_kernel_version("5.5.0")
    assert parse_kernel_version("5.4.99") < parse_kernel_version("5.5.0-rc1")
    assert str(parse_kernel_version("5.5-rc3")) == "5.5.0-rc3"


@pytest.mark.parametrize(
    ("text", "name", "version", "major"),
    [
        (UBUNTU_54, "gcc", "9.2.1", 9),
        (DEBIAN_61, "gcc", "12.2.0", 12),
        (FIRECRACKER, "gcc", "15.3.0", 15),
        (ARCH, "gcc", "9.2.0", 9),
        (CLANG, "clang", "16.0.6", 16),
        (
            "Linux version 5.3.1 (a@b) (gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0, GNU ld) #1",
            "gcc",
            "11.4.0",
            11,
        ),
    ],
)
def test_kernel_compiler(text, name, version, major):
    compiler = parse_kernel_compiler(text)
    assert compiler is not None
    assert (compiler.name, compiler.version, compiler.major) == (name, version, major)


def test_kernel_compiler_unknown():
    assert parse_kernel_compiler(NO_COMPILER) is None
    assert parse_kernel_compiler("Linux version 5.3 (a@b) (gcc) #1").major is None


def test_upstream_version_from_distribution_texts():
    assert upstream_kernel_version("6.1.0-18-amd64", DEBIAN_61) == KernelVersion(6, 1, 76)
    signature = "Ubuntu 5.4.0-26.30-generic 5.4.30"
    assert upstream_kernel_version("5.4.0-26-generic", UBUNTU_54, signature) == KernelVersion(5, 4, 30)
    assert upstream_kernel_version("5.4.2-arch1-1", ARCH) == KernelVersion(5, 4, 2)


def test_ubuntu_abi():
    assert ubuntu_abi("5.4.0-8-generic", UBUNTU_54) == (8, 11)
    assert ubuntu_abi("5.4.2-arch1-1", ARCH) is None
