"""The package's layout: imports point one way along the pipeline, and start-up loads only what a command needs."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "opsearch"
# The pipeline, in order: a module may import its own stage and the stages before it, never one after it.
STAGES = ["errors", "_logging", "_files", "config", "source", "quantize", "measure", "store", "search", "report",
          "cli"]
RANK = {stage: (0 if stage in ("errors", "_logging", "_files") else i) for i, stage in enumerate(STAGES)}
HEAVY = ("onnxruntime", "onnx", "torch", "transformers", "datasets", "evaluate", "optuna", "sklearn", "scipy",
         "pandas", "optimum", "matplotlib", "plotly")


def _stage(module: str) -> str:
    return module.split(".")[1]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every opsearch module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("opsearch."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("opsearch.")}
    return found


def test_every_module_belongs_to_a_stage() -> None:
    for name in _modules():
        if name != "opsearch":
            assert _stage(name) in RANK, f"{name} is in no stage of {STAGES}"


def test_imports_point_one_way_along_the_pipeline() -> None:
    backwards = []
    for name, path in _modules().items():
        if name == "opsearch":
            continue  # the lazy facade names every stage
        for target in _imports(path):
            if RANK[_stage(target)] > RANK[_stage(name)]:
                backwards.append(f"{name} -> {target}")
    assert backwards == []


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: {t for t in _imports(path) if t in modules and t != name} for name, path in modules.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, trail: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend([*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*trail, nxt]):
                return True
        state[node] = 2
        return False

    for name in sorted(graph):
        if state.get(name) is None and visit(name, [name]):
            break
    assert cycle == []


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


def test_import_opsearch_loads_no_heavy_library() -> None:
    assert _loaded_after("import opsearch").isdisjoint(HEAVY)


def test_help_loads_no_heavy_library() -> None:
    code = ("from opsearch.cli import main\n"
            "for argv in (['--help'], ['run', '--help'], ['report', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass")
    assert _loaded_after(code).isdisjoint(HEAVY)


def test_a_public_name_loads_on_first_use() -> None:
    import opsearch

    assert opsearch.StudyConfig.__module__.startswith("opsearch.config")
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        opsearch.nothing_here  # noqa: B018


def test_report_loads_no_model_library(tmp_path: Path) -> None:
    from report_study import STUDY_NAME, make_study

    make_study(tmp_path / "s.db")
    code = ("import contextlib, io\nfrom opsearch.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['report', '--storage', 'sqlite:///{tmp_path / 's.db'}', '--study-name', "
            f"'{STUDY_NAME}']) == 0")
    loaded = _loaded_after(code)
    assert "optuna" in loaded  # it does read the study
    assert loaded.isdisjoint({"onnxruntime", "torch", "transformers", "datasets", "evaluate", "sklearn", "optimum",
                              "matplotlib"})


_DOTTED = re.compile(r"\bopsearch(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
# Names a test asks for on purpose because they do not exist, or builds from parts.
_NOT_REFERENCES = {"opsearch.nothing_here", "opsearch.cli._", "opsearch.x.y"}


def _resolves(reference: str) -> bool:
    parts = reference.split(".")
    for i in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for part in parts[i:]:
                found = getattr(found, part)
        except AttributeError:
            return False
        return True
    return False


def test_every_dotted_name_in_code_docs_and_tests_exists() -> None:
    """A docstring, comment or page that names ``opsearch.x.y`` names a module or object that exists: a module moved
    or renamed leaves no stale pointer behind."""
    root = Path(__file__).resolve().parents[1]
    files = [*root.glob("opsearch/**/*.py"), *root.glob("tests/**/*.py"), *root.glob("benchmarks/*.py"),
             *root.glob("docs/*.md"), root / "README.md"]
    stale = [f"{path.relative_to(root)}:{n}: {ref}" for path in files
             for n, line in enumerate(path.read_text().splitlines(), 1)
             for ref in (m.group(0).rstrip(".") for m in _DOTTED.finditer(line))
             if ref not in _NOT_REFERENCES and not _resolves(ref)]
    assert not stale, "\n".join(stale)
