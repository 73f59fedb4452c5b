import os
import subprocess
import sys

import pytest

from shakeout.bisect.cc import object_key, output_object, parse_cc_args
from shakeout.bisect.pattern import change_id, find_markers
from shakeout.errors import UsageError


@pytest.mark.parametrize(
    ("args", "obj"),
    [
        (["-O2", "-c", "src/a.c", "-o", "obj/a.o"], "obj/a.o"),
        (["-c", "src/a.c", "-oobj/a.o"], "obj/a.o"),
        (["-c", "src/b.c"], "b.o"),
        (["src/a.c", "-o", "prog"], None),  # compile and link: no object of its own
        (["obj/a.o", "obj/b.o", "-o", "prog"], None),
        (["-E", "src/a.c"], None),
    ],
)
def test_output_object(args, obj):
    assert output_object(args) == obj


def test_options_take_the_next_word_verbatim():
    assert parse_cc_args(["--if-enabled", "-DSHAKY -O0", "--root", "/r", "--", "gcc", "-c", "x.c"]) == (
        "-DSHAKY -O0", "BISECT_PATTERN", "/r", ["gcc", "-c", "x.c"])  # fmt: skip
    with pytest.raises(UsageError, match="needs a compiler"):
        parse_cc_args(["--if-enabled", "-x", "--"])
    with pytest.raises(UsageError, match="unexpected '--bogus'"):
        parse_cc_args(["--bogus", "1", "--", "gcc"])


def test_object_key_is_relative_to_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert object_key("obj/a.o", str(tmp_path)) == "obj/a.o"
    assert object_key("obj/a.o", "/elsewhere").endswith("obj/a.o")


def run_cc(tmp_path, pattern):
    src = tmp_path / "a.c"
    src.write_text("#ifdef SHAKY\n#error enabled\n#endif\nint a;\n")
    env = dict(os.environ, BISECT_PATTERN=pattern)
    return subprocess.run(
        [sys.executable, "-m", "shakeout", "cc", "--root", str(tmp_path), "--if-enabled", "-DSHAKY", "--",
         "gcc", "-c", str(src), "-o", str(tmp_path / "a.o")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip


def test_enabled_objects_get_the_options_and_are_named(tmp_path):
    enabled = run_cc(tmp_path, "y")
    assert enabled.returncode != 0 and "#error enabled" in enabled.stderr
    assert find_markers(enabled.stderr) == [change_id("a.o")] and "a.o" in enabled.stderr
    disabled = run_cc(tmp_path, "n")  # "n": disabled, and still reported
    assert disabled.returncode == 0 and find_markers(disabled.stderr) == [change_id("a.o")]
    quiet = run_cc(tmp_path, "qn")
    assert quiet.returncode == 0 and quiet.stderr == ""
