"""shakeout bisect / config-bisect as commands: real processes, clear errors."""

import json
import subprocess
import sys
import textwrap

import pytest

from shakeout.bisect.pattern import change_id, marker

pytestmark = pytest.mark.functional

TARGET = textwrap.dedent(
    """
    import os, random, sys
    from shakeout.bisect.pattern import change_id, marker, parse
    m = parse(sys.argv[1])
    bad = False
    for name in ["site%d" % i for i in range(40)]:
        i = change_id(name)
        if (m is None or m.should_enable(i)) and name == os.environ.get("CULPRIT", "site17"):
            bad = random.random() < float(os.environ.get("P", "1"))
        if m is not None and m.should_print(i):
            print(marker(i), name, "at target.py")
    if os.environ.get("HANG") and bad:
        import time; time.sleep(60)
    sys.exit(1 if bad else 0)
    """
)


def bisect(tmp_path, *args, env_words=(), timeout=120):
    script = tmp_path / "target.py"
    script.write_text(TARGET)
    return subprocess.run(
        [sys.executable, "-m", "shakeout", "bisect", *args, "--", *env_words, sys.executable, str(script), "PATTERN"],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_names_the_site_and_keeps_stdout_for_the_result(tmp_path):
    proc = bisect(tmp_path, env_words=["P=0.6"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "--- change set #1 (enabling these changes makes the command fail)"
    assert out[1] == "site17 at target.py"  # the report line, marker removed
    assert out[2] == "---"
    assert "trial" in proc.stderr and "trial" not in out[1]


def test_json_and_parallel(tmp_path):
    proc = bisect(tmp_path, "--format", "json", "-j", "3", env_words=["P=0.5", "CULPRIT=site3"])
    doc = json.loads(proc.stdout)
    assert doc["change_sets"][0]["lines"] == [f"{marker(change_id('site3'))} site3 at target.py"]
    assert doc["trials"] == sum(c["trials"] for c in doc["configurations"])  # report runs are trials too
    assert doc["change_sets"][0]["ids"] == [f"{change_id('site3'):#018x}"]


def test_hang_counts_as_the_user_says(tmp_path):
    failing = bisect(tmp_path, "--timeout", "2", "--hang", "fail", env_words=["HANG=1"], timeout=300)
    assert failing.returncode == 0 and "site17" in failing.stdout
    erroring = bisect(tmp_path, "--timeout", "2", env_words=["HANG=1"], timeout=300)
    assert erroring.returncode == 2 and "did not finish within --timeout 2" in erroring.stderr


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        (["--", "/nonexistent/tool", "PATTERN"], "cannot run /nonexistent/tool"),
        (["--", "true"], "PATTERN appears nowhere"),
        (["--", "sh", "-c", "exit 1", "PATTERN"], "printed no [bisect-match"),
        (["--", "sh", "-c", "exit 0", "PATTERN"], "never failed with every change enabled"),
        (["--"], "no command to run"),
    ],
)
def test_errors_are_one_line(command, needle):
    proc = subprocess.run([sys.executable, "-m", "shakeout", "bisect", *command], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()[-1:]) == 1 and proc.stdout == ""


def test_failure_not_caused_by_the_changes(tmp_path):
    script = tmp_path / "t.py"
    script.write_text(TARGET.replace("sys.exit(1 if bad else 0)", "sys.exit(1)"))
    proc = subprocess.run([sys.executable, "-m", "shakeout", "bisect", "--", sys.executable, str(script), "PATTERN"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 2 and "not caused by the changes" in proc.stderr


CONFIG_TEST = textwrap.dedent(
    """
    import os, random, sys
    path = os.environ["SHAKEOUT_CONFIG"]
    lines = open(path).read().splitlines()
    values = {}
    for line in lines:
        if line.startswith("CONFIG_"):
            k, v = line.split("=", 1); values[k] = v
    # "olddefconfig": CONFIG_USB needs CONFIG_PCI
    if values.get("CONFIG_USB") == "y":
        values["CONFIG_PCI"] = "y"
    with open(path, "w") as f:
        for k in sorted(values):
            f.write("%s=%s\\n" % (k, values[k]))
    broken = values.get("CONFIG_USB") == "y" and random.random() < 0.7
    sys.exit(1 if broken else 0)
    """
)


def write_configs(tmp_path):
    good = [f"CONFIG_OPT{i}=n" for i in range(30)] + ["# CONFIG_USB is not set", "# CONFIG_PCI is not set"]
    bad = [f"CONFIG_OPT{i}={'y' if i % 2 else 'n'}" for i in range(30)] + ["CONFIG_USB=y", "CONFIG_PCI=y"]
    (tmp_path / "good.config").write_text("\n".join(good) + "\n")
    (tmp_path / "bad.config").write_text("\n".join(bad) + "\n")
    (tmp_path / "test.py").write_text(CONFIG_TEST)


def test_config_bisect_reasons_on_what_was_really_tested(tmp_path):
    write_configs(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "shakeout", "config-bisect", str(tmp_path / "good.config"),
         str(tmp_path / "bad.config"), "--format", "json", "--", sys.executable, str(tmp_path / "test.py")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (cs,) = json.loads(proc.stdout)["change_sets"]
    assert cs["options"] == ["CONFIG_USB"]
    assert "CONFIG_PCI" in cs["really_tested"]  # pulled in by the normalisation
    assert "CONFIG_USB: good=n bad=y" in cs["lines"][0]


@pytest.mark.parametrize(
    ("good", "bad", "needle"),
    [
        ("missing.config", "bad.config", "cannot read"),
        ("test.py", "bad.config", "is not a kernel configuration"),
        ("bad.config", "bad.config", "do not differ"),
    ],
)
def test_config_bisect_errors(tmp_path, good, bad, needle):
    write_configs(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "shakeout", "config-bisect", str(tmp_path / good), str(tmp_path / bad), "--",
         sys.executable, str(tmp_path / "test.py")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
