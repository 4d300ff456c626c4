"""opsearch.cli's shared flags: the accuracy limit the read-only commands take, checked as the setting is."""

from __future__ import annotations

import pytest

from opsearch.cli import main


# A stored (fake) study that the command reads: no model needed.
@pytest.fixture(scope="module")
def fake_storage(tmp_path_factory) -> list[str]:
    from report_study import STUDY_NAME, make_study

    db = tmp_path_factory.mktemp("fake") / "study.db"
    make_study(db)
    return ["--storage", f"sqlite:///{db}", "--study-name", STUDY_NAME]


@pytest.mark.parametrize("command", [["report"], ["plot"], ["export", "--best"]])
def test_read_only_commands_refuse_a_bad_limit_naming_the_flag(fake_storage, command, tmp_path, capsys) -> None:
    out = [str(tmp_path / "model")] if command[0] == "export" else []
    for bad in ("-1", "1pt"):
        assert main([*command, *fake_storage, "--max-accuracy-loss", bad, *out]) == 2
        err = capsys.readouterr().err
        assert f"--max-accuracy-loss {bad}" in err and "0.01 for 1 point" in err and "Traceback" not in err
    assert not (tmp_path / "model").exists()
