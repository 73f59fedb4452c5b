"""Help for newcomers: every command's --help has real examples, every option says what it
takes (with units), the commands that take bug or probe names list them, and --quiet
leaves only the verdict line."""

import argparse
import shlex

import pytest

from shakeout.catalog import load_catalog
from shakeout.cli import all_commands, build_parser, main
from shakeout.probes import all_probes

COMMANDS = sorted(all_commands())
TAKES_PROBES = ("run", "selftest", "vm", "show")
TAKES_BUGS = ("check", "show")


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser(name)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def help_text(name: str) -> str:
    return subparser(name).format_help()


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_two_or_three_real_examples(name):
    text = help_text(name)
    assert "examples:" in text, f"shakeout {name} --help has no examples"
    examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    commands = [e.strip() for e in examples if e.strip()]
    assert 2 <= len(commands) <= 3
    for command in commands:
        words = shlex.split(command.split("   #")[0].split("  #")[0], comments=True)
        assert "shakeout" in words, command
        used = words[words.index("shakeout") + 1]
        assert used in all_commands(), f"example uses unknown command {used!r}: {command}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help(name):
    for action in subparser(name)._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"shakeout {name}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("name", [n for n in TAKES_PROBES if n in COMMANDS])
def test_commands_taking_probes_list_them(name):
    text = " ".join(help_text(name).split())
    for probe in all_probes():
        assert probe in text


@pytest.mark.parametrize("name", TAKES_BUGS)
def test_commands_taking_bugs_list_them(name):
    text = " ".join(help_text(name).split())
    for bug in load_catalog():
        assert bug in text


@pytest.mark.parametrize(
    "name, option, unit",
    [
        ("check", "--duration", "seconds"),
        ("run", "--duration", "seconds"),
        ("run", "--workers", "workers"),
        ("vm", "--memory", "M or G"),
        ("vm", "--duration", "seconds"),
        ("vdso", "--budget", "bytes"),
        ("bisect", "--timeout", "seconds"),
        ("config-bisect", "--timeout", "seconds"),
        ("memtest", "--fade-wait", "seconds"),
    ],
)
def test_options_name_their_units(name, option, unit):
    action = next(a for a in subparser(name)._actions if option in a.option_strings)
    assert unit in action.help


def test_config_bisect_help_explains_the_config_variable():
    text = help_text("config-bisect")
    assert "$SHAKEOUT_CONFIG" in text and "olddefconfig" in text


def test_quiet_check_prints_only_the_verdict_line(capsys):
    status = main(["check", "--only", "freebsd-xsave-xmm", "--quiet"])
    out, err = capsys.readouterr()
    assert status == 0 and err == ""
    assert out.splitlines() == ["shakeout: no known defect on this machine (1 bug checked: 1 not applicable) — exit 0"]
