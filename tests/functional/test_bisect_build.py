"""Seed 002's hunt, automated: a program of many translation units breaks — only sometimes —
when one unit is compiled with an extra option; `shakeout bisect` + `shakeout cc` name it."""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.functional, pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")]
UNITS = 96  # seed 002 had hundreds; the search is the same, the build half as long


def write_program(root: Path, culprit: int) -> None:
    src = root / "src"
    src.mkdir(parents=True)
    for i in range(UNITS):
        body = f"int f{i}(int x) {{ return x + {i}; }}\n"
        if i == culprit:  # only with -DSHAKY, and then only half of the runs
            body = (
                "#include <stdlib.h>\n#include <time.h>\n#include <unistd.h>\n"
                f"int f{i}(int x) {{\n#ifdef SHAKY\n"
                "  srand((unsigned)time(NULL) ^ (unsigned)getpid() << 8);\n"
                f"  if (rand() & 1) return -1000000;\n#endif\n  return x + {i};\n}}\n"
            )
        (src / f"u{i:03d}.c").write_text(body)
    decls = "".join(f"int f{i}(int);\n" for i in range(UNITS))
    total = " + ".join(f"f{i}(1)" for i in range(UNITS))
    expected = sum(1 + i for i in range(UNITS))
    (src / "main.c").write_text(decls + f"int main(void) {{ long s = {total}; return s == {expected} ? 0 : 1; }}\n")
    (root / "build-and-test.sh").write_text(
        '#!/bin/sh\nset -e\ncd "$(dirname "$0")"\nrm -rf obj && mkdir obj\n'
        "ls src/*.c | xargs -P 4 -I{} sh -c '$CC -O0 -c {} -o obj/$(basename {} .c).o'\n"
        "gcc obj/*.o -o prog\n./prog\n"
    )
    os.chmod(root / "build-and-test.sh", 0o755)


def test_bisect_and_cc_name_the_unit(tmp_path):
    culprit = random.Random(2026).randrange(UNITS)
    write_program(tmp_path, culprit)
    cc = f"{sys.executable} -m shakeout cc --root {tmp_path} --if-enabled -DSHAKY -- gcc"
    log = tmp_path / "trials.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "shakeout", "bisect", "--format", "json", "--timeout", "120", "--log", str(log), "--",
         "BISECT_PATTERN=PATTERN", "CC=" + cc, str(tmp_path / "build-and-test.sh")],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    (change_set,) = doc["change_sets"]
    assert change_set["lines"] and all(f"obj/u{culprit:03d}.o" in line for line in change_set["lines"])
    assert change_set["confidence"] >= 0.99
    rate = change_set["failure_rate_with_set"]
    assert 0 < rate["failures"] < rate["trials"]  # it really was flaky
    assert doc["trials"] == len(log.read_text().splitlines())

    # Resuming from the log runs nothing again and gives the same answer.
    again = subprocess.run(
        [sys.executable, "-m", "shakeout", "bisect", "--format", "json", "--log", str(log), "--",
         "BISECT_PATTERN=PATTERN", "CC=" + cc, str(tmp_path / "build-and-test.sh")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert json.loads(again.stdout)["change_sets"][0]["ids"] == change_set["ids"]
    assert len(log.read_text().splitlines()) == doc["trials"]  # no new trial was run
