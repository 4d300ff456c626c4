"""``opsearch sensitivity``: its flags are checked before any model is loaded."""

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


def test_sensitivity_enqueue_needs_a_trial(fake_storage, capsys) -> None:
    recipe = '{"mode": "dynamic", "operators_to_quantize": ["MatMul"]}'
    assert main(["sensitivity", *fake_storage, "--recipe", recipe, "--enqueue"]) == 2
    assert "give --trial N" in capsys.readouterr().err
