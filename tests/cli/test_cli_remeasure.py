"""``opsearch remeasure``: a study opsearch did not make is refused with a message."""

from __future__ import annotations

from opsearch.cli import main


def test_remeasure_of_a_study_opsearch_did_not_make_is_refused(tmp_path, capsys) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(storage=storage, study_name="foreign")
    assert main(["remeasure", "--storage", storage, "--study-name", "foreign"]) == 2
    err = capsys.readouterr().err
    assert "was not made by opsearch" in err and "Traceback" not in err
