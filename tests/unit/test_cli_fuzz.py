"""Fuzz every command's options and input files: no input may cause an internal error.

Hypothesis builds command lines from each command's real option names (taken from the
parser, so a new option is fuzzed without touching this file) with hostile values: odd
Unicode digits, signs, huge and tiny numbers, NaN, empty strings, devices and FIFOs as
paths, and files of random bytes. The work itself (probes, QEMU, trials) is replaced by
fakes: this tests validation and input handling, which is where bad input must stop. The
outcome must be an exit status from the contract (0, 1, 2, 3) and, for 2, exactly one
line on stderr; never a traceback or "internal error" (exit 70).
"""

import argparse
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shakeout.engine as engine
from shakeout.cli import build_parser, main
from shakeout.errors import ShakeoutError
from shakeout.results import RunReport

pytestmark = pytest.mark.filterwarnings("ignore")

HOSTILE_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1e309",
            "nan",
            "inf",
            "-0",
            "²",
            "٣",
            "３",
            "1_000",
            " 5",
            "5 ",
            "0x10",
            "999999999999999999999",
        ]
    ),
    st.text(max_size=12),
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
PATHS = ["/dev/zero", "/dev/null", "/dev/full", "/proc", "/nonexistent/x", "FIFO", "FILE", "LINK", "DIR"]


def _options(command: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [o for a in sub.choices[command]._actions for o in a.option_strings if o not in ("-h", "--help")]


def _fake_report(command):
    def run(*args, **kwargs):
        report = RunReport(command, "0", {}, "now")
        report.exit_status, report.meaning = 0, "fake"
        return report

    return run


class Reached(ShakeoutError):
    """Raised by a fake in place of the real work: input validation let the command through."""

    exit_code = 0


def _reached(*args, **kwargs):
    raise Reached("validation passed; the real work is not run here")


@pytest.fixture
def no_real_work(monkeypatch):
    monkeypatch.setattr(engine, "run_check", _fake_report("check"))
    monkeypatch.setattr(engine, "run_one", _fake_report("run"))
    monkeypatch.setattr(engine, "run_selftest", _fake_report("selftest"))
    import shakeout.vm as vm

    monkeypatch.setattr(vm, "run_vm", _fake_report("vm"))
    import shakeout.memtest.command as memtest

    monkeypatch.setattr(memtest, "run_memtest", _reached)
    import shakeout.bisect.session as session

    monkeypatch.setattr(session, "find_change_sets", _reached)  # configs and logs are still read for real


def _materialise(value: str, tmp: Path, content: bytes) -> str:
    """Turn a path placeholder into a real hostile file system object."""
    target = tmp / "thing"
    for p in tmp.iterdir():
        if p.is_dir() and not p.is_symlink():
            p.rmdir()
        else:
            p.unlink()
    if value == "FIFO":
        os.mkfifo(target)
    elif value == "FILE":
        target.write_bytes(content)
    elif value == "LINK":
        (tmp / "real").write_bytes(content)
        target.symlink_to(tmp / "real")
    elif value == "DIR":
        target.mkdir()
    else:
        return value
    return str(target)


def _check_outcome(code, err):
    assert code in (0, 1, 2, 3), (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err


COMMANDS = ["check", "run", "selftest", "vm", "show", "list", "host", "memtest", "triage", "bisect", "config-bisect"]


@pytest.mark.parametrize("command", COMMANDS)
def test_no_option_value_causes_an_internal_error(command, no_real_work, tmp_path_factory, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # relative --output names land here, not in the tree
    options = _options(command)
    fixed = {"run": ["signal-vector"], "show": ["linux-signal-vector"], "vm": []}.get(command, [])
    tmp = tmp_path_factory.mktemp("fuzz")
    bad_config = tmp_path_factory.mktemp("configs") / "bad.config"
    bad_config.write_text("CONFIG_A=y\n# CONFIG_B is not set\n")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        picks=st.lists(
            st.tuples(st.sampled_from(options or ["--help"]), st.one_of(HOSTILE_TEXT, st.sampled_from(PATHS))),
            max_size=3,
        ),
        content=st.binary(max_size=2048),
        paths=st.data(),
    )
    def one(picks, content, paths):
        argv = [command, *fixed]
        for option, value in picks:
            if option == "--help":
                continue
            if option == "--output" and value == "FIFO":
                value = "FILE"  # a FIFO without a reader blocks the writer, as in a shell (tests/unit/test_outputs.py)
            argv += [option, _materialise(value, tmp, content)]
        if command == "vm" and "--kernel" not in argv:
            argv += ["--kernel", _materialise("FILE", tmp, content)]
        inputs = st.sampled_from([p for p in PATHS if p != "FIFO"])
        if command == "triage":  # its inputs are positional: a hostile one of every kind
            argv.append(_materialise(paths.draw(inputs), tmp, content))
        if command == "config-bisect":
            argv[1:1] = [_materialise(paths.draw(inputs), tmp, content), str(bad_config)]
        if command in ("bisect", "config-bisect"):
            argv += ["--", "true", "PATTERN"]
        code = main(argv)
        _, err = capsys.readouterr()
        _check_outcome(code, err)

    one()
