"""Regression tests for issue 10/15 (bisect): parallel flaky searches, report lines by parsed
ids at no extra trial, the trial log's torn and malformed lines, option validators."""

import json
import os
import random

import pytest

from shakeout.bisect import options
from shakeout.bisect.pattern import parse
from shakeout.bisect.runner import TrialLog, trial_from_record
from shakeout.bisect.search import Trial
from shakeout.bisect.session import SearchSettings, find_change_sets
from shakeout.errors import UsageError

GO_FORMS = [
    " [bisect-match {id:#018x}]",  # marker only, as Go's compiler prints it (text empty)
    "[DISABLED] [bisect-match {id:#018x}]",
    "x.go:29:6: loop variable i now per-iteration [bisect-match {id:#018x}]",
    "x.go:29:6: loop variable i now per-iteration [DISABLED] [bisect-match {id:#018x}]",
]


def go_target(ids, culprit, p=1.0, seed=0):
    """Prints what Go's compiler prints for each reported change: the v form when verbose."""
    rng = random.Random(seed)

    def run(patterns):
        out = []
        for pat in patterns:
            m = parse(pat)
            lines = []
            for i in ids:
                if m is not None and m.should_print(i):
                    enabled = m.should_enable(i)
                    form = GO_FORMS[(2 if m.verbose else 0) + (0 if enabled else 1)]
                    lines.append(form.format(id=i))
            enabled = m is None or m.should_enable(culprit)
            out.append(Trial(pat, enabled and rng.random() < p, frozenset(ids), lines))
        return out

    return run


def test_zero_padded_culprit_gets_its_report_line_at_no_extra_trial():
    rng = random.Random(4)
    ids = [rng.getrandbits(60) for _ in range(100)]  # every id prints with leading zero digits
    culprit = ids[42]
    outcome = find_change_sets(go_target(ids, culprit), SearchSettings())
    (found,) = outcome.change_sets
    assert found.ids == [culprit]
    assert found.lines == [GO_FORMS[2].format(id=culprit)]
    assert outcome.report_runs == 0


@pytest.mark.parametrize("seed", [9, 39, 41])
def test_parallel_flaky_search_names_only_the_culprit(seed):
    """With -j 3, both halves could pass k = 1 times in one batch; fast mode took that as
    'both halves needed' and padded the answer with innocent changes."""
    rng = random.Random(seed)
    ids = [rng.getrandbits(64) for _ in range(40)]
    outcome = find_change_sets(go_target(ids, ids[3], p=0.5, seed=seed), SearchSettings(jobs=3))
    assert [cs.ids for cs in outcome.change_sets] == [[ids[3]]]


def record(**changes):
    base = {"pattern": "y", "failed": True, "matches": ["0x0f"], "lines": [], "seconds": 0.5, "note": "exit 1"}
    base.update(changes)
    return json.dumps(base)


def never_called(_patterns):
    raise AssertionError("the log should have answered")


def test_torn_last_line_is_dropped_with_a_note_and_the_log_stays_valid(tmp_path):
    log = tmp_path / "trials.jsonl"
    log.write_text(record() + "\n" + record(failed=False)[:17])  # killed while writing line 2
    notes = []
    trials = TrialLog(log, lambda ps: [Trial(p, False) for p in ps], notes.append)
    assert [t.failed for t in trials(["y", "y"])] == [True, False]
    assert len(notes) == 1 and "incomplete last line 2" in notes[0]
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["pattern"] == "y" for line in lines)


def test_whole_last_line_without_newline_is_kept(tmp_path):
    log = tmp_path / "trials.jsonl"
    log.write_text(record())
    trials = TrialLog(log, lambda ps: [Trial(p, False) for p in ps], print)
    assert [t.failed for t in trials(["y", "y"])] == [True, False]
    assert len(log.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("[1,2,3]", "JSON array"),
        ("null", "JSON null"),
        ('"str"', "JSON string"),
        ('{"pattern": "y"}', '"failed" is missing'),
        (record(failed="yes"), '"failed" is not true or false'),
        (record(matches=[15]), '"matches" is not a list of strings'),
        (record(matches=["15"]), "not a change id"),
        (record(seconds=-1), '"seconds"'),
        (record(lines="x"), '"lines"'),
        ("{not json", "not JSON"),
        ("[" * 100000, "nested too deeply"),
    ],
)
def test_malformed_line_is_one_error_with_its_line_number(tmp_path, line, why):
    log = tmp_path / "trials.jsonl"
    log.write_text(record() + "\n" + line + "\n" + record() + "\n")
    with pytest.raises(UsageError, match="line 2 ") as info:
        TrialLog(log, never_called, print)
    assert why in str(info.value) and "\n" not in str(info.value)


def test_log_in_non_utf8_is_an_error(tmp_path):
    log = tmp_path / "trials.jsonl"
    log.write_bytes(b'{"pattern": "\xff"}\n')
    with pytest.raises(UsageError, match=r"line 1 .*not UTF-8"):
        TrialLog(log, never_called, print)


@pytest.mark.parametrize("path", ["/dev/full", "/dev/zero"])
def test_log_must_be_a_regular_file(path):
    with pytest.raises(UsageError, match="a device, not a regular file"):
        TrialLog(__import__("pathlib").Path(path), never_called, print)


def test_log_that_is_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="a FIFO"):
        TrialLog(fifo, never_called, print)


def test_record_round_trip():
    t = trial_from_record(json.loads(record(matches=["0x0000000000000abc", "0xABC"])))
    assert t.matches == frozenset({0xABC}) and t.failed and t.seconds == 0.5


def test_each_option_names_its_own_thing():
    assert options.trials("2000") == 2000
    assert options.jobs("2") == 2
    with pytest.raises(Exception, match="not a number of parallel trials"):
        options.jobs("0")
    with pytest.raises(Exception, match="not a trial count"):
        options.trials("²")
    with pytest.raises(Exception, match="not a number of change sets"):
        options.change_sets("٣")
    with pytest.raises(Exception, match="not a confidence"):
        options.confidence("nan")
    with pytest.raises(Exception, match="not a timeout"):
        options.timeout("inf")
