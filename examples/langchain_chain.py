"""The GenEvolve agent as a step of a LangChain chain: request in, Program out.

``as_runnable`` composes with ``|``, ``batch`` and ``with_fallbacks`` like any Runnable. Here a
prompt template writes the request, the agent plans the program, and a last step formats a
summary; a fallback step handles the rare request the agent cannot turn into a program.

    python examples/langchain_chain.py

Runs offline (rule-based policy, bundled corpus and images, no rendering).
"""

from __future__ import annotations

import json

from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda

from genevolve_graph import AgentContext, Program
from genevolve_graph.agent.embed import NoProgramError, as_runnable


def summary(program: Program) -> dict[str, object]:
    return {
        "gen_prompt": program.gen_prompt,
        "references": [f"{r.img_id}: {r.title} ({r.note})" for r in program.reference_images],
    }


def build_chain():
    template = PromptTemplate.from_template('A {style} poster of {subject}, with the title "{title}"')
    agent = as_runnable(context=AgentContext(policy="rules", renderer="none"))
    plain = RunnableLambda(lambda value: Program(gen_prompt=value.to_string() if hasattr(value, "to_string") else str(value)))
    safe_agent = agent.with_fallbacks([plain], exceptions_to_handle=(NoProgramError,))
    return template | safe_agent | RunnableLambda(summary)


if __name__ == "__main__":
    chain = build_chain()
    rows = [
        {"style": "1920s art-deco", "subject": "the Eiffel Tower at dusk", "title": "PARIS"},
        {"style": "minimalist", "subject": "a monarch butterfly on a sunflower", "title": "SUMMER"},
    ]
    for row, result in zip(rows, chain.batch(rows)):
        print(json.dumps({"input": row, **result}, indent=2, ensure_ascii=False))
