import pytest

from shakeout.catalog import load_catalog, parse_bug, validate_against_probes
from shakeout.errors import CatalogError
from shakeout.probes import all_probes


def test_catalog_loads_and_matches_probes():
    bugs = load_catalog()
    assert {"linux-signal-vector", "freebsd-xsave-xmm"} <= set(bugs)
    assert validate_against_probes(bugs, list(all_probes())) == []


def test_every_entry_is_complete():
    for bug in load_catalog().values():
        assert bug.kind in ("defect", "hazard")
        assert bug.summary and bug.mechanism and bug.title
        assert bug.references, bug.id
        assert all(r.url.startswith("https://") for r in bug.references), bug.id
        assert bug.mitigations, bug.id


def test_signal_vector_entry_facts():
    bug = load_catalog()["linux-signal-vector"]
    assert bug.cve == ("CVE-2019-19602",)
    assert [str(r) for r in bug.affected.kernel] == ["5.2.0 up to before 5.3.15", "5.4.0 up to before 5.4.2"]
    assert bug.affected.kernel_compiler.min_major == 9
    assert any(c["id"] == "59c4bd853abc" for c in bug.fixed_by["commits"])
    commands = " ".join(m.command for m in bug.mitigations)
    for needle in ("ulimit -l", "--ulimit memlock=67108864", "GODEBUG=asyncpreemptoff=1"):
        assert needle in commands


def test_validation_names_unknown_and_unused_probes():
    bugs = load_catalog()
    problems = validate_against_probes(bugs, ["other-probe"])
    assert any("names probe 'signal-vector'" in p for p in problems)
    assert any("'other-probe' is named by no catalog entry" in p for p in problems)


MINIMAL = {
    "id": "x",
    "kind": "defect",
    "title": "t",
    "summary": "s",
    "mechanism": "m",
    "probes": [],
    "affected": {"os": ["linux"], "arch": ["x86_64"]},
    "references": [{"title": "r", "url": "https://example.org"}],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "bug"}, "kind must be one of"),
        ({"title": None}, "field 'title' must be a str"),
        (
            {"affected": {"os": ["linux"], "arch": ["x86_64"], "kernel": [{"introduced": "five"}]}},
            "not a kernel",
        ),
        ({"references": [{"title": "no url"}]}, "malformed entry"),
    ],
)
def test_malformed_entries(change, message):
    data = dict(MINIMAL, **change)
    with pytest.raises(CatalogError, match=message):
        parse_bug(data, "x.toml")


def test_missing_field():
    data = dict(MINIMAL)
    del data["mechanism"]
    with pytest.raises(CatalogError, match="missing field 'mechanism'"):
        parse_bug(data, "x.toml")


def test_bad_toml_file(tmp_path):
    (tmp_path / "broken.toml").write_text("id = \n")
    with pytest.raises(CatalogError, match=r"broken\.toml"):
        load_catalog(tmp_path)


def test_every_probe_says_what_its_exposures_count_and_for_which_bugs():
    catalog = load_catalog()
    for spec in all_probes().values():
        assert spec.exposure, f"{spec.id} does not say what an exposure is"
        assert spec.min_exposures >= 1
        for bug_id in spec.counts_for:
            assert bug_id in catalog, f"{spec.id} counts for unknown bug {bug_id}"
            assert spec.id in catalog[bug_id].probes, f"{spec.id} counts for {bug_id}, which does not name it"


@pytest.mark.parametrize(
    ("bug_id", "version", "affected"),
    [
        # robust-futex-lost-wakeup: ca16d5bee598 in 4.9.264, 4.14.158, 4.19.87, 5.3.14, 5.4.1, 5.5
        ("robust-futex-lost-wakeup", "4.9.263", True),
        ("robust-futex-lost-wakeup", "4.9.264", False),
        ("robust-futex-lost-wakeup", "4.12.0", True),
        ("robust-futex-lost-wakeup", "4.14.157", True),
        ("robust-futex-lost-wakeup", "4.14.158", False),
        ("robust-futex-lost-wakeup", "4.19.86", True),
        ("robust-futex-lost-wakeup", "4.19.87", False),
        ("robust-futex-lost-wakeup", "5.2.21", True),
        ("robust-futex-lost-wakeup", "5.3.13", True),
        ("robust-futex-lost-wakeup", "5.3.14", False),
        ("robust-futex-lost-wakeup", "5.4.0", True),
        ("robust-futex-lost-wakeup", "5.4.1", False),
        ("robust-futex-lost-wakeup", "5.5.0", False),
        # linux-signal-vector: 59c4bd853abc in 5.3.15 and 5.4.2 (5.2.y ended unfixed)
        ("linux-signal-vector", "5.1.21", False),
        ("linux-signal-vector", "5.2.21", True),
        ("linux-signal-vector", "5.3.14", True),
        ("linux-signal-vector", "5.3.15", False),
        ("linux-signal-vector", "5.4.1", True),
        ("linux-signal-vector", "5.4.2", False),
    ],
)
def test_ranges_never_call_a_fixed_stable_release_affected(bug_id, version, affected):
    from shakeout.kversion import parse_kernel_version

    ranges = load_catalog()[bug_id].affected.kernel
    parsed = parse_kernel_version(version)
    assert parsed is not None
    assert any(r.contains(parsed) for r in ranges) == affected
