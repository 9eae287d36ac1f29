"""Watch a run: node updates and the agent's progress events, as they happen.

``stream_mode=["updates", "custom"]`` yields ``("updates", {node: update})`` after each node
and ``("custom", {"event": ...})`` from inside the nodes: ``policy_started``/``policy_done``,
``tool_started``, ``image_ready`` (one per retrieved image, with its IMG id and file),
``tool_done``, ``render_started`` and ``render_done``. A UI can show a progress bar or
thumbnails from them without reading the state.

    python examples/stream_progress.py 'A red double-decker bus in London, title "LONDON"' --out stream-out

Runs offline (rule-based policy, bundled corpus and images, preview renderer).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from genevolve_graph import AgentContext, build_graph
from genevolve_graph.agent.graph import recursion_limit


async def main(request: str, out: Path) -> list[dict]:
    ctx = AgentContext(policy="rules", renderer="preview", output_dir=str(out.resolve()), options={"output_name": "preview.png"})
    graph = build_graph()
    start = time.perf_counter()
    events: list[dict] = []
    async for mode, data in graph.astream({"request": request}, {"recursion_limit": recursion_limit(ctx)}, context=ctx,
                                          stream_mode=["updates", "custom"]):
        stamp = f"{time.perf_counter() - start:6.2f}s"
        if mode == "custom":
            events.append(data)
            event = data["event"]
            if event == "tool_started":
                print(f"{stamp}  -> {data['tool']}({data['arguments']})")
            elif event == "image_ready":
                print(f"{stamp}     image {data['img_id']}: {data['title']} ({data['local_path']})")
            elif event == "tool_done":
                found = f", {data['images']} images" if data["tool"] == "image_search" else ""
                print(f"{stamp}  <- {data['tool']} ({data['chars']} characters{found})")
            elif event == "render_started":
                print(f"{stamp}  rendering with {data['renderer']} ...")
            elif event == "render_done":
                print(f"{stamp}  rendered: {data['path'] if data['success'] else data['error']}")
        else:
            for node, update in data.items():
                extra = f" termination={update['termination']}" if isinstance(update, dict) and update.get("termination") else ""
                print(f"{stamp}  [{node}] done{extra}")
    return events


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("request", nargs="?", default='A red double-decker bus in London, title "LONDON"')
    parser.add_argument("--out", type=Path, default=Path("stream-out"))
    args = parser.parse_args()
    asyncio.run(main(args.request, args.out))
