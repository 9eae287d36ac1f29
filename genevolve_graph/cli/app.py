"""The ``genevolve-graph`` command (Typer): it only assembles the subcommands.

Each command group lives in its own module of this package with ``register(app)``; they are
listed in ``COMMAND_MODULES`` and imported when the command line starts (``run`` and
``draw`` on import), each importing what it runs lazily enough that ``--help`` stays quick. Helpers the commands share are in
``cli.common``.
"""

from __future__ import annotations

import importlib
import sys

import typer

from genevolve_graph.cli import run as run_commands

app = typer.Typer(
    name="genevolve-graph",
    help="Tool-orchestrated image generation: plan a prompt-reference program with a LangGraph agent and render it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

run_commands.register(app)  # run and draw come first in --help, and exist on import

COMMAND_MODULES: list[str] = [
    "genevolve_graph.cli.batch",
    "genevolve_graph.cli.evaluate",
    "genevolve_graph.cli.export",
    "genevolve_graph.cli.serve_renderer",
    "genevolve_graph.cli.train",
    "genevolve_graph.cli.data",
    "genevolve_graph.cli.serve_policy",
    "genevolve_graph.cli.backends",
]
"""Modules with a ``register(app)`` function adding more subcommands."""


def _register_commands() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(app)


def main(argv: list[str] | None = None) -> None:
    _register_commands()
    app(args=argv, prog_name="genevolve-graph")


if __name__ == "__main__":
    main(sys.argv[1:])


__all__ = ["COMMAND_MODULES", "app", "main"]
