"""One bisection from request to report document: what `shakeout bisect` and
`config-bisect` call (the CLI parses and renders, nothing else).

`find_change_sets` is the search with its report lines, over any runner: the CLI gives it
the command (through the trial log when --log is set), the benchmark a simulated target,
so both count the same trials. `run_bisect` builds the target from the request, keeps the
temporary directory of config-bisect only as long as the search runs (removed on every
way out Python sees: an error, Ctrl-C, SIGTERM, SIGHUP), and returns the document that
report.render prints.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from shakeout.bisect.config import ConfigTarget, differences, read_config
from shakeout.bisect.report import outcome_doc
from shakeout.bisect.runner import CommandTarget, Launcher, Note, TrialLog, split_command
from shakeout.bisect.search import Bisector, Outcome, Runner


@dataclass
class SearchSettings:
    confidence: float = 0.99
    jobs: int = 1
    max_trials: int = 2000
    max_sets: int = 1


@dataclass
class BisectRequest:
    """A bisection as the user asked for it; good and bad are set for config-bisect."""

    command: List[str]  # the words after --: [VAR=value...] CMD ARGS...
    search: SearchSettings
    timeout_s: Optional[float] = None
    hang_is_failure: bool = False
    log_path: Optional[Path] = None
    good: Optional[Path] = None
    bad: Optional[Path] = None
    verbose: bool = False  # config-bisect's progress shows patterns only when asked
    launcher: Optional[Launcher] = None  # --launcher: every trial runs through it


def find_change_sets(run: Runner, settings: SearchSettings, log: Optional[Callable[[str], None]] = None) -> Outcome:
    """The change sets whose enabling makes the target fail, each with its report lines.

    Outcome.trials counts every call of run for one pattern, the report runs included."""
    bisector = Bisector(run, settings.confidence, settings.jobs, settings.max_trials, log)
    return bisector.bisect(settings.max_sets)


def _logged(run: Runner, request: BisectRequest, note: Note) -> Runner:
    return TrialLog(request.log_path, run, note) if request.log_path is not None else run


def run_bisect(request: BisectRequest, note: Note) -> Dict[str, Any]:
    """Run the bisection the request describes; the report document (see report.outcome_doc)."""
    env, argv = split_command(request.command)
    if request.good is None or request.bad is None:
        target = CommandTarget(argv, env, request.timeout_s, request.hang_is_failure, note, request.launcher)
        return outcome_doc(find_change_sets(_logged(target, request, note), request.search, note))
    good = read_config(request.good, "the GOOD configuration")
    bad = read_config(request.bad, "the BAD configuration")
    with tempfile.TemporaryDirectory(prefix="shakeout-config-bisect-") as workdir:
        configs = ConfigTarget(
            good, differences(good, bad), argv, env, request.timeout_s, request.hang_is_failure, Path(workdir), note,
            request.launcher,
        )  # fmt: skip
        outcome = find_change_sets(_logged(configs, request, note), request.search, note if request.verbose else None)
    extra = [
        {
            "options": [configs.ids[i] for i in cs.ids],
            "really_tested": sorted(set().union(*configs.tested.get(cs.pattern, [set()]))),
        }
        for cs in outcome.change_sets
    ]
    return outcome_doc(outcome, extra, "config-bisect")
