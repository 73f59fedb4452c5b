"""vDSO stack use: static analysis and measurement agree with the known truth of test
libraries built four ways, and with each other on this machine's real vDSO."""

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from shakeout.host import read_host
from shakeout.probes import get_probe
from shakeout.runner import ProbeRun, run_probe
from shakeout.vdso import analyze_bytes, combine, round16
from shakeout.vdso.image import running_vdso

HOST = read_host()
pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(HOST.arch != "x86_64" or not shutil.which("gcc"), reason="x86-64 with gcc"),
]

# Non-leaf functions named and typed like the vDSO's, calling a helper with a FRAME-byte
# local array that it touches every 512 bytes down to its lowest byte.
SOURCE = textwrap.dedent(
    """
    #include <stddef.h>
    #include <sys/time.h>
    #include <time.h>
    static __attribute__((noinline)) long fill(volatile char *p, long n, long seed)
    {
        for (long i = n - 1; i >= 0; i -= 512)
            p[i] = (char)seed;
        p[0] = (char)seed;
        return p[n / 2];
    }
    static __attribute__((noinline)) long helper(long a, long b)
    {
        volatile char buf[FRAME];
        return fill(buf, FRAME, a) + b;
    }
    int __vdso_clock_gettime(long clk, struct timespec *ts)
    {
        long r = helper(clk, 1);
        if (ts) { ts->tv_sec = r; ts->tv_nsec = 0; }
        return 0;
    }
    int __vdso_clock_getres(long clk, struct timespec *ts) { return __vdso_clock_gettime(clk + 1, ts); }
    int __vdso_gettimeofday(struct timeval *tv, void *tz)
    {
        long r = helper(2, 3);
        (void)tz;
        if (tv) { tv->tv_sec = r; tv->tv_usec = 0; }
        return 0;
    }
    long __vdso_time(long *t) { long r = helper(4, 5); if (t) *t = r; return r; }
    int __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused)
    {
        long r = helper(6, 7);
        (void)unused;
        if (cpu) *cpu = (unsigned)r;
        if (node) *node = 0;
        return 0;
    }
    """
)

VARIANTS = {
    "plain": ["-DFRAME=64"],
    "stack-check": ["-DFRAME=64", "-fstack-check"],
    "clash-protection": ["-DFRAME=20000", "-fstack-clash-protection"],
    "large-array": ["-DFRAME=20000", "-fno-stack-clash-protection"],
}


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    out = tmp_path_factory.mktemp("vdso-like")
    src = out / "vdso_like.c"
    src.write_text(SOURCE)
    built = {}
    for name, flags in VARIANTS.items():
        lib = out / f"lib{name}.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", *flags, str(src), "-o", str(lib)], check=True)
        built[name] = lib
    return built


def both_ways(lib):
    static = analyze_bytes(lib.read_bytes(), str(lib)).functions
    result = run_probe(ProbeRun(get_probe("vdso-stack"), 60.0, options={"library": str(lib)}), HOST)
    assert result.verdict in ("pass", "fail"), result.reason
    measured = {f["name"]: f for f in result.evidence["functions"]}
    rows = {r.name: r.to_dict() for r in combine(static, measured, 104)}
    for row in rows.values():
        assert row["complete"], row
        assert row["measured_bytes"] is not None, row
        assert row["consistent"], "measured {} > static {}: the static analysis is wrong".format(
            row["measured_bytes"], row["static_bytes"]
        )
    return rows, result


def test_plain_build_is_small(libraries):
    rows, result = both_ways(libraries["plain"])
    assert result.verdict == "pass"
    for row in rows.values():
        assert 16 <= row["static_bytes"] < 256 and row["measured_bytes"] < 256
        assert not row["probes"] and not row["leaf"]


def test_stack_check_build_probes_a_page_below(libraries):
    rows, result = both_ways(libraries["stack-check"])
    assert result.verdict == "fail"
    for row in rows.values():
        assert row["static_bytes"] >= 4096, row
        assert row["measured_bytes"] >= 4096, row  # the probe really touches the guard page
        assert any(p["depth"] >= 4096 for p in row["probes"]), row


def test_clash_protection_probes_every_page(libraries):
    rows, _ = both_ways(libraries["clash-protection"])
    for row in rows.values():
        assert 20000 <= row["static_bytes"] < 20000 + 512, row
        assert 20000 <= row["measured_bytes"] <= round16(row["static_bytes"]), row
        depths = sorted(p["depth"] for p in row["probes"])
        assert len(depths) >= 4 and depths[-1] >= 16384, row  # one probe per page of the frame
        # The deepest access is in helper's 20,000-byte frame, reached through the call chain.
        assert any(name.split(".")[0] == "helper" for name in row["decided_by"]), row


def test_large_array_without_probes(libraries):
    rows, _ = both_ways(libraries["large-array"])
    for row in rows.values():
        assert 20000 <= row["static_bytes"] < 20000 + 512
        assert row["measured_bytes"] >= 20000
        assert not [p for p in row["probes"] if p["depth"] >= 4096]


def test_this_machines_vdso_both_ways():
    result = run_probe(ProbeRun(get_probe("vdso-stack"), 60.0), HOST)
    assert result.verdict == "pass", result.reason
    # A measurement, not a statistical search: no probability bound anywhere.
    assert result.bound is None and result.to_dict()["failure_probability_bound_95"] is None
    rows = result.evidence["functions"]
    assert {r["name"] for r in rows} >= {"__vdso_clock_gettime", "__vdso_gettimeofday", "__vdso_time"}
    for row in rows:
        assert row["complete"], row
        assert row["consistent"], row
        if row["name"] != "__vdso_getrandom" or row["measured_bytes"] is not None:
            assert row["measured_bytes"] is not None, row
    assert result.evidence["image_sha256"] and "image" not in result.evidence
    image = running_vdso()[: result.evidence["image_bytes"]]  # the ELF part of the mapping
    assert hashlib.sha256(image).hexdigest() == result.evidence["image_sha256"]


def test_cli_json_and_exit_status(libraries):
    proc = subprocess.run(
        [sys.executable, "-m", "shakeout", "vdso", str(libraries["stack-check"]), "--measure", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["dangerous"] and not doc["inconsistent"]
    for fn in doc["functions"]:
        assert {"name", "static_bytes", "measured_bytes"} <= set(fn)
        assert fn["measured_bytes"] >= 4096, fn
    proc = subprocess.run(
        [sys.executable, "-m", "shakeout", "vdso", str(libraries["plain"]), "--budget", "16"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0 and "over budget" in proc.stdout
