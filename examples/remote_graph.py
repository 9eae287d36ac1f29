"""Drive a deployed agent with LangGraph's ``RemoteGraph``, including the human review step.

``RemoteGraph`` is a graph whose nodes run on a LangGraph API server (``langgraph dev``,
``langgraph up``, or a deployment): ``invoke``, ``stream``, ``get_state`` and
``Command(resume=...)`` work as they do in-process, and it can be a node of a local graph.

    langgraph dev --config langgraph.json --no-browser          # in another terminal
    python examples/remote_graph.py http://127.0.0.1:2024 'A lighthouse on a cliff at dawn' --approve

Without ``--approve`` the script shows the program waiting for review and rejects it.
The server uses its own settings (rule-based policy and bundled material unless its
environment says otherwise); ``output_dir`` is a path on the server's machine.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from langgraph.pregel.remote import RemoteGraph
from langgraph.types import Command


def main(url: str, request: str, *, approve: bool = True, output_dir: str = "") -> dict[str, Any]:
    agent = RemoteGraph("genevolve", url=url)
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    context: dict[str, Any] = {"review_before_render": True}
    if output_dir:
        context["output_dir"] = output_dir
    agent.invoke({"request": request}, config, context=context)  # stops at the review

    [pending] = agent.get_state(config).interrupts
    review = pending.value
    print("program waiting for review:", review["program"]["gen_prompt"])
    for ref in review["program"]["reference_images"]:
        print(f"  {ref['img_id']}: {ref['title']} ({ref['note']})")
    decision = {"action": "approve"} if approve else {"action": "reject", "reason": "not what I asked for"}
    final = agent.invoke(Command(resume=decision), config, context=context)
    render = final.get("render") or {}
    print("termination:", final["termination"], "| rendered:", render.get("output_path") or "nothing")
    return final


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("request")
    parser.add_argument("--approve", action="store_true", help="approve the program (default: reject it)")
    parser.add_argument("--output-dir", default="", help="where the server writes the image")
    args = parser.parse_args()
    main(args.url, args.request, approve=args.approve, output_dir=args.output_dir)
