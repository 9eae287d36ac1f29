"""The GenEvolve agent as a node of another LangGraph app.

A small "poster studio" graph turns an idea into a request (``brief``), lets the agent plan
and render it (``agent``, the compiled agent graph as a subgraph node), and writes a caption
(``caption``). The parent's checkpointer records the agent's steps too, under the
``agent:<task id>`` checkpoint namespace, and the agent's progress events stream through the
parent with ``subgraphs=True``.

    python examples/embed_subgraph.py "Mount Fuji" --out poster-out

Runs offline (rule-based policy, bundled corpus and images, preview renderer).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from genevolve_graph import AgentContext, Program
from genevolve_graph.agent.embed import agent_subgraph


class PosterState(TypedDict, total=False):
    idea: str
    request: str  # shared with the agent: its input
    program: Program | None  # shared with the agent: its output
    termination: str | None
    caption: str


def brief(state: PosterState) -> dict[str, Any]:
    idea = state["idea"].strip()
    return {"request": f'A vintage travel poster of {idea}, with the title "{idea.upper()}" across the top'}


def caption(state: PosterState) -> dict[str, Any]:
    program = state.get("program")
    if program is None:
        return {"caption": f"no poster: {state.get('termination')}"}
    refs = ", ".join(r.title for r in program.reference_images) or "no references"
    return {"caption": f"Poster of {state['idea']} ({refs})"}


def build_app(checkpointer: Any = None):
    builder = StateGraph(PosterState)
    builder.add_node("brief", brief)
    builder.add_node("agent", agent_subgraph())
    builder.add_node("caption", caption)
    builder.add_edge(START, "brief")
    builder.add_edge("brief", "agent")
    builder.add_edge("agent", "caption")
    builder.add_edge("caption", END)
    return builder.compile(checkpointer=checkpointer)


async def main(idea: str, out: Path) -> dict[str, Any]:
    saver = InMemorySaver()  # a bare saver: our state models are on LangGraph's safe msgpack list
    app = build_app(saver)
    config = {"configurable": {"thread_id": "poster-1"}, "recursion_limit": 60}
    context = AgentContext(policy="rules", renderer="preview", output_dir=str(out.resolve()), options={"output_name": "poster.png"})
    async for namespace, mode, data in app.astream({"idea": idea}, config, context=context,
                                                   stream_mode=["updates", "custom"], subgraphs=True):
        where = "agent" if namespace else "app"
        if mode == "custom":
            detail = {k: v for k, v in data.items() if k != "event"}
            print(f"[{where}] {data['event']}: {detail}")
        else:
            print(f"[{where}] finished node {', '.join(data)}")
    state = (await app.aget_state(config)).values
    namespaces = sorted({c.config["configurable"]["checkpoint_ns"].split(":")[0] or "(root)" for c in saver.list({"configurable": {"thread_id": "poster-1"}})})
    print(f"\ncaption: {state['caption']}")
    print(f"gen_prompt: {state['program'].gen_prompt if state.get('program') else None}")
    print(f"checkpoint namespaces recorded: {namespaces}")
    return state


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("idea", nargs="?", default="Mount Fuji")
    parser.add_argument("--out", type=Path, default=Path("poster-out"))
    args = parser.parse_args()
    asyncio.run(main(args.idea, args.out))
