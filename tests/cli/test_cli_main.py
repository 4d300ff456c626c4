"""opsearch.cli's top level: the parser gathered from the commands, each with its action beside it."""

from __future__ import annotations

import pytest

from opsearch.cli import main


def test_help_explains_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("inspect", "run", "resume", "report", "plot"):
        assert command in out


COMMANDS = ["inspect", "run", "remeasure", "bench", "resume", "worker", "report", "export", "sensitivity", "plot"]


def test_each_command_runs_the_action_beside_its_parser() -> None:
    from opsearch.cli._main import _parser

    (subparsers,) = [a for a in _parser()._actions if a.dest == "command"]
    assert list(subparsers.choices) == COMMANDS  # the order `opsearch --help` lists them in
    for name, parser in subparsers.choices.items():
        action = parser.get_default("func")
        assert (action.__module__, action.__name__) == (f"opsearch.cli._{name}", "take_action")


@pytest.mark.parametrize(("argv", "hint"), [
    (["run"], "; continue with `opsearch resume --storage sqlite:///opsearch-runs/default.db --study-name default`"),
    (["run", "--model", "./m"], "; continue with `opsearch resume`"),  # the flags name no study yet
    (["worker", "--storage", "sqlite:///x.db", "--study-name", "s"],
     "; continue with `opsearch resume --storage sqlite:///x.db --study-name s`"),
    (["inspect", "m"], ""),
])
def test_a_stop_says_how_to_go_on(argv: list[str], hint: str) -> None:
    from opsearch.cli._main import _parser, _resume_hint

    assert _resume_hint(_parser().parse_args(argv)) == hint
