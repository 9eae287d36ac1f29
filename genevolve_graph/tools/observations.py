"""Tool observations in the exact text blocks of DESIGN.md §3."""

from __future__ import annotations

from genevolve_graph.core.state import Reference
from genevolve_graph.tools.base import SearchHit


def search_block(query: str, hits: list[SearchHit]) -> str:
    lines = [f"--- search result for [{query}] ---"]
    if not hits:
        lines.append("(no results)")
    for n, hit in enumerate(hits, 1):
        lines += [f"{n}. title: {hit.title}", f"  url: {hit.url}", f"  snippet: {hit.snippet}"]
    lines.append("--- end of search result ---")
    return "\n".join(lines)


def image_search_block(query: str, refs: list[Reference], rejected: list[str] | None = None) -> str:
    lines = [f"--- image search result for [{query}] ---"]
    if not refs:
        lines.append("(no images)")
    for ref in refs:
        lines += [
            f"{ref.img_id}: title: {ref.title}",
            f"  url: {ref.url}",
            f"  local_path: {ref.local_path}",
            f"  page_url: {ref.page_url}",
        ]
    for reason in rejected or []:
        lines.append(f"(dropped: {reason})")
    lines.append("--- end of image search result ---")
    return "\n".join(lines)


def skill_block(name: str, guide: str) -> str:
    """``## Skill Guidance``, a blank line, ``=== Skill: NAME ===``, then the guide (DESIGN.md §3;
    the released checkpoint was trained on exactly this layout)."""
    return f"## Skill Guidance\n\n=== Skill: {name} ===\n{guide}"
