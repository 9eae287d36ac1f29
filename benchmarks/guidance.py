"""Programs with and without retrieved Decision Guides (``guidance="retrieve"``) on the bundled prompts.

Offline and deterministic: the rule-based planner (it follows a guide's skill routing and
quoted search queries), the bundled corpus and images, guides in an ``InMemoryStore`` indexed
by a tiny local sentence-transformers model (``--embedding-model PATH`` for a real one such
as Qwen3-Embedding-0.6B), and a *scripted judge*: a fixed checklist of what a sufficient
program states, applied identically to both arms:

- the request's subject is named; every quoted/title text is quoted; every count is exact;
- a fact is given when the bundled corpus holds one about the subject;
- a reference is cited when the bundled images hold one of the subject;
- composition is specified (focal point, positions, foreground/background);
- light and materials are specified (light, shadow, reflection, texture).

Score = share of the applicable checks met. The judge is a checklist, not a model: the
figures show what retrieval changes in the programs (hit rate, skills read, checks met),
not an image-quality gain.

    python benchmarks/guidance.py [--embedding-model PATH] [--gate 0.84]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from langgraph.store.memory import InMemoryStore

from genevolve_graph import AgentContext
from genevolve_graph.experience.memory import StoreGuideMemory, store_index
from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.policies.relevance import subject_of
from genevolve_graph.policies.rules import QUOTED, TITLE_WORD, analyse
from genevolve_graph.agent.runner import run_with_saver
from genevolve_graph.skills import load_skills
from genevolve_graph.tools.local_images import DEFAULT_IMAGE_DIR, read_folder
from genevolve_graph.tools.local_search import DEFAULT_CORPUS
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.experience.guides import DecisionGuide

# (prompt, (trigger, summary of a similar past request, skills the guide routes to, quoted query))
CASES: list[tuple[str, tuple[str, str, list[str], str]]] = [
    ('A 1990s travel-magazine cover in front of the Eiffel Tower, title "PARIS"',
     ("landmark magazine cover", "A 1990s travel-magazine cover in front of the Eiffel Tower with the title PARIS", ["physical_material_consistency"], "Eiffel Tower")),
    ('Exactly three emperor penguins on sea ice, the middle one holding a sign that says "HELLO"',
     ("counted animals with a sign", "Exactly three emperor penguins on sea ice, one holding a sign saying HELLO", ["aesthetic_drawing", "physical_material_consistency"], "emperor penguin")),
    ("A red double-decker bus on a rainy London street",
     ("vehicle in a city street", "A red double-decker bus on a rainy street in London", ["physical_material_consistency", "aesthetic_drawing"], "Routemaster bus")),
    ("Saturn and its rings seen from one of its moons",
     ("planet seen from a moon", "Saturn and its rings seen from one of its moons", ["spatial_layout", "aesthetic_drawing"], "Planetary rings")),
    ("A monarch butterfly resting on a sunflower at noon",
     ("insect on a flower", "A monarch butterfly resting on a sunflower at noon", ["physical_material_consistency", "aesthetic_drawing"], "Sunflower")),
    ("A red and white lighthouse on a rocky coast during a storm",
     ("lighthouse in bad weather", "A red and white lighthouse on a rocky coast in a storm", ["physical_material_consistency", "aesthetic_drawing"], "Lighthouse")),
    ("A ginger cat asleep beside a teal teapot",
     ("pet beside an object", "A ginger cat asleep beside a teal teapot", ["spatial_layout", "attribute_binding"], "Domestic cat")),
    ("The Colosseum in Rome at sunset with crowds entering",
     ("ancient landmark with crowds", "The Colosseum in Rome at sunset with crowds entering", ["aesthetic_drawing", "physical_material_consistency"], "Colosseum")),
    ("A friendly retro robot reading a book",
     ("robot doing a human task", "A friendly retro robot reading a book", ["anatomy_body_coherence", "aesthetic_drawing"], "Robot")),
    ("A DNA double helix as a glowing neon sculpture",
     ("science object as an artwork", "A DNA double helix as a glowing neon sculpture", ["physical_material_consistency", "creative_drawing"], "Neon signs")),
    ("A paper lantern festival at night with two hundred lanterns",
     ("festival of lights", "A paper lantern festival at night with two hundred lanterns", ["quantity_counting", "physical_material_consistency"], "Paper lanterns")),
    ("A red fox in fresh snow",  # outside the bundled material: no guide should pass the gate
     ("landmark at night", "The Golden Gate Bridge at night in fog", ["aesthetic_drawing"], "Golden Gate Bridge")),
]

COMPOSITION = re.compile(r"\b(focal point|composition|foreground|background|positions?)\b", re.I)
LIGHT = re.compile(r"\b(light|lighting|shadows?|reflections?|textures?)\b", re.I)


def make_guide(trigger: str, summary: str, skills: list[str], query: str) -> DecisionGuide:
    return DecisionGuide.model_validate({
        "retrieval_key": {"trigger": trigger, "summary": summary},
        "decision_guidance": {
            "skill_routing": [f"Read {s} before writing the prompt" for s in skills],
            "search_queries": [f'Search "{query}" for the facts the picture depends on'],
            "program_writing": ["State light and composition explicitly"],
        },
    })


def judge(request: str, gen_prompt: str, refs: int, has_fact_source: bool, has_image_source: bool) -> tuple[int, int]:
    """(checks met, checks applicable) of the scripted checklist."""
    subject = subject_of(request)
    texts = [t.strip() for t in QUOTED.findall(request)] + [t.strip() for t in TITLE_WORD.findall(request)]
    counts = analyse(request, load_skills()).counts
    checks = [subject.label.lower() in gen_prompt.lower() or any(n.lower() in gen_prompt.lower() for n in subject.names)]
    checks += [f'"{t}"' in gen_prompt for t in texts]
    checks += [f"exactly {n} {noun}".lower() in gen_prompt.lower() for n, noun in counts]
    if has_fact_source:
        checks.append("Facts to respect:" in gen_prompt)
    if has_image_source:
        checks.append(refs > 0)
    checks.append(bool(COMPOSITION.search(gen_prompt)))
    checks.append(bool(LIGHT.search(gen_prompt)))
    return sum(checks), len(checks)


async def main(opts: argparse.Namespace) -> dict:
    if opts.embedding_model:
        embedder = SentenceEmbedder(opts.embedding_model)
    else:
        from genevolve_graph.testing.tiny_models import build_tiny_sentence_transformer

        embedder = SentenceEmbedder(build_tiny_sentence_transformer("static"), name="tiny-static")
    store = InMemoryStore(index=store_index(embedder))
    memory = StoreGuideMemory(store, gate=opts.gate)
    memory.add([make_guide(*guide) for _, guide in CASES])
    corpus_titles = [json.loads(line)["title"] for line in Path(DEFAULT_CORPUS).read_text(encoding="utf-8").splitlines() if line.strip()]
    image_titles = [item["title"] for item in read_folder(DEFAULT_IMAGE_DIR)]
    out = Path(tempfile.mkdtemp(prefix="guidance-bench-"))
    rows = []
    start = time.perf_counter()
    async with open_checkpointer("memory") as saver:
        for n, (request, _) in enumerate(CASES):
            subject = subject_of(request)
            fact_source = any(subject.match(t) for t in corpus_titles)
            image_source = any(subject.match(t) for t in image_titles)
            row = {"request": request}
            for arm in ("off", "retrieve"):
                ctx = AgentContext(policy="rules", renderer="none", output_dir=str(out), guidance=arm, guide_gate=opts.gate)
                result = await run_with_saver(request, ctx, saver, thread_id=f"{arm}-{n}", store=store)
                program = result.program
                met, applicable = judge(request, program.gen_prompt, len(program.reference_images), fact_source, image_source)
                skills = sum(1 for m in result.messages if getattr(m, "tool_calls", None) and m.tool_calls[0]["name"] == "query_knowledge")
                row[arm] = {"score": met / applicable, "met": met, "of": applicable, "skills_read": skills, "tool_calls": result.tool_calls,
                            "guide": (result.guide or {}).get("id"), "guide_score": (result.guide or {}).get("score")}
            rows.append(row)
    seconds = time.perf_counter() - start
    off = [r["off"]["score"] for r in rows]
    on = [r["retrieve"]["score"] for r in rows]
    hits = sum(r["retrieve"]["guide"] is not None for r in rows)
    summary = {
        "prompts": len(rows), "gate": opts.gate, "embedder": embedder.name, "guide_hits": hits,
        "mean_score_off": round(statistics.mean(off), 4), "mean_score_retrieve": round(statistics.mean(on), 4),
        "ratio_retrieve_over_off": round(statistics.mean(on) / statistics.mean(off), 4),
        "prompts_improved": sum(b > a for a, b in zip(off, on)), "prompts_worse": sum(b < a for a, b in zip(off, on)),
        "mean_skills_read_off": round(statistics.mean(r["off"]["skills_read"] for r in rows), 2),
        "mean_skills_read_retrieve": round(statistics.mean(r["retrieve"]["skills_read"] for r in rows), 2),
        "seconds": round(seconds, 1),
    }
    print(f"{'request':62} {'off':>9} {'retrieve':>9}  guide (similarity)")
    for r in rows:
        a, b = r["off"], r["retrieve"]
        guide = f"{b['guide']} ({b['guide_score']:.3f})" if b["guide"] else "none passed the gate"
        print(f"{r['request'][:62]:62} {a['met']:>4}/{a['of']:<4} {b['met']:>4}/{b['of']:<4}  {guide}")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedding-model", default="", help="sentence-transformers model path (default: a tiny local one)")
    parser.add_argument("--gate", type=float, default=0.84)
    asyncio.run(main(parser.parse_args()))
