"""The static bound holds for on-stack arrays indexed by a variable, and an alloca or VLA
makes the result incomplete: gcc-built vDSO-like libraries, measured and analysed.

Each function writes its array at an index the arguments choose; the probe's argument
sets include the one that reaches the array's lowest byte (clock -1, NULL pointers), so
the measurement sees the true depth, which the static bound must cover.
"""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.runner import ProbeRun, run_probe
from shakeout.vdso import analyze_bytes, round16
from shakeout.vdso.stack import RED_ZONE_BYTES

HOST = read_host()
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(HOST.arch != "x86_64" or not shutil.which("gcc"), reason="x86-64 with gcc"),
]

SOURCE = textwrap.dedent(
    """
    #include <stddef.h>
    #include <time.h>
    static __attribute__((noinline)) void sink(volatile char *p) { p[0] = 0; }
    /* Leaf, array in the red zone (no frame): mov %dil,-0x78(%rsp,%rax,1). */
    int __vdso_clock_gettime(long clk, struct timespec *ts)
    {
        volatile char buf[100];
        long i = clk < 0 ? 0 : 99;
        buf[i] = (char)clk;
        if (ts) { ts->tv_sec = buf[99]; ts->tv_nsec = 0; }
        return 0;
    }
    /* Leaf with a frame, indexed below it: sub $0x...,%rsp; mov %dil,-0x78(%rsp,%rax,1). */
    int __vdso_clock_getres(long clk, struct timespec *ts)
    {
        volatile char buf[656];
        long i = clk < 0 ? 0 : 655;
        buf[i] = (char)clk;
        if (ts) { ts->tv_sec = buf[655]; ts->tv_nsec = 0; }
        return 0;
    }
    /* Not a leaf: the array is in the frame, indexed by a variable. */
    int __vdso_gettimeofday(void *tv, void *tz)
    {
        volatile char buf[600];
        long i = tv ? 599 : 0;
        buf[i] = 1;
        sink(buf + 599);
        (void)tz;
        return buf[599];
    }
    /* A VLA: nothing bounds it statically. */
    long __vdso_time(long *t)
    {
        long n = t ? 16 : 3000;
        volatile char buf[n];
        buf[0] = 1;
        return buf[0];
    }
    /* alloca: the same. */
    int __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused)
    {
        volatile char *p = __builtin_alloca(cpu ? 64 : 3000);
        p[0] = 1;
        (void)node; (void)unused;
        return p[0];
    }
    """
)
ARRAY_BYTES = {"__vdso_clock_gettime": 100, "__vdso_clock_getres": 656, "__vdso_gettimeofday": 600}
UNBOUNDED = ("__vdso_time", "__vdso_getcpu")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    out = tmp_path_factory.mktemp("vdso-indexed")
    src = out / "indexed.c"
    src.write_text(SOURCE)
    lib = out / "libindexed.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", str(src), "-o", str(lib)], check=True)
    return lib


@pytest.fixture(scope="module")
def rows(library):
    static = {f.name: f for f in analyze_bytes(library.read_bytes(), str(library)).functions}
    result = run_probe(ProbeRun(get_probe("vdso-stack"), 60.0, options={"library": str(library)}), HOST)
    measured = {f["name"]: f["measured_bytes"] for f in result.evidence["measurements"]}
    return static, measured, result


@pytest.mark.parametrize("name", sorted(ARRAY_BYTES))
def test_indexed_array_is_bounded(rows, name):
    static, measured, _ = rows
    f = static[name]
    assert f.complete, f.notes
    # The measurement reaches the array's lowest byte: the bound must cover it.
    assert measured[name] >= ARRAY_BYTES[name], measured
    assert measured[name] <= round16(f.static_bytes), (measured[name], f.static_bytes)
    # ... and is no looser than the frame plus the red zone the ABI allows.
    assert f.static_bytes <= measured[name] + RED_ZONE_BYTES + 16, (measured[name], f.static_bytes)


def test_leaf_and_non_leaf(rows):
    static, _, _ = rows
    assert static["__vdso_clock_gettime"].leaf and static["__vdso_clock_getres"].leaf
    assert not static["__vdso_gettimeofday"].leaf


@pytest.mark.parametrize("name", UNBOUNDED)
def test_alloca_and_vla_are_incomplete(rows, name):
    static, measured, _ = rows
    f = static[name]
    assert not f.complete
    assert any("alloca or a variable-length array" in n for n in f.notes), f.notes
    assert measured[name] >= 3000  # the argument sets include the big allocation


def test_probe_does_not_pass_an_incomplete_analysis(rows):
    _, _, result = rows
    assert result.verdict == "error", (result.verdict, result.reason)
    assert "incomplete" in result.reason and "__vdso_time" in result.reason
    assert result.bound is None


def test_cli_exit_status_is_unknown_when_incomplete(library):
    proc = subprocess.run(
        [sys.executable, "-m", "shakeout", "vdso", str(library), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc["incomplete"]) == set(UNBOUNDED)
    assert all("alloca" in " ".join(notes) for notes in doc["incomplete_functions"].values())
