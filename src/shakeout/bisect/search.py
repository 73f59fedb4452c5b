"""Find a minimal set of changes whose enabling makes a target fail — also when it fails
only sometimes.

The algorithm, for targets that speak Go's bisect protocol (see pattern.py):

1. Baseline. Run the all-enabled pattern "y" until it has failed BASELINE_FAILURES times
   (at most BASELINE_MAX_TRIALS); learn the change ids the target reports. A failure is
   conclusive; a pass only says "not this time". The failure rate p̂ is re-estimated
   before every decision from all trials of configurations that have failed at least
   once (each holds a culprit). After k = ceil(ln α / ln(1 - p̂)) passes, a configuration
   that could fail would have failed with probability 1 - α; α is the error budget of
   one decision, (1 - confidence) / (number of decisions, ~log2 of the changes + 1).
2. Causality. "n" (nothing enabled) runs once first: a failure there means the failure
   is not caused by the changes, and the search stops saying so. At the end, with the
   found set removed and nothing else enabled the target must pass k times: the trials
   that had the set disabled count when none of them failed, else "n" is run until it
   has k passes (another change causing the failure too is reported, for --max).
3. Search over the binary suffixes of the ids (the ids the target reported; a suffix
   selects every id ending in those bits). At each level the two halves race: their
   trials alternate (or run -j at a time) until one fails — that half holds a culprit,
   conclusively — or one reaches k passes, and the other half is taken (fast mode:
   verified at the end) or, in strict mode, both reach k passes: then the failure needs
   changes from both halves, and each half is searched with the other enabled.
4. Confirmation. The final set must have failed in a trial of its own (usually the race
   that chose it). If it cannot be made to fail within k trials, a pass-based inference
   was wrong (p̂ was overestimated, or several changes are needed together): the
   all-enabled failure rate is measured again from REESTIMATE_FAILURES failures, k is at
   least doubled, and the search is repeated in strict mode, reusing every outcome
   already observed. A set of several changes is then minimised: a member is dropped
   when the set without it still fails.
5. Report. Every trial of a configuration that enables at most REPORT_MAX_IDS changes
   runs with the "v" prefix (same selection, full report lines), so the trials that
   chose and confirmed the answer already hold its report lines; only when none did is
   one more verbose trial run (counted, as every trial is). Lines are picked by the
   change ids their markers carry, compared as numbers.
Outcomes are kept per pattern (without the "v"), so no configuration is ever run again
without need.
Invariants: a set reported as a culprit has been seen failing; confidence is the plug-in
probability that no pass-based decision was wrong, with p̂ from every trial that had the
culprits enabled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Set

from shakeout.bisect.pattern import find_markers, parse, verbose
from shakeout.errors import ShakeoutError

BASELINE_FAILURES = 3
BASELINE_MAX_TRIALS = 100
REESTIMATE_FAILURES = 10  # after a wrong fast answer, estimate p̂ from this many failures
REPORT_MAX_IDS = 8  # a configuration enabling at most this many changes runs verbosely


class BisectError(ShakeoutError):
    pass


@dataclass
class Trial:
    pattern: str
    failed: bool
    matches: FrozenSet[int] = frozenset()
    lines: Sequence[str] = ()
    seconds: float = 0.0
    note: str = ""


# Runs a batch of patterns (possibly in parallel) and returns one Trial per pattern, in order.
Runner = Callable[[List[str]], List[Trial]]


@dataclass
class Evidence:
    passes: int = 0
    fails: int = 0

    @property
    def trials(self) -> int:
        return self.passes + self.fails


@dataclass
class ChangeSet:
    ids: List[int]
    pattern: str
    confidence: float
    failure_rate: Evidence
    lines: List[str] = field(default_factory=list)  # the target's report lines for these ids


@dataclass
class Outcome:
    change_sets: List[ChangeSet]
    trials: int
    baseline: Evidence
    evidence: Dict[str, Evidence]
    passes_needed: int
    notes: List[str] = field(default_factory=list)
    report_runs: int = 0  # verbose trials run only for the report lines (also in trials)


def passes_needed(p: float, alpha: float) -> int:
    """Passes after which a configuration failing with probability p would have failed (1 - alpha)."""
    if p >= 1.0:
        return 1
    if p <= 0.0:
        raise BisectError("the target never failed; there is nothing to bisect")
    return max(1, math.ceil(math.log(alpha) / math.log(1.0 - p)))


class Bisector:
    def __init__(
        self,
        run: Runner,
        confidence: float = 0.99,
        jobs: int = 1,
        max_trials: int = 2000,
        log: Optional[Callable[[str], None]] = None,
    ) -> None:
        if not 0.5 <= confidence < 1.0:
            raise BisectError("--confidence must be at least 0.5 and below 1")
        self.run = run
        self.confidence = confidence
        self.alpha = (1.0 - confidence) / 2
        self.jobs = max(1, jobs)
        self.max_trials = max_trials
        self.log = log or (lambda _msg: None)
        self.evidence: Dict[str, Evidence] = {}
        self.universe: Set[int] = set()
        self.trials = 0
        self.k = 1
        self.k_floor = 1  # doubled each time a pass-based decision proves wrong
        self.excluded: List[str] = []
        self.notes: List[str] = []
        self.report_lines: Dict[str, List[str]] = {}  # pattern -> lines of its first verbose trial
        self.report_runs = 0

    # -- trials -------------------------------------------------------------------------
    def _batch(self, patterns: List[str], force_verbose: bool = False) -> List[Trial]:
        if self.trials + len(patterns) > self.max_trials:
            raise BisectError(f"gave up after {self.trials} trials (--max-trials)")
        asked = [verbose(p) if force_verbose or self._reports(p) else p for p in patterns]
        results = self.run(asked)
        for pattern, run_as, t in zip(patterns, asked, results):
            self.trials += 1
            ev = self.evidence.setdefault(pattern, Evidence())
            if t.failed:
                ev.fails += 1
            else:
                ev.passes += 1
            self.universe.update(t.matches)
            if run_as != pattern:
                self.report_lines.setdefault(pattern, list(t.lines))
            self.log("trial {}: {} -> {}".format(self.trials, run_as, "FAIL" if t.failed else "pass"))
        return results

    def _reports(self, pattern: str) -> bool:
        """Whether trials of pattern run verbosely: it enables a few of the known changes."""
        m = parse(pattern)
        if m is None or not self.universe:
            return False
        enabled = 0
        for i in self.universe:
            if m.should_enable(i):
                enabled += 1
                if enabled > REPORT_MAX_IDS:
                    return False
        return enabled > 0

    def _lines_for(self, pattern: str, ids: List[int]) -> List[str]:
        """The report lines naming ids, from a verbose trial of pattern (run one if there was none)."""
        if pattern not in self.report_lines:
            self._batch([pattern], force_verbose=True)
            self.report_runs += 1
        wanted = set(ids)
        lines = [line for line in self.report_lines[pattern] if wanted.intersection(find_markers(line))]
        return lines or [f"[bisect-match {i:#018x}] (the target printed no report line for this change)" for i in ids]

    def _ev(self, pattern: str) -> Evidence:
        return self.evidence.setdefault(pattern, Evidence())

    def pattern(self, suffixes: Sequence[str]) -> str:
        if not suffixes:
            return "n"  # nothing enabled, whatever is excluded
        return "+".join(suffixes) + "".join("-" + s for s in self.excluded)

    # -- ids and suffixes ---------------------------------------------------------------
    def _ids(self, suffix: str) -> List[int]:
        if suffix == "y":
            candidates = self.universe
        else:
            mask, bits = (1 << len(suffix)) - 1, int(suffix, 2)
            candidates = {i for i in self.universe if i & mask == bits}
        excluded = [parse(s) for s in self.excluded]
        return sorted(i for i in candidates if not any(m is not None and m.matches(i) for m in excluded))

    @staticmethod
    def _extend(bit: str, suffix: str) -> str:
        return bit + ("" if suffix == "y" else suffix)

    # -- the search ---------------------------------------------------------------------
    def _race(self, a: str, b: str, strict: bool) -> int:
        """0: a fails; 1: b fails (or a passed k times, in fast mode); 2: both are needed."""
        self._update_k()
        while True:
            ea, eb = self._ev(a), self._ev(b)
            if ea.fails:
                return 0
            if eb.fails:
                return 1
            if ea.passes >= self.k and eb.passes >= self.k:
                # Both halves passed k times (with -j, in one batch). Only strict mode concludes
                # that both are needed; fast mode takes a half as it does with -j 1, and the
                # final confirmation catches a wrong pick.
                return 2 if strict else 1
            if not strict and ea.passes >= self.k:
                return 1
            if not strict and eb.passes >= self.k:
                return 0
            # Alternate: the half with fewer trials so far (counting this batch) goes next.
            batch: List[str] = []
            for _ in range(self.jobs):
                open_halves = [p for p in (a, b) if self._ev(p).passes + batch.count(p) < self.k]
                if not open_halves:
                    break
                batch.append(min(open_halves, key=lambda p: self._ev(p).trials + batch.count(p)))
            self._batch(batch)

    def _find(self, forced: List[str], suffix: str, strict: bool) -> List[str]:
        ids = self._ids(suffix)
        if not ids:
            raise BisectError(f"internal error: no change ends in {suffix}")
        while len(ids) > 1:
            s0, s1 = self._extend("0", suffix), self._extend("1", suffix)
            n0, n1 = len(self._ids(s0)), len(self._ids(s1))
            if n0 and n1:
                decision = self._race(self.pattern([*forced, s0]), self.pattern([*forced, s1]), strict)
                if decision == 2:
                    left = self._find([*forced, s1], s0, strict)
                    return left + self._find([*forced, *left], s1, strict)
                suffix = s0 if decision == 0 else s1
            else:
                suffix = s0 if n0 else s1
            ids = self._ids(suffix)
        return [suffix]

    def _update_k(self) -> None:
        failing = [ev for ev in self.evidence.values() if ev.fails]
        trials = sum(ev.trials for ev in failing)
        p = sum(ev.fails for ev in failing) / trials if trials else 1.0
        self.k = max(self.k_floor, passes_needed(p, self.alpha))

    def _minimize(self, found: List[str]) -> List[str]:
        """Drop every member whose removal still fails (conclusive); keep those whose removal passed k times."""
        kept = list(found)
        for suffix in list(found):
            if len(kept) == 1:
                break
            rest = [s for s in kept if s != suffix]
            if self._confirm(self.pattern(rest)):
                kept = rest
        return kept

    def _confirm(self, pattern: str) -> bool:
        while not self._ev(pattern).fails:
            if self._ev(pattern).passes >= self.k:
                return False
            self._batch([pattern] * min(self.jobs, self.k - self._ev(pattern).passes))
        return True

    def _baseline(self, pattern: str, failures: int = 0) -> Evidence:
        ev = self._ev(pattern)
        while ev.fails < (failures or BASELINE_FAILURES) and ev.trials < BASELINE_MAX_TRIALS:
            self._batch([pattern] * self.jobs)
        return ev

    def _not_without_changes(self) -> None:
        none = self._ev("n")
        if none.fails:
            raise BisectError(
                f"the target fails with every change disabled too ({none.fails} of {none.trials} trials): "
                "the failure is not caused "
                "by the changes"
            )

    def _causal(self, ids: List[int]) -> None:
        """With the set removed (and nothing else enabled), the target must pass k times.

        Evidence: trials that had the set disabled, when none of them failed; otherwise
        (another change can cause the failure too) trials of "n", topped up as needed."""
        without = self._rate_without(ids)
        if not without.fails and without.passes >= self.k:
            return
        if without.fails:
            note = (
                f"other changes can cause the failure too ({without.fails} of {without.trials} trials failed "
                "with this set disabled): --max finds more sets"
            )
            if note not in self.notes:
                self.notes.append(note)
        none = self._ev("n")
        while none.passes < self.k and not none.fails:
            self._batch(["n"] * min(self.jobs, self.k - none.passes))
        self._not_without_changes()

    def _rate_without(self, ids: List[int]) -> Evidence:
        total = Evidence()
        for pattern, ev in self.evidence.items():
            m = parse(pattern)
            if m is not None and not any(m.should_enable(i) for i in ids):
                total.passes += ev.passes
                total.fails += ev.fails
        return total

    def _rate_with(self, ids: List[int]) -> Evidence:
        """Outcomes of every trial whose pattern enabled all of ids."""
        total = Evidence()
        for pattern, ev in self.evidence.items():
            m = parse(pattern)
            if m is not None and all(m.should_enable(i) for i in ids):
                total.passes += ev.passes
                total.fails += ev.fails
        return total

    def _one_set(self, first: bool) -> Optional[ChangeSet]:
        all_pattern = self.pattern(["y"])
        base = self._baseline(all_pattern)
        if not base.fails:
            if first:
                raise BisectError(
                    f"the target never failed with every change enabled (0 of {base.trials} trials); nothing to bisect"
                )
            return None
        if first and not self.universe:
            raise BisectError(
                "the target printed no [bisect-match ...] lines: is PATTERN reaching it (in its arguments or "
                "environment), and does it speak the bisect protocol?"
            )
        if first:
            levels = max(1, math.ceil(math.log2(max(2, len(self.universe)))))
            self.alpha = (1.0 - self.confidence) / (levels + 1)  # one budget share per decision
            self._update_k()
            self._batch(["n"])
            self._not_without_changes()
        found = self._find([], "y", strict=False)
        strict = False
        while not self._confirm(self.pattern(found)):
            # A pass-based decision was wrong: the failure rate was overestimated, or several
            # changes are needed together. Demand twice the passes and search strictly,
            # reusing every outcome seen so far.
            # p̂ was evidently too high: measure the all-enabled failure rate properly.
            self._baseline(self.pattern(["y"]), failures=REESTIMATE_FAILURES)
            all_enabled = self._ev(self.pattern(["y"]))
            self.k_floor = max(self.k * 2, passes_needed(all_enabled.fails / all_enabled.trials, self.alpha))
            self.k = self.k_floor
            if not strict:
                self.notes.append("the fast search's answer did not fail on its own; searched again in strict mode")
            strict = True
            self.notes.append(f"raised the passes needed per decision to {self.k}")
            found = self._find([], "y", strict=True)
        found = self._minimize(found)
        ids = [i for s in found for i in self._ids(s)]
        self._causal(ids)
        rate = self._rate_with(ids)
        p = rate.fails / rate.trials if rate.trials else 0.0
        pass_decisions = 1 + max(0, len(ids) - 1)  # culprits disabled passed; each extra id: its set without it
        confidence = max(0.0, 1.0 - pass_decisions * (1.0 - p) ** self.k)
        pattern = self.pattern(found)
        return ChangeSet(ids, pattern, confidence, rate, self._lines_for(pattern, ids))

    def bisect(self, max_sets: int = 1) -> Outcome:
        sets: List[ChangeSet] = []
        while len(sets) < max_sets:
            found = self._one_set(first=not sets)
            if found is None:
                break
            sets.append(found)
            self.excluded += [format(i, "064b") for i in found.ids]
        return Outcome(sets, self.trials, self._ev("y"), self.evidence, self.k, self.notes, self.report_runs)
