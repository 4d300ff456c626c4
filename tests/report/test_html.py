"""opsearch.report's HTML renderer: one self-contained page, checked for its content (from a study, and from a
report made by hand), then opened in headless Chromium to check that its scripts run without errors and both plotly
plots render."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
from factorial_study import make_factorial_study
from hand_report import BEST, CPU, EFFECTS, FRONT, KNEE, STUDY, hand_report

from opsearch.config import StudyConfig
from opsearch.report import (
    EFFECTS_DIV,
    PARETO_DIV,
    StudyEffects,
    StudyReport,
    build_report,
    render_html,
    study_effects,
    write_html_report,
)

MACHINE = {"cpu": "Test CPU <9000>", "int8_flags": ["avx2", "avx512_vnni"], "physical_cores": 2}
VERSIONS = {"onnxruntime": "1.99.0", "optuna": "9.9.9", "python": "3.11.0"}
CONFIG = StudyConfig(model="tiny-bert", dataset="tiny.csv", trials=36, ci_target=0.02).to_dict()
PLOTS = (PARETO_DIV, EFFECTS_DIV)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    return make_factorial_study(tmp_path_factory.mktemp("html") / "study.db", machine=MACHINE, versions=VERSIONS,
                                opsearch_config=CONFIG, workload={"samples": 150, "batch_size": 1})


@pytest.fixture(scope="module")
def report(study: optuna.Study) -> StudyReport:
    return build_report(study, max_accuracy_loss=0.005)


@pytest.fixture(scope="module")
def effects(study: optuna.Study, report: StudyReport) -> StudyEffects:
    return study_effects(study, report=report)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, report: StudyReport, effects: StudyEffects) -> Path:
    return write_html_report(report, effects, tmp_path_factory.mktemp("page") / "out" / "report.html")


def _cells(text: str, table_index: int) -> list[list[str]]:
    """The body cells of the page's ``table_index``-th table, unescaped."""
    table = re.findall(r"<table>.*?</table>", text, flags=re.S)[table_index]
    body = table.split("<tbody>")[1]
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row, flags=re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)]


def test_one_self_contained_file(page: Path) -> None:
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # plotly.js inlined once, nothing fetched: no external script, stylesheet or image.
    assert len(re.findall(r"<script\b[^>]*\bsrc=", text)) == 0
    assert "<link" not in text and "<img" not in text and "<iframe" not in text
    assert text.count("plotly.js v") >= 1 and len(text) > 1_000_000
    for div in PLOTS:
        assert f'id="{div}"' in text


def test_the_front_table_lists_the_front(page: Path, report: StudyReport) -> None:
    rows = _cells(page.read_text(), 0)
    assert [int(r[0]) for r in rows] == [r.trial for r in report.front]
    marks = {int(r[0]): r[1] for r in rows}
    assert report.best_feasible is not None and "best within limit" in marks[report.best_feasible.trial]
    if report.knee is not None:
        assert "knee" in marks[report.knee.trial]


def test_the_page_shows_baseline_machine_versions_and_settings(page: Path, report: StudyReport) -> None:
    text = page.read_text()
    assert "fp32 baseline: accuracy 0.9000 (batch 1), 100.0 samples/s" in text
    assert "Test CPU &lt;9000&gt;" in text and "Test CPU <9000>" not in text  # escaped
    for name, version in VERSIONS.items():
        assert f"<td>{name}</td><td>{version}</td>" in text
    settings = re.search(r"<h2>Study settings</h2>\s*<pre>(.*?)</pre>", text, flags=re.S)
    assert settings and json.loads(html.unescape(settings.group(1))) == {
        "opsearch_config": CONFIG, "workload": {"samples": 150, "batch_size": 1}}


def test_the_effects_table_lists_every_effect(page: Path, effects: StudyEffects) -> None:
    rows = _cells(page.read_text(), 1)
    assert [r[0] for r in rows] == [e.label for e in effects.effects]


def test_a_page_without_enough_trials_for_effects_says_so(tmp_path: Path) -> None:
    from factorial_study import factorial_table

    study = make_factorial_study(tmp_path / "s.db", factorial_table()[:2])
    report = build_report(study)
    text = render_html(report, study_effects(study, report=report))
    assert f'id="{PARETO_DIV}"' in text and f'id="{EFFECTS_DIV}"' not in text
    assert "Too few trials on both sides" in text
    assert "Machine</h2>\n<p class=\"note\">not recorded" in text


# On a report made by hand -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hand_page() -> str:
    return render_html(hand_report(), EFFECTS)


def test_the_page_of_a_report_made_by_hand(hand_page: str) -> None:
    assert f"<title>opsearch report: {html.escape(STUDY)}</title>" in hand_page and STUDY not in hand_page
    assert [int(r[0]) for r in _cells(hand_page, 0)] == FRONT
    assert f'<tr class="knee"><td>{KNEE}</td>' in hand_page and f'<tr class="best"><td>{BEST}</td>' in hand_page
    assert f"<p>best within 1.00 pt: trial {BEST}, 1.90x fp32" in hand_page
    assert f"CPU: {CPU} (avx512_vnni)" in hand_page and f"<td>cpu</td><td>{CPU}</td>" in hand_page
    assert "<li>trials 2, 6: differ in reduce_range</li>" in hand_page
    assert "<h3>trial 1 (dynamic s8)</h3>" in hand_page and "<p>Outside the layers: embeddings S</p>" in hand_page
    assert "<td>op_MatMul</td><td>4</td><td>3</td><td>+0.512</td>" in hand_page
    assert "Left out (fewer than two trials on a side): weights_dtype=QUInt8." in hand_page
    assert "<li>op_Gather with op_MatMul: faster together than apart</li>" in hand_page
    assert '<span class="note">not available (fANOVA needs two distinct values)</span>' in hand_page
    assert "trial 3: dominated by trial 2 after 5 rounds" in hand_page
    for div in PLOTS:
        assert f'id="{div}"' in hand_page


# In a browser ----------------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium): the page is not opened "
    "in a browser")

# Injected first in <head>: records errors and failed promises and console.error calls, and once the page has
# loaded, writes them and which plot divs hold plotly's rendered SVG into an element of the dumped DOM.
PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push("error: " + e.message); });
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + e.reason); });
  var consoleError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    setTimeout(function () {
      var rendered = {};
      PLOT_IDS.forEach(function (id) {
        var div = document.getElementById(id);
        rendered[id] = div ? div.querySelectorAll("svg.main-svg").length : -1;
      });
      var out = document.createElement("pre");
      out.id = "opsearch-probe";
      out.textContent = JSON.stringify({errors: errors, rendered: rendered});
      document.body.appendChild(out);
    }, 500);
  });
})();
</script>"""


def _open_in_chromium(page: Path, tmp_path: Path, plot_ids: tuple[str, ...]) -> dict:
    probed = tmp_path / "probed.html"
    text = page.read_text()
    probed.write_text(text.replace("<head>", "<head>" + PROBE.replace("PLOT_IDS", json.dumps(list(plot_ids))), 1))
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r'<pre id="opsearch-probe">(.*?)</pre>', result.stdout, flags=re.S)
    assert match, f"the probe never reported: the page did not finish loading. stderr: {result.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


@needs_chromium
def test_the_report_renders_in_a_browser_without_errors(page: Path, tmp_path: Path) -> None:
    probe = _open_in_chromium(page, tmp_path, PLOTS)
    assert probe["errors"] == []
    for div in PLOTS:
        assert probe["rendered"][div] >= 1, f"plot {div} did not render"


@needs_chromium
def test_the_probe_sees_a_broken_page(tmp_path: Path) -> None:
    # The check above is only as good as the probe: a page whose script throws and whose plot never renders
    # must be caught.
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head></head><body><div id="plot"></div>'
                    "<script>Plotly.newPlot('plot', []);</script></body></html>")
    probe = _open_in_chromium(page, tmp_path, ("plot",))
    assert any("Plotly is not defined" in e for e in probe["errors"])
    assert probe["rendered"]["plot"] == 0
