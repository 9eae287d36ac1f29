"""Group a cProfile of the client into the cost buckets the overhead analysis talks about.

Every function's own time (``tottime``) goes to a bucket by the package it lives in. Time
spent in builtins and in the standard library (``json``, ``threading``, ``uuid``...) belongs
to whoever called it: it is handed up the call graph, in proportion to the time each caller
spent in it, until it reaches a function that has a bucket. The buckets therefore add up to
the profiled total, with no double counting (unlike cumulative times).
"""

from __future__ import annotations

import pstats
import sysconfig
from collections import defaultdict
from typing import Any

BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("chat client: ChatOpenAI / lean model + aiohttp (or openai SDK + httpx)",
     ("/langchain_openai/", "/openai/", "/aiohttp/", "/multidict/", "/yarl/", "/aiohappyeyeballs/", "/httpx/",
      "/httpcore/", "/h11/", "/anyio/", "/sniffio/", "/distro/", "genevolve_graph/policies/")),
    ("LangChain core: callbacks, messages, runnables", ("/langchain_core/", "/langsmith/")),
    ("pydantic validation / copies", ("/pydantic/", "/pydantic_core/")),
    ("SQLite checkpoints: saver, serde, aiosqlite hand-offs",
     ("/langgraph/checkpoint/", "/aiosqlite/", "/sqlite3/", "/ormsgpack/", "/msgpack/", "genevolve_graph/persistence/sqlite_saver.py")),
    ("LangGraph step bookkeeping", ("/langgraph/",)),
    ("tools: search (BM25), image search, skills, observations",
     ("genevolve_graph/tools/", "genevolve_graph/skills/", "genevolve_graph/nodes/tools.py",
      "genevolve_graph/nodes/binder.py", "genevolve_graph/agent/embed.py")),
    ("planner node + protocol rendering",
     ("genevolve_graph/nodes/planner.py", "genevolve_graph/core/protocol.py", "genevolve_graph/prompts/")),
    ("other genevolve_graph (runner, emitter, services)", ("genevolve_graph/",)),
    ("event loop (uvloop or asyncio) and selectors", ("/uvloop/", "/asyncio/", "/selectors.py")),
]
_STDLIB = sysconfig.get_paths()["stdlib"]


def bucket_of(filename: str) -> str | None:
    """The bucket a file belongs to; None for builtins and neutral standard-library code."""
    for name, markers in BUCKETS:
        if any(marker in filename for marker in markers):
            return name
    if filename.startswith("~") or filename.startswith("<") or filename.startswith(_STDLIB):
        return None
    return "other third-party"


def buckets(stats: pstats.Stats) -> dict[str, float]:
    """Seconds per bucket; neutral time climbs to the callers (see the module docstring)."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    shares: dict[Any, dict[str, float]] = {}

    def owner(func: Any, seen: frozenset) -> dict[str, float]:
        """How one second of ``func``'s own time splits over buckets."""
        if func in shares:
            return shares[func]
        name = bucket_of(func[0])
        if name is not None:
            result = {name: 1.0}
        else:
            callers = table.get(func, (0, 0, 0, 0, {}))[4]
            weights = {c: edge[3] if isinstance(edge, tuple) else 0.0 for c, edge in callers.items() if c not in seen}
            total = sum(weights.values())
            result = defaultdict(float)
            if not total:
                result["unattributed builtins / stdlib"] = 1.0
            else:
                for caller, weight in weights.items():
                    for bucket, part in owner(caller, seen | {func}).items():
                        result[bucket] += part * weight / total
            result = dict(result)
        if not seen:
            shares[func] = result
        return result

    out: dict[str, float] = defaultdict(float)
    for func, (_cc, _nc, tottime, _ct, _callers) in table.items():
        if tottime:
            for bucket, part in owner(func, frozenset()).items():
                out[bucket] += tottime * part
    return dict(out)


def report(stats: pstats.Stats, rounds: int, top: int = 12) -> str:
    """The bucket table (ms per round and share), then the top cumulative functions."""
    parts = buckets(stats)
    total = sum(parts.values()) or 1e-9
    lines = [f"profile (cProfile on CPU time, {rounds} rounds; own time grouped by package, stdlib/builtins charged to callers):"]
    for name, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {seconds / rounds * 1000:7.2f} ms/round  {seconds / total:6.1%}  {name}")
    lines.append(f"  {total / rounds * 1000:7.2f} ms/round  total under the profiler (cProfile inflates it)")
    lines.append(f"top {top} functions by cumulative time:")
    table = stats.stats  # type: ignore[attr-defined]
    ranked = sorted(table.items(), key=lambda kv: -kv[1][3])
    shown = 0
    for (filename, line, func), (_cc, ncalls, _tt, cumtime, _callers) in ranked:
        if filename.startswith("~") or "/asyncio/" in filename or func in ("<module>",):
            continue
        short = filename.split("site-packages/")[-1].split("/work/wt/")[-1]
        lines.append(f"  {cumtime / rounds * 1000:7.2f} ms/round  {ncalls:6d} calls  {short}:{line}({func})")
        shown += 1
        if shown >= top:
            break
    return "\n".join(lines)
