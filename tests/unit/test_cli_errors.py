"""Bad input: one line on stderr, a non-zero exit, no traceback, nothing written."""

import os

import pytest

from shakeout.cli import main


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["show", "no-such-bug"], "'no-such-bug' is not a bug, probe or CVE id"),
        (["check", "--only", "no-such-bug"], "unknown bug 'no-such-bug'"),
        (["run", "no-such-probe"], "unknown probe 'no-such-probe'"),
        (["run", "signal-vector", "--duration", "-1"], "out of range"),
        (["run", "signal-vector", "--duration", "0"], "out of range"),
        (["run", "signal-vector", "--duration", "1e9"], "out of range"),
        (["run", "signal-vector", "--duration", "nan"], "out of range"),
        (["run", "signal-vector", "--duration", "soon"], "is not a number of seconds"),
        (["run", "signal-vector", "--workers", "0"], "is not a worker count"),
        (["check", "--duration", "-5"], "out of range"),
        (["check", "--format", "yaml"], "invalid choice: 'yaml'"),
        (["run", "signal-vector", "--set", "regs=avx9"], "'avx9' is not valid"),
        (["run", "signal-vector", "--set", "bogus=1"], "has no option"),
        (["check", "--output", "/nonexistent-dir/x.json"], "directory /nonexistent-dir does not exist"),
        (["selftest", "--only", "nope"], "unknown probe 'nope'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_input_is_one_line(capsys, argv, needle):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert out == ""


def test_output_in_missing_directory_leaves_nothing(tmp_path, capsys):
    target = tmp_path / "missing" / "report.json"
    assert main(["check", "--output", str(target)]) == 2
    assert not (tmp_path / "missing").exists()
    assert os.listdir(tmp_path) == []


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("shakeout ")


def test_list_show_host(capsys):
    assert main(["list"]) == 0
    assert "linux-signal-vector" in capsys.readouterr().out
    assert main(["show", "linux-signal-vector"]) == 0
    text = capsys.readouterr().out
    for needle in ("CVE-2019-19602", "59c4bd853abc", "ulimit -l", "memlock=67108864", "asyncpreemptoff"):
        assert needle in text
    assert main(["host"]) == 0
    assert "RLIMIT_MEMLOCK" in capsys.readouterr().out
