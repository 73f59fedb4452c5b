"""The pure triage matcher: rules validation, scoring, context, bit flips, hosts, bounds."""

import copy
import sys

import pytest

from shakeout.catalog import load_catalog, parse_bug
from shakeout.catalog.triage import CpuCondition
from shakeout.errors import CatalogError
from shakeout.triage import matcher
from shakeout.triage.matcher import SIGNALS_PATH, Scanner, build_rules, load_rules, one_bit_apart

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

GENERIC = tomllib.loads(SIGNALS_PATH.read_text())
MINIMAL = {
    "id": "x-erratum",
    "kind": "defect",
    "title": "an invented CPU erratum for tests",
    "summary": "s",
    "mechanism": "m",
    "probes": [],
    "affected": {"os": ["linux"], "arch": ["x86_64"]},
    "references": [{"title": "r", "url": "https://example.org"}],
}


def scan(text, bugs=None, **sources):
    scanner = Scanner(load_rules(load_catalog().values() if bugs is None else bugs))
    for name, body in (sources or {"log": text}).items():
        scanner.feed(name, body)
    return scanner.result()


def by_id(result):
    return {s.id: s for s in result.suspects + result.not_indicated}


# ----------------------------------------------------------------------------- rules


def test_catalog_entries_all_carry_triage_data():
    for bug in load_catalog().values():
        assert bug.triage.signatures or bug.triage.symptoms, bug.id
        assert bug.triage.raises and bug.triage.lowers, bug.id


@pytest.mark.parametrize(
    ("triage", "message"),
    [
        ({"signature": [{"pattern": "([", "weight": 3, "reason": "r"}]}, "bad triage pattern"),
        ({"signature": [{"pattern": "x*", "weight": 3, "reason": "r"}]}, "matches an empty line"),
        ({"signature": [{"pattern": "(?i)x", "weight": 3, "reason": "r"}]}, "global flags"),
        ({"signature": [{"pattern": "x", "weight": 0, "reason": "r"}]}, "non-zero integer"),
        ({"signature": [{"pattern": "x", "weight": 3}]}, "needs a 'reason'"),
        ({"signature": [{"pattern": "x", "weight": 3, "reason": "r", "colour": 1}]}, "unknown triage field"),
        ({"cpu": [{"families": [6]}]}, "needs a 'vendor'"),
        ({"cpu": [{"vendor": "GenuineIntel", "microcode_fixed": "zz"}]}, "not a hexadecimal"),
        ({"raises": "one string"}, "list of strings"),
    ],
)
def test_bad_triage_data_is_a_catalog_error(triage, message):
    with pytest.raises(CatalogError, match=message):
        parse_bug(dict(MINIMAL, triage=triage), "x-erratum.toml")


def test_a_bad_regex_in_a_catalog_file_fails_the_catalog_load(tmp_path):
    source = (load_catalog()["linux-signal-vector"].source, "linux-signal-vector.toml")[1]
    text = (SIGNALS_PATH.parent.parent / "catalog" / source).read_text()
    (tmp_path / source).write_text(
        text.replace("runtime: note: your Linux kernel may be buggy", "runtime: note: ([", 1)
    )
    with pytest.raises(CatalogError, match=r"linux-signal-vector\.toml: bad triage pattern"):
        load_catalog(tmp_path)


def test_unknown_symptom_is_refused():
    bug = parse_bug(dict(MINIMAL, triage={"symptoms": ["no-such-symptom"]}), "x.toml")
    with pytest.raises(CatalogError, match="unknown symptom"):
        build_rules([bug], GENERIC)


def test_missing_context_weight_is_refused():
    generic = copy.deepcopy(GENERIC)
    del generic["context"]["kernel_outside"]
    with pytest.raises(CatalogError, match="kernel_outside"):
        build_rules([], generic)


# ----------------------------------------------------------------------------- scoring


def test_nothing_recognised():
    result = scan("hello\nworld\n")
    assert not result.recognised and not result.suspects and not result.not_indicated


def test_each_signal_counts_once_however_often_it_matches():
    line = "panic: runtime error: index out of range [3] with length 3\n"
    once, many = scan(line), scan(line * 500)
    assert once.suspects[0].score == many.suspects[0].score
    evidence = many.suspects[0].evidence[0]
    assert evidence.count == 500 and len(evidence.lines) == matcher.MAX_EXAMPLES


def test_kernel_in_range_alone_is_no_suspicion_but_outside_lowers():
    alone = scan("Linux version 5.3.7-arch1-1 (gcc version 9.2.0 (GCC)) #1 SMP\n")
    assert "linux-signal-vector" not in [s.id for s in alone.suspects]
    crash = "fatal error: unexpected signal during runtime execution\n"
    inside = by_id(scan(crash + "Linux version 5.3.7-arch1-1 (gcc version 9.2.0 (GCC)) #1 SMP\n"))
    outside = by_id(scan(crash + "Linux version 6.1.0-13-amd64 (gcc-12 (Debian 12.2.0-14) 12.2.0) #1 SMP\n"))
    gcc8 = by_id(scan(crash + "Linux version 5.3.7 (gcc version 8.3.0 (GCC)) #1 SMP\n"))
    assert inside["linux-signal-vector"].score > outside["linux-signal-vector"].score
    assert outside["linux-signal-vector"].score <= 0
    assert any(e.id == "compiler:compiler_outside" for e in gcc8["linux-signal-vector"].evidence)


def test_missing_facts_are_named_as_what_would_raise_suspicion():
    result = by_id(scan("fatal error: unexpected signal during runtime execution\n"))
    raises = " ".join(result["linux-signal-vector"].raises)
    assert "uname -a" in raises and "/proc/version" in raises


def test_commands_are_derived_from_the_entry():
    sv = by_id(scan("runtime: note: your Linux kernel may be buggy\n"))["linux-signal-vector"]
    assert sv.commands[0] == "shakeout check --only linux-signal-vector"
    assert "shakeout run signal-vector --duration 60" in sv.commands
    assert any(c.startswith("shakeout vm --kernel") for c in sv.commands)


def test_cpu_erratum_conditions_with_microcode():
    bug = parse_bug(
        dict(
            MINIMAL,
            triage={
                "symptoms": ["memory-corruption"],
                "cpu": [
                    {
                        "vendor": "AuthenticAMD",
                        "families": [0x17],
                        "models": [[0x30, 0x4F]],
                        "microcode_fixed": "0x0830107b",
                    }
                ],
            },
        ),
        "x-erratum.toml",
    )
    crash = "fatal error: unexpected signal during runtime execution\n"
    cpu = "vendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 49\nmicrocode\t: {}\n"
    old = by_id(scan(crash + cpu.format("0x830104d"), bugs=[bug]))["x-erratum"]
    new = by_id(scan(crash + cpu.format("0x830107b"), bugs=[bug]))["x-erratum"]
    intel = by_id(scan(crash + "vendor_id : GenuineIntel\ncpu family : 6\nmodel : 158\n", bugs=[bug]))["x-erratum"]
    assert any(e.id == "microcode:microcode_below_fix" for e in old.evidence)
    assert any(e.id == "microcode:microcode_fixed" for e in new.evidence)
    assert old.score > new.score and new.score <= 0
    assert any(e.id == "cpu:cpu_outside" for e in intel.evidence) and intel.score <= 0


def test_cpu_condition_undecided_without_facts():
    c = CpuCondition("GenuineIntel", (6,), ((0xB7, 0xB7),))
    assert c.matches("", None, None) is None
    assert c.matches("GenuineIntel", 6, 0xB7) is True
    assert c.matches("GenuineIntel", 6, 0x9E) is False
    assert c.matches("AuthenticAMD", None, None) is False


# ----------------------------------------------------------------------------- bit flips


def test_one_bit_apart():
    assert one_bit_apart(0xC000_1000_0000, 0xC000_0000_0000) == 28
    assert one_bit_apart(0xC420_0600_40, 0xC420_0600_60) is None  # bit 5: a field offset, not a flip
    assert one_bit_apart(0x1_0000, 0x1_0000) is None
    assert one_bit_apart(0x1000, 0x3000) is None  # too small to be a pointer


def test_bitflip_found_across_chunks_and_points_at_ram():
    filler = "".join(f"filler line {i}\n" for i in range(10))
    scanner = Scanner(load_rules(load_catalog().values()))
    scanner.feed("log", filler + "unexpected fault address 0xc0004000a8\nfatal error: fault\n")
    scanner.feed("log", "more\nmore\nruntime.mallocgc(0xc0000000a8, 0x30)\n")  # the value arrives in the next chunk
    ram = by_id(scanner.result())["ram-weak-cells"]
    flip = next(e for e in ram.evidence if e.id == "bit-flip")
    assert "bit 22" in flip.reason and [r.line for r in flip.lines] == [11, 15]


def test_no_bitflip_for_unrelated_values():
    text = "unexpected fault address 0xc41ffc7fff\n[signal SIGSEGV: segmentation violation addr=0xc41ffc7fff]\n" + (
        "runtime.throw(0xae6fb8, 0x2a) fp=0xc4203e8be8 sp=0xc4203e8bc8 pc=0x42c815\n"
    )
    assert all(e.id != "bit-flip" for s in scan(text).suspects for e in s.evidence)


# ----------------------------------------------------------------------------- hosts


CRASH = "fatal error: unexpected signal during runtime execution\n"


def test_crash_on_one_host_only_raises_hardware_and_ram():
    result = scan(
        None, a="Linux web1 6.1.0 #1 SMP x86_64 GNU/Linux\n" + CRASH, b="Linux web2 6.1.0 #1 SMP x86_64\nok\n"
    )
    for suspect in ("hardware", "ram-weak-cells"):
        assert any(e.id == "one-host" and "crashed: web1" in e.reason for e in by_id(result)[suspect].evidence)
    assert result.hosts["web1"]["crashed"] and not result.hosts["web2"]["crashed"]


def test_same_crash_everywhere_raises_software():
    line = "Nov  7 06:32:49 {} app[1]: fatal error: concurrent map writes\n"
    result = scan(None, syslog=line.format("web1") + line.format("web2") + line.format("web3"))
    sw = by_id(result)["software"]
    assert set(result.hosts) == {"web1", "web2", "web3"}
    assert any(e.id == "every-host" for e in sw.evidence)


def test_host_table_is_bounded(monkeypatch):
    monkeypatch.setattr(matcher, "MAX_HOSTS", 4)
    text = "".join(f"Nov  7 06:32:49 h{i} app: fatal error: concurrent map writes\n" for i in range(50))
    result = scan(text)
    assert len(result.hosts) <= 4 and any("hosts" in n for n in result.notes)
    assert by_id(result)["software"].evidence[0].count == 50
