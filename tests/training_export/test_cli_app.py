"""The shared ``train`` group: created once, reused by every module that adds a subcommand."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from genevolve_graph.cli.train_group import get_train_app


def test_get_train_app_is_idempotent():
    app = typer.Typer()

    @app.command()
    def other() -> None:
        """Another command."""

    first = get_train_app(app)
    assert get_train_app(app) is first
    assert [g.name for g in app.registered_groups] == ["train"]

    @first.command("grpo")
    def grpo() -> None:
        typer.echo("grpo ran")

    @get_train_app(app).command("sft")
    def sft() -> None:
        typer.echo("sft ran")

    runner = CliRunner()
    assert runner.invoke(app, ["train", "grpo"]).output == "grpo ran\n"
    assert runner.invoke(app, ["train", "sft"]).output == "sft ran\n"
    assert "grpo" in runner.invoke(app, ["train", "--help"]).output
