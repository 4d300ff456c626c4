"""``opsearch plot``: the Pareto plot (PNG or HTML) and the effects plot of a stored study."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsearch.cli import main


# A stored (fake) study that the command reads: no model needed.
@pytest.fixture(scope="module")
def fake_storage(tmp_path_factory) -> list[str]:
    from report_study import STUDY_NAME, make_study

    db = tmp_path_factory.mktemp("fake") / "study.db"
    make_study(db)
    return ["--storage", f"sqlite:///{db}", "--study-name", STUDY_NAME]


@pytest.mark.parametrize(("flags", "suffix"), [(["--html"], ".html"), ([], ".png")])
def test_plot_defaults(fake_storage, flags, suffix, capsys) -> None:
    assert main(["plot", *fake_storage, *flags]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out.suffix == suffix and out.name.startswith(fake_storage[3])
    data = out.read_bytes()
    if suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert data.lstrip().lower().startswith(b"<!doctype html>") and b"plotly.js v" in data


def test_plot_html_from_suffix_with_effects_and_limit(fake_storage, tmp_path, capsys) -> None:
    pareto, effects = tmp_path / "pareto.html", tmp_path / "effects.png"
    assert main(["plot", *fake_storage, "--out", str(pareto), "--effects", str(effects), "--max-accuracy-loss",
                 "0.01", "--y", "throughput"]) == 0
    assert capsys.readouterr().out.split() == [str(pareto), str(effects)]
    text = pareto.read_text()
    assert "best within limit (#1)" in text and "throughput (samples" in text
    assert effects.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
