"""The ``genevolve-graph`` command line: one module per command group, each with
``register(app)``; ``cli.common`` holds the helpers they share; ``cli.app`` assembles them.
The top layer: it may import anything, and nothing imports it.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """The ``genevolve-graph`` console script (``pyproject.toml`` names ``genevolve_graph.cli:main``).

    Imports the app only when called, so importing ``cli.common`` stays light."""
    from genevolve_graph.cli.app import main as app_main

    app_main(argv)

