"""Threat-model row "recipes": a recipe file is data from wherever it came from.

- It reads only the environment variables the operator allows: ``GENEVOLVE_DATA_*`` or a
  name given with ``data build --allow-env NAME``, in ``${NAME}`` and ``api_key_env`` alike.
  Before, ``${OPENAI_API_KEY}`` in a URL and ``api_key_env: AWS_SECRET_ACCESS_KEY`` were both
  sent to the recipe's endpoint.
- Its size is bounded: YAML aliases expand under a cap (an alias bomb hung ``data build``),
  the grid's cell count is capped (7.8e8 cells were accepted), and a non-empty grid missing
  an axis is refused with the axis named (it was ignored when ``cells`` was also given).
"""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from genevolve_graph.data.recipes import MAX_GRID_CELLS, RecipeError, load_recipe

CELL = "cells: [{task_family: a, missing_evidence: none, visual_anchor: c, requirement: d, difficulty: e}]\n"


def _write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, where", [
    ("name: x\n" + CELL + "expander: {base_url: 'http://127.0.0.1:9/v1?k=${OPENAI_API_KEY}', model: m}\n", "${OPENAI_API_KEY}"),
    ("name: x\n" + CELL + "expander: {base_url: 'http://127.0.0.1:9/v1', model: m, api_key_env: OPENAI_API_KEY}\n", "expander.api_key_env"),
    ("name: x\n" + CELL + "judge: {base_url: 'http://127.0.0.1:9/v1', model: m, api_key_env: OPENAI_API_KEY}\n", "judge.api_key_env"),
    ("name: x\n" + CELL + "teacher: {base_url: 'http://127.0.0.1:9/v1', model: m, api_key_env: OPENAI_API_KEY}\n", "teacher.api_key_env"),
    ("name: x\n" + CELL + "filter: {audit: {judge: {base_url: 'http://h/v1', model: m, api_key_env: OPENAI_API_KEY}}}\n",
     "filter.audit.judge.api_key_env"),
])
def test_a_recipe_reads_only_the_environment_variables_the_operator_allows(tmp_path, monkeypatch, text, where):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    path = _write(tmp_path, text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = str(caught.value)
    assert where in message and "'OPENAI_API_KEY'" in message and "--allow-env OPENAI_API_KEY" in message
    assert "sk-secret-value" not in message and "\n" not in message
    recipe = load_recipe(path, allow_env=["OPENAI_API_KEY"])  # the operator allows it by name
    assert recipe.name == "x"


def test_the_naming_rule_needs_no_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("GENEVOLVE_DATA_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GENEVOLVE_DATA_JUDGE_KEY", "k")
    recipe = load_recipe(_write(tmp_path, "name: x\n" + CELL + "judge: {base_url: '${GENEVOLVE_DATA_BASE_URL}', model: m, "
                                          "api_key_env: GENEVOLVE_DATA_JUDGE_KEY}\n"))
    assert recipe.judge.base_url == "http://127.0.0.1:9/v1" and recipe.judge.api_key() == "k"


def test_data_build_refuses_the_variable_in_one_line(tmp_path, monkeypatch):
    import typer

    from genevolve_graph.cli.data import register

    app = typer.Typer()
    register(app)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    path = _write(tmp_path, "name: x\n" + CELL + "expander: {base_url: 'http://127.0.0.1:9/v1', model: m, api_key_env: AWS_SECRET_ACCESS_KEY}\n")
    refused = CliRunner().invoke(app, ["data", "build", "--recipes", str(path), "--out", str(tmp_path / "out"), "--stages", "requests"])
    assert refused.exit_code == 2
    assert refused.stderr.strip().count("\n") == 0 and "expander.api_key_env names the environment variable 'AWS_SECRET_ACCESS_KEY'" in refused.stderr
    assert not (tmp_path / "out").exists()


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["name: x", CELL.strip(), "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):  # 10^10 values once expanded
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    path = _write(tmp_path, "\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(RecipeError, match=r"expands to more than 200,000 values through its YAML aliases"):
        load_recipe(path)
    assert time.monotonic() - started < 5


def test_a_huge_grid_is_refused_with_its_size(tmp_path):
    values = "[" + ", ".join(f"v{i}" for i in range(60)) + "]"
    grid = "grid: {" + ", ".join(f"{axis}: {values}" for axis in
                                 ("task_family", "missing_evidence", "visual_anchor", "requirement", "difficulty")) + "}\n"
    with pytest.raises(RecipeError, match=rf"60 x 60 x 60 x 60 x 60 = 777,600,000 cells, more than the {MAX_GRID_CELLS:,}"):
        load_recipe(_write(tmp_path, "name: x\n" + grid))


def test_a_grid_missing_an_axis_is_refused_even_beside_cells(tmp_path):
    path = _write(tmp_path, "name: x\n" + CELL + "grid: {task_family: [a], missing_evidence: [none], visual_anchor: [c], requirement: [d]}\n")
    with pytest.raises(RecipeError, match=r"the grid lacks the axis 'difficulty'"):
        load_recipe(path)
