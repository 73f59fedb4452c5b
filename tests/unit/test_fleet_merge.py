"""merge: validation, newest report per host, counts, and the attributes that separate vulnerable hosts."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
from pathlib import Path

import pytest

from shakeout.errors import UsageError
from shakeout.fleet import sources
from shakeout.fleet.merge import fisher_upper_tail, merge
from shakeout.fleet.render import render_json, render_markdown, render_text
from shakeout.fleet.reports import HostReport, Rejected, parse_report
from shakeout.fleet.sources import load_inputs, load_stdin
from tests.unit.fleetdata import BASE_TIME, report, write

BUG = "linux-signal-vector"


def _fleet(vulnerable_microcode: int = 7, clean: int = 212):
    docs = [report(f"v{i}", {BUG: "vulnerable"}, microcode="0x0830104d") for i in range(vulnerable_microcode)]
    docs += [report(f"c{i}", {BUG: "not-vulnerable"}, microcode="0x0830107b") for i in range(clean)]
    return [parse_report(d, f"r{i}.json") for i, d in enumerate(docs)]


def test_the_issue_example_reads_as_the_issue_says():
    summary = merge(_fleet())
    bug = summary.bugs[0]
    assert bug.counts == {"vulnerable": 7, "not-vulnerable": 212}
    best = bug.separators[0]
    assert (best.attribute, best.value) == ("microcode", "0x0830104d")
    assert best.exact
    assert "vulnerable on 7/7 hosts with microcode 0x0830104d, 0/212 others" in render_text(summary)
    assert math.isclose(best.p_value, 1 / math.comb(219, 7), rel_tol=1e-9)


def test_attributes_every_host_shares_separate_nothing():
    summary = merge(_fleet())
    attributes = {s.attribute for s in summary.bugs[0].separators}
    assert "kernel release" not in attributes  # all 219 hosts run the same kernel


def test_a_weak_association_ranks_below_an_exact_one():
    docs = [report(f"v{i}", {BUG: "vulnerable"}, microcode="0xbad", kernel=f"k{i % 2}") for i in range(6)]
    docs += [report(f"c{i}", {BUG: "not-vulnerable"}, microcode="0xgood", kernel=f"k{i % 2}") for i in range(40)]
    separators = merge([parse_report(d, str(i)) for i, d in enumerate(docs)]).bugs[0].separators
    assert separators[0].value == "0xbad"
    assert all(s.attribute != "kernel release" for s in separators)  # k0/k1 split both groups evenly


def test_probe_options_are_attributes_without_run_length_options():
    docs = [report(f"v{i}", {BUG: "vulnerable"}, workers=64) for i in range(3)]
    docs += [report(f"c{i}", {BUG: "not-vulnerable"}, workers=4) for i in range(30)]
    parsed = [parse_report(d, str(i)) for i, d in enumerate(docs)]
    assert isinstance(parsed[0], HostReport)
    assert ("options of signal-vector", "--workers 64") in parsed[0].attributes
    best = merge(parsed).bugs[0].separators[0]
    assert (best.attribute, best.value) == ("options of signal-vector", "--workers 64")


def test_unknown_and_not_applicable_hosts_are_counted_but_not_compared():
    docs = [report("v", {BUG: "vulnerable"}, microcode="0xa"), report("c", {BUG: "not-vulnerable"}, microcode="0xb")]
    docs += [report(f"u{i}", {BUG: "unknown"}, microcode="0xa") for i in range(5)]
    docs += [report(f"n{i}", {BUG: "not-applicable"}, microcode="0xa") for i in range(5)]
    bug = merge([parse_report(d, str(i)) for i, d in enumerate(docs)]).bugs[0]
    assert bug.counts == {"vulnerable": 1, "not-vulnerable": 1, "unknown": 5, "not-applicable": 5}
    micro = next(s for s in bug.separators if s.attribute == "microcode")
    assert (micro.alarming_with, micro.hosts_with, micro.alarming_others, micro.hosts_others) == (1, 1, 0, 1)


def test_newest_report_per_host_wins_and_is_said():
    old = report("h1", {BUG: "vulnerable"}, started_at=BASE_TIME)
    new = report("h1", {BUG: "not-vulnerable"}, started_at=BASE_TIME + dt.timedelta(hours=1))
    summary = merge([parse_report(new, "new.json"), parse_report(old, "old.json")])
    assert summary.hosts == 1 and summary.reports_read == 2
    assert summary.bugs[0].counts == {"not-vulnerable": 1}
    assert summary.duplicates[0].kept == "new.json" and summary.duplicates[0].dropped == ("old.json",)
    assert "1 host(s) sent more than one report; the newest of each was kept" in render_text(summary)


def test_order_of_inputs_does_not_change_the_result():
    parsed = _fleet(3, 20)
    assert render_json(merge(parsed)) == render_json(merge(list(reversed(parsed))))


def test_different_tool_versions_are_merged_with_a_note():
    docs = [
        report("a", {BUG: "not-vulnerable"}),
        report("b", {BUG: "not-vulnerable", "new-bug": "vulnerable"}, version="0.2.0"),
    ]
    summary = merge([parse_report(d, str(i)) for i, d in enumerate(docs)])
    text = render_text(summary)
    assert "different shakeout versions were merged: 0.1.0 (1 hosts), 0.2.0 (1 hosts)" in text
    assert [b.counts for b in summary.bugs if b.bug_id == "new-bug"] == [{"vulnerable": 1, "not assessed": 1}]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([1, 2], "not a shakeout report (a JSON list"),
        ({"schema": "other/2"}, "schema 'other/2'"),
        ({}, "no 'schema' key"),
        ({**report("h"), "command": "selftest"}, "a 'selftest' report"),
        ({**report("h"), "hostname": ""}, "'hostname' is empty"),
        ({**report("h"), "host": "x"}, "'host' is missing or not a JSON dict"),
        ({**report("h"), "started_at": "yesterday"}, "'started_at' is not an ISO 8601 time"),
        (
            {**report("h"), "bugs": [{"id": "b", "kind": "defect", "verdict": "maybe"}]},
            "unknown defect verdict 'maybe'",
        ),
        ({**report("h"), "bugs": [{"id": "b", "kind": "hazard", "verdict": "vulnerable"}]}, "unknown hazard verdict"),
        ({**report("h"), "bugs": [{"id": "b", "kind": "rumour", "verdict": "present"}]}, "unknown kind"),
        ({**report("h"), "bugs": ["b"]}, "bugs[0] is not an object"),
    ],
)
def test_foreign_or_malformed_reports_are_rejected_with_a_reason(doc, reason):
    result = parse_report(doc, "x.json")
    assert isinstance(result, Rejected) and reason in result.reason


def test_exit_status_bits_say_vulnerable_and_skipped_together():
    clean = [parse_report(report("a", {BUG: "not-vulnerable"}), "a")]
    vulnerable = [parse_report(report("b", {BUG: "vulnerable"}), "b")]
    hazard = [parse_report(report("c", hazards={"robust-futex-reuse": "present"}), "c")]
    skipped = [Rejected("bad.json", "not JSON")]
    assert merge(clean).exit_status == 0
    assert merge(clean + hazard).exit_status == 0  # a hazard present everywhere is not a fleet failure
    assert merge(vulnerable).exit_status == 1
    assert merge(clean + skipped).exit_status == 4
    assert merge(vulnerable + skipped).exit_status == 5


def test_formats_agree(tmp_path):
    summary = merge([*_fleet(2, 5), Rejected("bad.json", "not JSON")])
    doc = json.loads(render_json(summary))
    assert doc["bugs"][0]["counts"]["vulnerable"] == 2 and doc["skipped"] == [
        {"source": "bad.json", "reason": "not JSON"}
    ]
    markdown = render_markdown(summary)
    assert f"| `{BUG}` | defect | 2 | 5 | 0 | 0 | 0 |" in markdown
    assert "vulnerable on 2/2 hosts with microcode 0x0830104d, 0/5 others" in markdown


def test_fisher_tail_is_one_for_no_evidence_and_matches_a_hand_count():
    assert fisher_upper_tail(0, 5, 3, 10) == pytest.approx(1.0)
    # 2 of 3 alarming hosts among 4 drawn from 10: P(X >= 2) = (C(3,2)C(7,2) + C(3,3)C(7,1)) / C(10,4)
    assert fisher_upper_tail(2, 4, 3, 10) == pytest.approx((3 * 21 + 7) / 210)


def test_directories_are_walked_and_non_reports_skipped(tmp_path):
    write(tmp_path / "a.json", report("a", {BUG: "vulnerable"}))
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "b.json", report("b", {BUG: "not-vulnerable"}))
    (tmp_path / "sub" / "notes.txt").write_text("ignored: not *.json")
    (tmp_path / "broken.json").write_text('{"schema": "shakeout/1", ')
    (tmp_path / "latin1.json").write_bytes(b'{"x": "\xe9"}')
    os.mkfifo(tmp_path / "fifo.json")  # would block forever if opened for reading
    loaded = load_inputs([str(tmp_path)])
    reasons = {Path(r.source).name: r.reason for r in loaded if isinstance(r, Rejected)}
    assert reasons["fifo.json"] == "not a regular file"
    assert reasons["broken.json"].startswith("not JSON")
    assert reasons["latin1.json"].startswith("not UTF-8")
    assert sorted(r.hostname for r in loaded if isinstance(r, HostReport)) == ["a", "b"]


def test_a_named_fifo_is_skipped_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "p")
    assert load_inputs([str(tmp_path / "p")]) == [Rejected(str(tmp_path / "p"), "not a regular file or directory")]


def test_a_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file or directory"):
        load_inputs([str(tmp_path / "nope")])


def test_an_oversized_file_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "REPORT_CAP_BYTES", 100)
    write(tmp_path / "big.json", report("a"))
    (result,) = load_inputs([str(tmp_path / "big.json")])
    assert isinstance(result, Rejected) and "larger than" in result.reason


def test_stdin_carries_many_documents_and_a_torn_tail_is_one_rejection():
    text = json.dumps(report("a"), indent=2) + "\n" + json.dumps(report("b")) + '\n{"schema": '
    loaded = load_stdin(io.BytesIO(text.encode()))
    assert [r.hostname for r in loaded if isinstance(r, HostReport)] == ["a", "b"]
    assert isinstance(loaded[2], Rejected) and loaded[2].source == "<stdin>#3"


def test_stdin_is_read_once_even_when_named_twice():
    stream = io.BytesIO(json.dumps(report("a")).encode())
    assert len(load_inputs(["-", "-"], stream)) == 1
