"""``genevolve-graph backends``: every name each pluggable kind answers to, built-in and installed.

An installed name is listed with the distribution that registered it (its entry point's
package), so a user can tell where a backend comes from and what to uninstall. Credentials a
built-in backend needs are named too (``run`` refuses to start without them).
"""

from __future__ import annotations

import json

import typer

KINDS = (("policy", "--policy"), ("search", "--search"), ("image_search", "--image-search"), ("renderer", "--renderer"))


def register(app: typer.Typer) -> None:
    """Add ``backends`` to ``app``."""
    app.command()(backends)


def listing() -> list[dict[str, str]]:
    """One row per name: kind, flag, name, source (built-in or the distribution), needs."""
    from genevolve_graph.cli.common import required_credentials
    from genevolve_graph.core.registry import REGISTRIES

    needs = required_credentials()
    rows: list[dict[str, str]] = []
    for field, flag in KINDS:
        registry = REGISTRIES[field]
        for name in [*registry.builtins, *registry.extra]:
            rows.append({"kind": field, "flag": flag, "name": name, "source": "built-in",
                         "needs": " or ".join(needs.get((flag, name), ())), "target": registry.builtins.get(name, "")})
        for name, entry in sorted(registry.installed().items()):
            dist = getattr(entry, "dist", None)
            source = f"{dist.name} {dist.version}" if dist is not None else "installed (distribution unknown)"
            rows.append({"kind": field, "flag": flag, "name": name, "source": source, "needs": "", "target": entry.value})
    return rows


def backends(as_json: bool = typer.Option(False, "--json", help="Print the listing as JSON rows.")) -> None:
    """List every policy, search, image search and renderer name: built-in, and installed by packages."""
    rows = listing()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for field, flag in KINDS:
        typer.echo(f"{field} ({flag}):")
        for row in (r for r in rows if r["kind"] == field):
            needs = f"  needs {row['needs']}" if row["needs"] else ""
            typer.echo(f"  {row['name']:<12} {row['source']}{needs}")
