"""`shakeout config-bisect GOOD.config BAD.config -- CMD`: which differing kernel options
make the test fail?

Each differing option is a change (its id is a hash of its name). For a pattern, the
candidate is GOOD with the enabled options set to BAD's values; CMD gets its path in
$SHAKEOUT_CONFIG, may normalise it in place (the kernel's `make olddefconfig`), builds and
tests. Normalisation pulls dependent options in and pushes others out, so after each trial
the file is read back and what was *really* tested is recorded: the report shows the
minimal set of options whose change causes the failure and, for the failing
configuration, every option that really differed from GOOD. The search is the same
flaky-aware one as `shakeout bisect` (search.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from shakeout.bisect.pattern import change_id, marker, parse, strip_verbose
from shakeout.bisect.runner import Launcher, Note, TrialSpec, run_trials
from shakeout.bisect.search import BisectError, Trial
from shakeout.errors import ShakeoutError
from shakeout.inputs import MIB, read_input_text

SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
CONFIG_VAR = "SHAKEOUT_CONFIG"
CONFIG_CAP_BYTES = 16 * MIB  # a full x86 .config is about 300 KB
PROGRESS_NAMES = 6  # options named in a progress line; the rest are counted


def parse_config(text: str) -> Dict[str, str]:
    values: Dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = SET.match(line)
        if m:
            values[m.group(1)] = m.group(2)
            continue
        m = UNSET.match(line)
        if m:
            values[m.group(1)] = "n"
    return values


def read_config(path: Path, what: str = "the configuration") -> Dict[str, str]:
    values = parse_config(read_input_text(path, what, CONFIG_CAP_BYTES))
    if not values:
        raise ShakeoutError(f"{path} is not a kernel configuration (no CONFIG_ lines)")
    return values


def render_config(values: Mapping[str, str]) -> str:
    return "".join(f"# {k} is not set\n" if v == "n" else f"{k}={v}\n" for k, v in sorted(values.items()))


def differences(good: Mapping[str, str], bad: Mapping[str, str]) -> Dict[str, Tuple[str, str]]:
    names = set(good) | set(bad)
    return {n: (good.get(n, "n"), bad.get(n, "n")) for n in sorted(names) if good.get(n, "n") != bad.get(n, "n")}


class ConfigTarget:
    """Runs argv once per pattern with the candidate configuration in $SHAKEOUT_CONFIG."""

    def __init__(
        self,
        good: Mapping[str, str],
        diffs: Mapping[str, Tuple[str, str]],
        argv: Sequence[str],
        env: Mapping[str, str],
        timeout_s: Optional[float],
        hang_is_failure: bool,
        workdir: Path,
        note: Optional[Note] = None,
        launcher: Optional[Launcher] = None,
    ) -> None:
        if not diffs:
            raise BisectError("the two configurations do not differ: nothing to bisect")
        self.good, self.diffs = dict(good), dict(diffs)
        self.argv, self.env = list(argv), dict(env)
        self.timeout_s, self.hang_is_failure = timeout_s, hang_is_failure
        self.workdir = workdir  # on a filesystem the launcher's side sees too (TMPDIR)
        self.launcher = launcher
        self.note = note  # told, for each trial, which options were at BAD's value and how it went
        self.ids = {change_id(name): name for name in diffs}
        self.tested: Dict[str, List[Set[str]]] = {}  # pattern -> the options really at BAD's value, per trial

    def __call__(self, patterns: List[str]) -> List[Trial]:
        chosen = [self._chosen(p) for p in patterns]
        paths = [self._write_candidate(c) for c in chosen]
        try:
            specs = [TrialSpec(p, self.argv, {**self.env, CONFIG_VAR: str(path)}) for p, path in zip(patterns, paths)]
            # the lines are ours
            trials = run_trials(specs, self.timeout_s, self.hang_is_failure, launcher=self.launcher)
            return [self._judge(t, c, path) for t, c, path in zip(trials, chosen, paths)]
        finally:
            for path in paths:
                with contextlib.suppress(OSError):
                    path.unlink()

    def _chosen(self, pattern: str) -> Set[str]:
        matcher = parse(pattern)
        return {n for i, n in self.ids.items() if matcher is None or matcher.should_enable(i)}

    def _candidate(self, chosen: Set[str]) -> Dict[str, str]:
        candidate = dict(self.good)
        candidate.update({n: self.diffs[n][1] for n in chosen})
        return candidate

    def _write_candidate(self, chosen: Set[str]) -> Path:
        try:
            with tempfile.NamedTemporaryFile("w", suffix=".config", dir=str(self.workdir), delete=False) as f:
                f.write(render_config(self._candidate(chosen)))
                return Path(f.name)
        except OSError as exc:
            why = exc.strerror or exc
            raise BisectError(f"cannot write a candidate configuration in {self.workdir}: {why}") from None

    def _progress_line(self, chosen: Set[str], trial: Trial) -> str:
        """'3 of 12 options at BAD's value (CONFIG_A, ...): FAIL (exit 1)', in the user's words."""
        names = sorted(chosen)
        shown = ", ".join(names[:PROGRESS_NAMES]) + (
            f", and {len(names) - PROGRESS_NAMES} more" if len(names) > PROGRESS_NAMES else ""
        )
        verdict = "FAIL" if trial.failed else "pass"
        return f"{len(names)} of {len(self.diffs)} options at BAD's value ({shown or 'none'}): {verdict} ({trial.note})"

    def _judge(self, trial: Trial, chosen: Set[str], path: Path) -> Trial:
        """The trial as the search sees it: what was really tested, and the lines the pattern reports."""
        if os.path.lexists(path):  # empty is fine: every option unset
            tested = parse_config(read_input_text(path, f"the configuration left in ${CONFIG_VAR}", CONFIG_CAP_BYTES))
        else:
            tested = self._candidate(chosen)
        really = {n for n, (_g, b) in self.diffs.items() if tested.get(n, "n") == b}
        base = strip_verbose(trial.pattern)
        self.tested.setdefault(base, []).append(really)
        matcher = parse(trial.pattern)
        shown = [i for i in self.ids if matcher is not None and matcher.should_print(i)]
        note = trial.note
        if really != chosen:
            note += "; normalisation changed the candidate: +{} -{}".format(
                ",".join(sorted(really - chosen)) or "none", ",".join(sorted(chosen - really)) or "none"
            )
        if self.note:
            self.note(self._progress_line(chosen, trial))
        lines = ["{} {}: good={} bad={}".format(marker(i), self.ids[i], *self.diffs[self.ids[i]]) for i in shown]
        return Trial(trial.pattern, trial.failed, frozenset(shown), lines, trial.seconds, note)
