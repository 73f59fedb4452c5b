"""Static verdicts of the CPU errata: every boundary of every microcode table, and what hides them.

The tables here are restated from the sources (Linux's Zenbleed table after 5c84b051bd4e,
Intel's microcode release notes and issues 84/102, the Debian SKL150/KBL095 advisory), so a
wrong catalog row fails a test instead of being copied into it.
"""

import pytest

from shakeout.assess import AFFECTED, IN_RANGE, NOT_APPLICABLE, OUTSIDE, UNDETERMINED, assess_static, decide
from shakeout.catalog import load_catalog
from shakeout.host import AMD_DE_CFG_MSR
from shakeout.results import ProbeResult
from tests.unit.fakehost import cpuinfo_for, fake_host, write_msrs

CATALOG = load_catalog()
AMD, INTEL = "AuthenticAMD", "GenuineIntel"
PROC_VERSION = "Linux version 6.12.0 (b@h) (gcc version 14.2.0 (GCC)) #1 SMP"

# Linux arch/x86/kernel/cpu/amd.c after 5c84b051bd4e: (first model, last model, fixed revision)
ZENBLEED_FIXED = [
    (0x30, 0x3F, 0x0830107B),
    (0x60, 0x67, 0x0860010C),
    (0x68, 0x6F, 0x08608107),
    (0x70, 0x7F, 0x08701033),
    (0xA0, 0xAF, 0x08A00009),
]
ZENBLEED_NO_FIX = [(0x40, 0x4F), (0x90, 0x91)]
ZENBLEED_OUTSIDE_MODELS = [0x2F, 0x50, 0x5F, 0x80, 0x8F, 0x92, 0x9F, 0xB0]
# Debian advisory, June 2017: (model, stepping, fixed revision)
SKL150_KBL095_FIXED = [(0x4E, 3, 0xB9), (0x5E, 3, 0xBA), (0x8E, 9, 0x49), (0x9E, 9, 0x49)]


def host(tmp_path, vendor, family, model, stepping, microcode, flags="fpu sse2 avx ht", **kwargs):
    cpuinfo = cpuinfo_for(vendor, family, model, stepping, microcode, flags)
    return fake_host(tmp_path, "6.12.0", PROC_VERSION, cpuinfo=cpuinfo, **kwargs)


def verdict(bug_id, machine, results=()):
    bug = CATALOG[bug_id]
    static = assess_static(bug, machine)
    return static, decide(bug, static, list(results))


def kmsg(*messages):
    return "".join(f"6,{i},{i * 1000},-;{m}\n" for i, m in enumerate(messages))


def zen_msrs(tmp_path, *bits):
    write_msrs(tmp_path, [{AMD_DE_CFG_MSR: (1 << 9 if bit else 0) | 0x2000} for bit in bits])


# --- Zenbleed --------------------------------------------------------------------------------


@pytest.mark.parametrize(("low", "high", "fixed"), ZENBLEED_FIXED)
@pytest.mark.parametrize("edge", ["low", "high"])
def test_zenbleed_fixed_revision_is_the_boundary(tmp_path, low, high, fixed, edge):
    model = low if edge == "low" else high
    zen_msrs(tmp_path / "old", False, False)
    old_static, old = verdict("amd-zenbleed", host(tmp_path / "old", AMD, 0x17, model, 0, hex(fixed - 1)))
    assert (old_static.status, old.verdict) == (AFFECTED, "vulnerable"), old.reason
    assert f"{fixed - 1:#x}" in old.reason and "clear on CPU 0, 1" in old.reason
    new_static, new = verdict("amd-zenbleed", host(tmp_path / "new", AMD, 0x17, model, 0, hex(fixed)))
    assert (new_static.status, new.verdict) == (OUTSIDE, "not-vulnerable"), new.reason


@pytest.mark.parametrize(("low", "high"), ZENBLEED_NO_FIX)
@pytest.mark.parametrize("edge", ["low", "high"])
def test_zenbleed_models_without_fixed_microcode_depend_on_the_chicken_bit(tmp_path, low, high, edge):
    model = low if edge == "low" else high
    zen_msrs(tmp_path / "set", True, True)
    _, protected = verdict("amd-zenbleed", host(tmp_path / "set", AMD, 0x17, model, 0, "0xffffffff"))
    assert protected.verdict == "not-vulnerable"
    assert "set on all 2 CPUs" in protected.reason
    zen_msrs(tmp_path / "half", True, False)
    _, half = verdict("amd-zenbleed", host(tmp_path / "half", AMD, 0x17, model, 0, "0xffffffff"))
    assert half.verdict == "vulnerable"
    assert "no microcode fixes it" in half.reason and "clear on CPU 1" in half.reason


def test_zenbleed_old_microcode_without_msr_access_is_unknown(tmp_path):
    static, v = verdict("amd-zenbleed", host(tmp_path, AMD, 0x17, 0x31, 0, "0x08301000"))
    assert (static.status, v.verdict) == (UNDETERMINED, "unknown")
    assert "msr" in v.reason and "0xc0011029 bit 9" in v.reason


@pytest.mark.parametrize("model", ZENBLEED_OUTSIDE_MODELS)
def test_zenbleed_other_models_are_not_applicable(tmp_path, model):
    static, v = verdict("amd-zenbleed", host(tmp_path, AMD, 0x17, model, 0, "0x1"))
    assert (static.status, v.verdict) == (NOT_APPLICABLE, "not-applicable")
    assert f"17-{model:02x}-00" in v.reason


@pytest.mark.parametrize(
    ("vendor", "family"), [(INTEL, 0x17), (AMD, 0x19), (AMD, 0x16), ("HygonGenuine", 0x18), ("unknown", None)]
)
def test_zenbleed_other_vendors_and_families(tmp_path, vendor, family):
    cpuinfo = cpuinfo_for(vendor, family if family is not None else 0, 0x31, 0, "0x1")
    if family is None:
        cpuinfo = ""
    _, v = verdict("amd-zenbleed", fake_host(tmp_path, "6.12.0", PROC_VERSION, cpuinfo=cpuinfo))
    assert v.verdict == "not-applicable"


def test_zenbleed_under_a_hypervisor_says_what_it_cannot_see(tmp_path):
    static, v = verdict("amd-zenbleed", host(tmp_path, AMD, 0x17, 0x31, 0, "0x1", flags="fpu avx hypervisor"))
    assert (static.status, v.verdict) == (UNDETERMINED, "unknown")
    assert "hypervisor" in v.reason and "host's operator" in v.reason and "(0x1)" in v.reason


def test_zenbleed_missing_microcode_line_is_unknown(tmp_path):
    static, v = verdict("amd-zenbleed", host(tmp_path, AMD, 0x17, 0x71, 0, None))
    assert (static.status, v.verdict) == (UNDETERMINED, "unknown")
    assert "no microcode revision" in v.reason


def test_zenbleed_on_other_oses_and_arches(tmp_path):
    machine = fake_host(
        tmp_path, "6.12.0", PROC_VERSION, cpuinfo=cpuinfo_for(AMD, 0x17, 0x31, 0, "0x1"), machine="aarch64"
    )
    assert verdict("amd-zenbleed", machine)[1].verdict == "not-applicable"


# --- Raptor Lake Vmin Shift -----------------------------------------------------------------

RAPTOR = ("intel-raptor-lake-vmin", INTEL, 6, 0xB7, 1)


def raptor(tmp_path, microcode, log=None, flags="fpu avx ht"):
    bug_id, vendor, family, model, stepping = RAPTOR
    return verdict(bug_id, host(tmp_path, vendor, family, model, stepping, microcode, flags=flags, kmsg=log))


@pytest.mark.parametrize("microcode", ["0x125", "0x129", "0x12b", "0x12e"])
def test_raptor_lake_before_0x12f_is_vulnerable_whoever_loaded_it(tmp_path, microcode):
    static, v = raptor(tmp_path, microcode, kmsg(f"microcode: Current revision: 0x{int(microcode, 16):08x}"))
    assert (static.status, v.verdict) == (AFFECTED, "vulnerable"), v.reason
    assert "0x12f" in v.reason


def test_raptor_lake_0x12f_from_the_firmware_is_not_vulnerable(tmp_path):
    static, v = raptor(tmp_path, "0x12f", kmsg("microcode: Current revision: 0x0000012f"))
    assert (static.status, v.verdict) == (OUTSIDE, "not-vulnerable"), v.reason
    assert "loaded by the firmware" in v.reason


@pytest.mark.parametrize(
    ("firmware", "expected"), [(0x129, "vulnerable"), (0x12D, "vulnerable"), (0x12E, "not-vulnerable")]
)
def test_raptor_lake_os_loaded_update_counts_only_over_firmware_0x12e(tmp_path, firmware, expected):
    log = kmsg("microcode: Current revision: 0x0000012f", f"microcode: Updated early from: 0x{firmware:08x}")
    _, v = raptor(tmp_path, "0x12f", log)
    assert v.verdict == expected, v.reason
    if expected == "vulnerable":
        assert f"firmware loaded only {firmware:#x}" in v.reason and "BIOS" in v.reason


@pytest.mark.parametrize(
    ("log", "needle"),
    [
        (None, "cannot be read"),
        (kmsg("Linux version 6.1.0"), "no 'microcode: Current revision' line"),
        (kmsg("microcode: microcode updated early to revision 0x12f, date = 2025-02-14"), "from which revision"),
    ],
)
def test_raptor_lake_new_microcode_of_unknown_origin_is_unknown(tmp_path, log, needle):
    static, v = raptor(tmp_path, "0x12f", log)
    assert (static.status, v.verdict) == (UNDETERMINED, "unknown")
    assert needle in v.reason and "0x12e" in v.reason


def test_raptor_lake_under_a_hypervisor_is_unknown(tmp_path):
    static, v = raptor(tmp_path, "0x1", flags="fpu avx hypervisor")
    assert (static.status, v.verdict) == (UNDETERMINED, "unknown")
    assert "hypervisor" in v.reason


@pytest.mark.parametrize(("model", "stepping"), [(0xBF, 2), (0xBF, 5)])
def test_raptor_lake_signatures_without_vmin_microcode_are_left_to_the_probe(tmp_path, model, stepping):
    static, v = verdict("intel-raptor-lake-vmin", host(tmp_path, INTEL, 6, model, stepping, "0x3a"))
    assert (static.status, v.verdict) == (IN_RANGE, "unknown")
    assert "no Vmin Shift microcode" in v.reason


@pytest.mark.parametrize(
    ("model", "stepping"), [(0xB7, 0), (0xB7, 2), (0xBA, 2), (0xBA, 3), (0xBF, 3), (0xA7, 1), (0x97, 2)]
)
def test_raptor_lake_mobile_and_other_signatures_are_not_applicable(tmp_path, model, stepping):
    _, v = verdict("intel-raptor-lake-vmin", host(tmp_path, INTEL, 6, model, stepping, "0x4124"))
    assert v.verdict == "not-applicable"


INTEGRITY_PASS = ProbeResult("cpu-integrity", "pass", exposures=100000, elapsed_s=5.0)
INTEGRITY_FAIL = ProbeResult("cpu-integrity", "fail", reason="CPU 3 fma: expected 0x1 observed 0x3")


def test_raptor_lake_old_microcode_stays_vulnerable_after_a_clean_integrity_run(tmp_path):
    static, _ = raptor(tmp_path, "0x125", kmsg("microcode: Current revision: 0x00000125"))
    assert decide(CATALOG["intel-raptor-lake-vmin"], static, [INTEGRITY_PASS]).verdict == "vulnerable"


def test_raptor_lake_fixed_microcode_then_the_integrity_probe_finds_degradation(tmp_path):
    static, _ = raptor(tmp_path, "0x12f", kmsg("microcode: Current revision: 0x0000012f"))
    bug = CATALOG["intel-raptor-lake-vmin"]
    assert decide(bug, static, [INTEGRITY_FAIL]).verdict == "vulnerable"
    assert decide(bug, static, [INTEGRITY_PASS]).verdict == "not-vulnerable"
    skipped = ProbeResult("cpu-integrity", "skip", reason="needs x86_64")
    assert decide(bug, static, [skipped]).verdict == "not-vulnerable"


def test_raptor_lake_hidden_facts_stay_unknown_after_a_clean_integrity_run(tmp_path):
    static, _ = raptor(tmp_path, "0x1", flags="fpu avx hypervisor")
    v = decide(CATALOG["intel-raptor-lake-vmin"], static, [INTEGRITY_PASS])
    assert v.verdict == "unknown" and "hypervisor" in v.reason and "cpu-integrity: pass" in v.reason


def test_raptor_lake_reason_says_degradation_is_permanent(tmp_path):
    bug = CATALOG["intel-raptor-lake-vmin"]
    assert "permanent" in bug.summary
    assert any("cpu-integrity" in m.command or "integrity" in m.command for m in bug.mitigations)


# --- SKL150 / KBL095 -------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "stepping", "fixed"), SKL150_KBL095_FIXED)
def test_skl150_kbl095_fixed_revision_is_the_boundary(tmp_path, model, stepping, fixed):
    bug = "intel-skl150-kbl095-partial-register"
    _, old = verdict(bug, host(tmp_path / "old", INTEL, 6, model, stepping, hex(fixed - 1), smt_active="1"))
    assert old.verdict == "vulnerable", old.reason
    assert "update microcode or disable smt" in old.mitigation.lower()
    _, new = verdict(bug, host(tmp_path / "new", INTEL, 6, model, stepping, hex(fixed), smt_active="1"))
    assert new.verdict == "not-vulnerable", new.reason


def test_skl150_with_smt_off_is_not_vulnerable_even_with_old_microcode(tmp_path):
    _, v = verdict("intel-skl150-kbl095-partial-register", host(tmp_path, INTEL, 6, 0x5E, 3, "0x9e", smt_active="0"))
    assert v.verdict == "not-vulnerable"
    assert "SMT is off" in v.reason


def test_skl150_smt_unknown_still_judges_microcode(tmp_path):
    _, v = verdict("intel-skl150-kbl095-partial-register", host(tmp_path, INTEL, 6, 0x5E, 3, "0x9e"))
    assert v.verdict == "vulnerable"


@pytest.mark.parametrize(("model", "stepping"), [(0x4E, 2), (0x5E, 4), (0x8E, 10), (0x9E, 10), (0x55, 7), (0xA7, 1)])
def test_skl150_other_signatures_are_not_applicable(tmp_path, model, stepping):
    _, v = verdict("intel-skl150-kbl095-partial-register", host(tmp_path, INTEL, 6, model, stepping, "0x1"))
    assert v.verdict == "not-applicable"


def test_skl150_skylake_sp_is_unknown(tmp_path):
    static, v = verdict("intel-skl150-kbl095-partial-register", host(tmp_path, INTEL, 6, 0x55, 4, "0x2006e05"))
    assert (static.status, v.verdict) == (IN_RANGE, "unknown")
    assert "no fixed revision known" in v.reason


def test_skl150_on_an_amd_cpu_is_not_applicable(tmp_path):
    _, v = verdict("intel-skl150-kbl095-partial-register", host(tmp_path, AMD, 6, 0x5E, 3, "0x1"))
    assert v.verdict == "not-applicable"


# --- Ryzen 1000 -----------------------------------------------------------------------------


def test_ryzen1000_model_is_decided_by_the_integrity_probe(tmp_path):
    machine = host(tmp_path, AMD, 0x17, 0x01, 1, "0x8001137")
    static, v = verdict("amd-ryzen1000-compile-segfault", machine)
    assert (static.status, v.verdict) == (IN_RANGE, "unknown")
    assert "only some early-production units fail" in v.reason
    assert verdict("amd-ryzen1000-compile-segfault", machine, [INTEGRITY_FAIL])[1].verdict == "vulnerable"
    assert verdict("amd-ryzen1000-compile-segfault", machine, [INTEGRITY_PASS])[1].verdict == "not-vulnerable"


@pytest.mark.parametrize(
    ("vendor", "family", "model"), [(AMD, 0x17, 0x08), (AMD, 0x17, 0x11), (AMD, 0x19, 0x01), (INTEL, 6, 0x01)]
)
def test_ryzen1000_other_cpus_are_not_applicable(tmp_path, vendor, family, model):
    _, v = verdict("amd-ryzen1000-compile-segfault", host(tmp_path, vendor, family, model, 2, "0x1"))
    assert v.verdict == "not-applicable"


# --- FreeBSD-EN-22:04.pcid and rdrand-constant ------------------------------------------------


def test_freebsd_pcid_is_not_applicable_on_linux_and_unknown_on_freebsd(tmp_path):
    linux = host(tmp_path / "l", INTEL, 6, 0x55, 4, "0x1")
    assert verdict("freebsd-en-22-04-pcid", linux)[1].verdict == "not-applicable"
    bsd = fake_host(tmp_path / "b", "12.2-RELEASE-p11", "", cpuinfo="", system="FreeBSD", machine="amd64")
    _, v = verdict("freebsd-en-22-04-pcid", bsd)
    assert v.verdict == "unknown"
    assert "freebsd-version -k" in v.reason


def test_rdrand_constant_is_decided_by_its_probe(tmp_path):
    machine = host(tmp_path, AMD, 0x17, 0x71, 0, "0x8701021")
    static = assess_static(CATALOG["rdrand-constant"], machine)
    assert static.status not in (NOT_APPLICABLE, AFFECTED)
    fail = ProbeResult("rdrand", "fail", reason="rdrand32: all 4096 successes returned 0xffffffff")
    clean = ProbeResult("rdrand", "pass", exposures=20000, evidence={"deterministic": True, "summary": "fine"})
    assert decide(CATALOG["rdrand-constant"], static, [fail]).verdict == "vulnerable"
    assert decide(CATALOG["rdrand-constant"], static, [clean]).verdict == "not-vulnerable"
    assert decide(CATALOG["rdrand-constant"], static, []).verdict == "unknown"


def test_this_intel_xeon_under_a_hypervisor(tmp_path):
    """This machine: Intel model 0xa7, microcode 0x1, hypervisor; no CPU erratum here applies."""
    machine = host(tmp_path, INTEL, 6, 0xA7, 1, "0x1", flags="fpu avx rdrand rdseed hypervisor")
    for bug_id in ("amd-zenbleed", "intel-raptor-lake-vmin", "intel-skl150-kbl095-partial-register"):
        assert verdict(bug_id, machine)[1].verdict == "not-applicable", bug_id
    assert verdict("amd-ryzen1000-compile-segfault", machine)[1].verdict == "not-applicable"
