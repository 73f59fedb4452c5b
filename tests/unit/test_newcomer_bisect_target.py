"""Bisect targets for newcomers: the public Target API, `shakeout bisect-match`, and the
README's two complete targets, run as written against a real `shakeout bisect`."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shakeout.bisect.pattern import change_id, find_markers, marker, suffix_of
from shakeout.bisect.target import Target, bisect_match_main, change_number, parse_change
from shakeout.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
BIN = str(Path(sys.executable).parent)


def test_without_a_pattern_every_change_is_enabled_and_nothing_printed():
    out = io.StringIO()
    target = Target("", out)
    assert all(target.enabled(name) for name in ("a", "b", "obj/x.o"))
    assert out.getvalue() == ""
    assert Target.from_environment(environ={}).enabled("a")


def test_the_pattern_decides_by_the_ids_last_bits_and_reports_what_it_names():
    name = "src/parser.c"
    ident = change_id(name)
    own, other = suffix_of(ident, 3), suffix_of(ident ^ 1, 3)
    out = io.StringIO()
    assert Target(own, out).enabled(name)
    assert out.getvalue() == f"[bisect-match 0x{ident:016x}] {name}\n"
    out = io.StringIO()
    assert not Target(other, out).enabled(name)
    assert out.getvalue() == ""  # the pattern does not name it: no marker
    out = io.StringIO()
    assert not Target("!" + own, out).enabled(name)  # disabled, and reported as the named change
    assert find_markers(out.getvalue()) == [ident]
    out = io.StringIO()
    assert Target("q" + own, out).enabled(name) and out.getvalue() == ""


def test_ids_and_texts():
    assert marker(0xA5) == "[bisect-match 0x00000000000000a5]"  # as Go writes it
    assert parse_change("0x00a5") == 0xA5
    assert parse_change("0xA5") == 0xA5
    assert parse_change("0x") == change_id("0x")
    assert parse_change("0x" + "f" * 17) == change_id("0x" + "f" * 17)
    assert parse_change("obj/u052.o") == change_id("obj/u052.o")  # what shakeout cc hashes
    assert change_number(7) == 7
    with pytest.raises(ValueError):
        change_number(1 << 64)
    assert Target("y").report_line(7, "seven") == "[bisect-match 0x0000000000000007] seven"
    assert Target("qy").report_line(7) is None


def test_invalid_pattern_is_a_usage_error():
    with pytest.raises(UsageError):
        Target("zz")


def run_cli(*words):
    return subprocess.run(
        [os.path.join(BIN, "shakeout"), "bisect-match", *words], capture_output=True, text=True, check=False
    )


def test_bisect_match_exit_statuses_and_marker_line():
    ident = change_id("feature-x")
    yes = run_cli(suffix_of(ident, 4), "feature-x")
    assert (yes.returncode, yes.stdout, yes.stderr) == (0, f"{marker(ident)} feature-x\n", "")
    no = run_cli(suffix_of(ident ^ 1, 4), "feature-x")
    assert (no.returncode, no.stdout) == (1, "")
    assert run_cli("n", "feature-x").returncode == 1
    assert run_cli("", "feature-x").returncode == 0 and run_cli("", "feature-x").stdout == ""
    by_id = run_cli("--", "-" + suffix_of(ident ^ 1, 4), f"{ident:#x}")  # a pattern may start with '-'
    assert by_id.returncode == 0
    assert by_id.stdout == marker(ident) + "\n"  # named by the pattern; an id is not repeated after its marker


@pytest.mark.parametrize("words", [("zz", "a"), ("y",), ("y", "a", "b"), ()])
def test_bisect_match_usage_errors_are_one_line_exit_2(words):
    proc = run_cli(*words)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


def test_the_light_entry_and_the_cli_agree(capsys):
    from shakeout.cli import main

    ident = change_id("z")
    for pattern in ("y", "n", suffix_of(ident, 2), "!" + suffix_of(ident, 2), "q" + suffix_of(ident, 5)):
        assert main(["bisect-match", pattern, "z"]) == bisect_match_main([pattern, "z"])
    out = capsys.readouterr().out.splitlines()
    assert out[0::2] == out[1::2]
    assert main(["bisect-match", "x", "z"]) == bisect_match_main(["x", "z"]) == 2


def test_bisect_match_help_has_examples():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout and "exit 0" in proc.stdout


def readme_block(language: str, first_line_has: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(b for b in blocks if first_line_has in b.splitlines()[1])


def bisect(tmp_path, *command, env=None):
    proc = subprocess.run(
        [os.path.join(BIN, "shakeout"), "bisect", "--format", "json", "--", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_readme_shell_target_finds_the_file_the_risky_flags_break(tmp_path):
    (tmp_path / "target.sh").write_text(readme_block("sh", "target.sh"))
    (tmp_path / "target.sh").chmod(0o755)
    src = tmp_path / "src"
    src.mkdir()
    for n in range(4):
        shaky = "#ifdef SHAKY\n    abort();\n#endif\n" if n == 2 else ""
        (src / f"unit{n}.c").write_text(f"#include <stdlib.h>\nvoid unit{n}(void)\n{{\n{shaky}}}\n")
    (src / "main.c").write_text(
        "void unit0(void); void unit1(void); void unit2(void); void unit3(void);\n"
        "int main(void) { unit0(); unit1(); unit2(); unit3(); return 0; }\n"
    )
    doc = bisect(tmp_path, "./target.sh", "PATTERN", env={"RISKY_CFLAGS": "-DSHAKY"})
    lines = [line for cs in doc["change_sets"] for line in cs["lines"]]
    assert lines == [f"{marker(change_id('src/unit2.c'))} src/unit2.c"]


def test_readme_python_target_finds_the_feature(tmp_path):
    (tmp_path / "target.py").write_text(readme_block("python", "target.py"))
    prog = tmp_path / "prog"
    prog.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import sys
            sys.exit(1 if "--enable=lazy-gc" in sys.argv else 0)
            """
        )
    )
    prog.chmod(0o755)
    doc = bisect(tmp_path, "BISECT_PATTERN=PATTERN", sys.executable, "target.py")
    lines = [line for cs in doc["change_sets"] for line in cs["lines"]]
    assert lines == [f"{marker(change_id('lazy-gc'))} lazy-gc"]
