"""Discovery for newcomers: `show` by bug, probe or CVE id; `list`, `show`, `probes` and
`host` as JSON with the schema; `probes` lists every option; catalog prose reads at 80
columns."""

import json

import pytest

from shakeout.catalog import load_catalog
from shakeout.cli import main
from shakeout.discovery import find_subject
from shakeout.errors import UsageError
from shakeout.probes import all_probes
from shakeout.results import SCHEMA


def run(capsys, monkeypatch, *argv, columns=80):
    monkeypatch.setenv("COLUMNS", str(columns))
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_show_finds_a_bug_a_probe_and_a_cve():
    bugs, probes = load_catalog(), all_probes()
    assert find_subject("linux-signal-vector", bugs, probes).found_as == "bug"
    probe = find_subject("signal-vector", bugs, probes)
    assert probe.found_as == "probe" and probe.probe is probes["signal-vector"]
    assert {b.id for b in probe.bugs} == {b.id for b in bugs.values() if "signal-vector" in b.probes}
    cve = find_subject("cve-2019-19602", bugs, probes)  # as advisories and people write it
    assert cve.found_as == "cve" and [b.id for b in cve.bugs] == ["linux-signal-vector"]


@pytest.mark.parametrize("query", ["nope", "CVE-1999-0001", "signal_vector", ""])
def test_show_unknown_names_what_exists(query):
    with pytest.raises(UsageError) as exc:
        find_subject(query, load_catalog(), all_probes())
    assert "linux-signal-vector" in str(exc.value) or "CVE-2019-19602" in str(exc.value)


@pytest.mark.parametrize(
    "argv",
    [
        ("list", "--format", "json"),
        ("show", "linux-signal-vector", "--format", "json"),
        ("show", "signal-vector", "--format", "json"),
        ("show", "CVE-2019-19602", "--format", "json"),
        ("probes", "--format", "json"),
        ("host", "--format", "json"),
    ],
)
def test_every_discovery_document_carries_the_schema(capsys, monkeypatch, argv):
    status, out, _ = run(capsys, monkeypatch, *argv)
    doc = json.loads(out)
    assert status == 0 and doc["schema"] == SCHEMA and doc["command"] == argv[0]


def test_show_probe_json_has_its_options_and_bugs(capsys, monkeypatch):
    _, out, _ = run(capsys, monkeypatch, "show", "fork-cow", "--format", "json")
    doc = json.loads(out)
    assert doc["found_as"] == "probe" and doc["probe"]["id"] == "fork-cow"
    assert "bsd-fork-cow" in doc["probe"]["bugs"] and [b["id"] for b in doc["bugs"]] == doc["probe"]["bugs"]
    names = [o["name"] for o in doc["probe"]["options"]]
    assert names == [o.name for o in all_probes()["fork-cow"].user_options()]
    mode = next(o for o in doc["probe"]["options"] if o["name"] == "mode")
    assert mode["choices"] == ["stale-read", "tlb"] and mode["help"]


def test_list_json_names_the_fix_and_first_mitigation(capsys, monkeypatch):
    _, out, _ = run(capsys, monkeypatch, "list", "--format", "json")
    bugs = {b["id"]: b for b in json.loads(out)["bugs"]}
    assert set(bugs) == set(load_catalog())
    sv = bugs["linux-signal-vector"]
    assert sv["fix"].startswith("fixed in 5.3.15") and sv["first_mitigation"] and sv["cve"] == ["CVE-2019-19602"]


def test_probes_text_lists_every_probe_and_option_within_80_columns(capsys, monkeypatch):
    status, out, _ = run(capsys, monkeypatch, "probes")
    assert status == 0
    assert all(len(line) <= 80 and line == line.rstrip() for line in out.splitlines())
    for spec in all_probes().values():
        assert spec.id in out
        for option in spec.user_options():
            assert f"{option.name}=" in out
    assert "regs=auto|xmm|ymm|zmm" in out


def test_catalog_prose_reflows_at_80_columns(capsys, monkeypatch):
    """The TOML's own line breaks (at ~90 columns) used to split sentences at 80."""
    _, out, _ = run(capsys, monkeypatch, "show", "freebsd-xsave-xmm")
    assert all(len(line) <= 80 for line in out.splitlines())
    summary = out.split("Summary\n", 1)[1].split("\n\n", 1)[0]
    bug = load_catalog()["freebsd-xsave-xmm"]
    assert " ".join(summary.split()) == " ".join(bug.summary.split())
    short = [line for line in summary.splitlines()[:-1] if len(line) < 60]
    assert not short, f"a summary line ends early (a TOML line break kept): {short}"


def test_cpu_family_in_one_base(capsys, monkeypatch):
    _, out, _ = run(capsys, monkeypatch, "show", "bsd-fork-cow")
    assert "family 23 (0x17)" in out and "family 0x17" not in out


def test_option_values_show_range_default_and_seconds():
    from shakeout.report.text import option_values

    assert option_values({"name": "timeout-ms", "minimum": 10.0, "maximum": 60000.0, "default": "1000"}) == (
        "timeout-ms=10..60000 (default 1000)"
    )
    assert option_values({"name": "wait", "kind": "seconds", "minimum": 0.0, "maximum": 5.0}) == "wait=0..5 s"
    assert option_values({"name": "regs", "choices": ["auto", "xmm"]}) == "regs=auto|xmm"
    big = {"name": "seed", "kind": "int", "minimum": 0.0, "maximum": 9007199254740991.0}
    assert option_values(big) == "seed=0..9007199254740991"  # never 9.0072e+15
    assert option_values({"name": "cpus", "kind": "text", "minimum": 1.0, "maximum": 4000.0}) == "cpus=TEXT"
