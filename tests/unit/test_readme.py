"""The README's Quick start is what CI runs, word for word."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quick_start_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("\n\n", 2)[1]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_quick_start_has_exactly_two_commands_and_ci_runs_both_verbatim():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert commands[0].endswith("shakeout check") and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci, f".ci/run does not run the README's command: {command}"
