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
import re
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from shakeout.bisect.pattern import change_id, marker, parse
from shakeout.bisect.runner import run_trial
from shakeout.bisect.search import BisectError, Trial
from shakeout.errors import ShakeoutError

SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
CONFIG_VAR = "SHAKEOUT_CONFIG"


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


def read_config(path: Path) -> Dict[str, str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ShakeoutError("cannot read {}: {}".format(path, getattr(exc, "strerror", None) or exc)) from None
    values = parse_config(text)
    if not values:
        raise ShakeoutError(f"{path} is not a kernel configuration (no CONFIG_ lines)")
    return values


def render_config(values: Mapping[str, str]) -> str:
    return "".join(f"# {k} is not set\n" if v == "n" else f"{k}={v}\n" for k, v in sorted(values.items()))


def differences(good: Mapping[str, str], bad: Mapping[str, str]) -> Dict[str, Tuple[str, str]]:
    names = set(good) | set(bad)
    return {n: (good.get(n, "n"), bad.get(n, "n")) for n in sorted(names) if good.get(n, "n") != bad.get(n, "n")}


class ConfigTarget:
    def __init__(
        self,
        good: Mapping[str, str],
        diffs: Mapping[str, Tuple[str, str]],
        argv: Sequence[str],
        env: Mapping[str, str],
        timeout_s: Optional[float],
        hang_is_failure: bool,
        workdir: Path,
        on_output: Optional[Callable[[str], None]] = None,
    ) -> None:
        if not diffs:
            raise BisectError("the two configurations do not differ: nothing to bisect")
        self.good, self.diffs = dict(good), dict(diffs)
        self.argv, self.env = list(argv), dict(env)
        self.timeout_s, self.hang_is_failure = timeout_s, hang_is_failure
        self.workdir, self.on_output = workdir, on_output
        self.ids = {change_id(name): name for name in diffs}
        self.tested: Dict[str, List[Set[str]]] = {}  # pattern -> the options really at BAD's value, per trial

    def __call__(self, patterns: List[str]) -> List[Trial]:
        return [self.one(p) for p in patterns]

    def one(self, pattern: str) -> Trial:
        matcher = parse(pattern)
        chosen = {n for i, n in self.ids.items() if matcher is None or matcher.should_enable(i)}
        candidate = dict(self.good)
        candidate.update({n: self.diffs[n][1] for n in chosen})
        with tempfile.NamedTemporaryFile("w", suffix=".config", dir=str(self.workdir), delete=False) as f:
            f.write(render_config(candidate))
            path = Path(f.name)
        try:
            trial = run_trial(pattern, self.argv, {**self.env, CONFIG_VAR: str(path)}, self.timeout_s,
                              self.hang_is_failure, self.on_output)  # fmt: skip
            tested = parse_config(path.read_text()) if path.exists() else candidate
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
        really = {n for n, (_g, b) in self.diffs.items() if tested.get(n, "n") == b}
        self.tested.setdefault(pattern, []).append(really)
        shown = [i for i in self.ids if matcher is not None and matcher.should_print(i)]
        note = trial.note
        if really != chosen:
            note += "; normalisation changed the candidate: +{} -{}".format(
                ",".join(sorted(really - chosen)) or "none", ",".join(sorted(chosen - really)) or "none"
            )
        lines = ["{} {}: good={} bad={}".format(marker(i), self.ids[i], *self.diffs[self.ids[i]]) for i in shown]
        return Trial(pattern, trial.failed, frozenset(shown), lines, trial.seconds, note)
