"""The search on simulated targets (no processes): deterministic, flaky, pairs, and errors."""

import random

import pytest

from shakeout.bisect.pattern import parse
from shakeout.bisect.runner import TrialLog
from shakeout.bisect.search import BisectError, Bisector, Trial, passes_needed


def target(ids, fails_when, p=1.0, seed=0, print_ids=True):
    """fails_when(enabled_ids) -> bool; then the failure happens with probability p."""
    rng = random.Random(seed)
    calls = []

    def run(patterns):
        out = []
        for pat in patterns:
            calls.append(pat)
            m = parse(pat)
            enabled = {i for i in ids if m is None or m.should_enable(i)}
            shown = frozenset(i for i in ids if m is not None and m.should_print(i)) if print_ids else frozenset()
            out.append(Trial(pat, fails_when(enabled) and rng.random() < p, shown))
        return out

    run.calls = calls
    return run


def universe(n=300, seed=1):
    rng = random.Random(seed)
    return [rng.getrandbits(64) for _ in range(n)]


def test_passes_needed():
    assert passes_needed(1.0, 0.001) == 1
    assert passes_needed(0.5, 0.001) == 10
    assert passes_needed(0.3, 0.005) == 15
    with pytest.raises(BisectError):
        passes_needed(0.0, 0.01)


def test_deterministic_single_culprit_is_cheap():
    ids = universe()
    culprit = ids[123]
    run = target(ids, lambda on: culprit in on)
    outcome = Bisector(run).bisect()
    assert outcome.change_sets[0].ids == [culprit]
    assert outcome.trials <= 16
    assert outcome.change_sets[0].confidence >= 0.99


@pytest.mark.parametrize("seed", range(5))
def test_flaky_single_culprit(seed):
    ids = universe(seed=seed + 10)
    culprit = ids[seed * 7]
    outcome = Bisector(target(ids, lambda on: culprit in on, p=0.3, seed=seed)).bisect()
    assert outcome.change_sets[0].ids == [culprit]
    rate = outcome.change_sets[0].failure_rate
    assert 0 < rate.fails < rate.trials


def test_two_changes_needed_together():
    ids = universe()
    a, b = ids[5], ids[250]
    outcome = Bisector(target(ids, lambda on: a in on and b in on)).bisect()
    assert sorted(outcome.change_sets[0].ids) == sorted([a, b])
    assert any("strict" in n for n in outcome.notes)


def test_two_independent_culprits_with_max():
    ids = universe()
    a, b = ids[40], ids[41]
    outcome = Bisector(target(ids, lambda on: a in on or b in on)).bisect(max_sets=3)
    assert sorted(cs.ids[0] for cs in outcome.change_sets) == sorted([a, b])
    assert len(outcome.change_sets) == 2  # no third set: with both excluded nothing fails


def test_failure_not_caused_by_changes():
    ids = universe(50)
    with pytest.raises(BisectError, match="not caused by the changes"):
        Bisector(target(ids, lambda on: True)).bisect()


def test_target_that_never_fails():
    with pytest.raises(BisectError, match="never failed with every change enabled"):
        Bisector(target(universe(20), lambda on: False)).bisect()


def test_target_that_prints_no_matches():
    ids = universe(20)
    with pytest.raises(BisectError, match=r"printed no .bisect-match"):
        Bisector(target(ids, lambda on: ids[0] in on, print_ids=False)).bisect()


def test_resume_from_log_runs_nothing_again(tmp_path):
    ids = universe()
    culprit = ids[77]
    log = tmp_path / "log.jsonl"
    first_target = target(ids, lambda on: culprit in on, p=0.5, seed=3)
    first = Bisector(TrialLog(log, first_target, print)).bisect()
    replay_target = target(ids, lambda on: culprit in on, p=0.5, seed=99)
    replay = TrialLog(log, replay_target, print)
    second = Bisector(replay).bisect()
    assert second.change_sets[0].ids == first.change_sets[0].ids == [culprit]
    assert replay_target.calls == [] and replay.replayed == first.trials


def test_parallel_jobs():
    ids = universe()
    culprit = ids[200]
    outcome = Bisector(target(ids, lambda on: culprit in on, p=0.5, seed=5), jobs=4).bisect()
    assert outcome.change_sets[0].ids == [culprit]
