"""The package's layers (docs/architecture.md), checked by import-linter as CI runs it.

- The contracts in pyproject.toml hold on the package as it is.
- They are not vacuous: a copy of the package with one upward import, or one circle, breaks
  the contract that names it.
- The agent imports nothing of the trainer, and the paths docs/extending.md tells plugin
  authors to import still work (aliases of ``core``), as does the checkpoint format's name of
  our models.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the project at ``project`` (its pyproject.toml and its package)."""
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=project, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def linter() -> Path:
    if not LINT_IMPORTS.exists():  # pragma: no cover - the test extra installs it
        pytest.fail(f"lint-imports is not installed beside {sys.executable}; run make install-test (the test extra has import-linter)")
    return LINT_IMPORTS


def test_the_layer_contracts_hold(linter: Path) -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # the agent's planner reaching up into the trainer
        ("nodes/planner.py", "from genevolve_graph.training import sdl  # noqa: F401", ["Layers import downward only", "The agent and what it runs on never import"]),
        # a subcommand's helpers taken from the top-level app, below which they must sit
        ("core/guard.py", "import genevolve_graph.cli.app  # noqa: F401", ["Layers import downward only"]),
        # a circle inside one package: sft_data already imports nothing of sft, sft imports sft_data
        ("training/sft_data.py", "import genevolve_graph.training.sft  # noqa: F401", ["No import circles"]),
        # code inside the package importing a public alias instead of the real module
        ("tools/base.py", "import genevolve_graph.state  # noqa: F401", ["Code inside the package imports the real modules"]),
    ],
)
def test_a_wrong_import_breaks_its_contract(linter: Path, tmp_path: Path, module: str, line: str, broken: list[str]) -> None:
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    shutil.copytree(ROOT / "genevolve_graph", copy / "genevolve_graph", ignore=shutil.ignore_patterns("__pycache__", "*.png", "*.jpg", "*.jsonl"))
    target = copy / "genevolve_graph" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    result = lint_imports(copy)
    assert result.returncode != 0, result.stdout
    for name in broken:
        assert re.search(re.escape(name) + r"[^\n]*\n?[^\n]*BROKEN", result.stdout), result.stdout


def test_a_new_root_package_must_be_given_a_layer(linter: Path, tmp_path: Path) -> None:
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    shutil.copytree(ROOT / "genevolve_graph", copy / "genevolve_graph", ignore=shutil.ignore_patterns("__pycache__", "*.png", "*.jpg", "*.jsonl"))
    (copy / "genevolve_graph" / "helpers.py").write_text('"""A module nobody placed."""\n', encoding="utf-8")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "genevolve_graph.helpers" in result.stdout + result.stderr


def test_the_planner_imports_nothing_of_the_trainer() -> None:
    code = (
        "import sys, genevolve_graph.nodes.planner, genevolve_graph.agent.graph\n"
        "print(sorted(m for m in sys.modules if m.startswith(('genevolve_graph.training', 'genevolve_graph.data', 'genevolve_graph.cli'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def extending_imports() -> list[str]:
    """Every ``from genevolve_graph... import ...`` line of docs/extending.md's code blocks."""
    text = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    return sorted(set(re.findall(r"^from genevolve_graph[\w.]* import [\w, ]+$", text, flags=re.M)))


def test_the_documented_plugin_imports_work() -> None:
    lines = extending_imports()
    assert any("genevolve_graph.state" in line for line in lines) and any("genevolve_graph.protocol" in line for line in lines)
    for line in lines:
        exec(compile(line, "docs/extending.md", "exec"), {})  # noqa: S102 - the docs' own import lines


def test_public_module_paths_are_the_core_modules() -> None:
    import genevolve_graph
    from genevolve_graph import context, protocol, registry, state
    from genevolve_graph.agent import create_genevolve_agent
    from genevolve_graph.core import context as core_context
    from genevolve_graph.core import protocol as core_protocol
    from genevolve_graph.core import registry as core_registry
    from genevolve_graph.core import state as core_state

    assert (context, protocol, registry, state) == (core_context, core_protocol, core_registry, core_state)
    assert genevolve_graph.create_genevolve_agent is create_genevolve_agent
    assert callable(registry.refresh_all)
    assert sorted(genevolve_graph.__all__) == [
        "AgentContext", "Program", "Reference", "RenderResult", "build_builder", "build_graph", "create_genevolve_agent",
    ]


def test_checkpoints_name_the_models_by_their_public_path() -> None:
    """The checkpoint format records (module, class); it did not change with the layout."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from genevolve_graph.core.state import Program, Reference
    from genevolve_graph.persistence import serializer

    program = Program(gen_prompt="a fox", reference_images=[Reference(img_id="IMG_001", note="the fox")])
    kind, blob = JsonPlusSerializer().dumps_typed(program)
    assert b"genevolve_graph.state" in blob and b"genevolve_graph.core" not in blob
    assert serializer().loads_typed((kind, blob)) == program
