"""The batch package's shape: modules import each other without cycles (lazy imports count)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "genevolve_graph" / "batch"


def batch_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        deps = {node.module for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genevolve_graph.batch.")}
        graph[f"genevolve_graph.batch.{path.stem}"] = deps
    return graph


def test_no_import_cycles_in_the_batch_package():
    graph = batch_imports()
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for dep in graph.get(module, ()):
            if dep in path:
                cycles.append(path[path.index(dep):] + [dep])
            else:
                visit(dep, path + [dep])

    for module in graph:
        visit(module, [module])
    assert not cycles, cycles


def test_commands_live_in_the_package():
    assert (PACKAGE / "commands.py").is_file() and not (PACKAGE.parent / "batch_commands.py").exists()
