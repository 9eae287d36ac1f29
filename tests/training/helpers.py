"""Small, fast agent settings and scripted replies for the training tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from genevolve_graph.core.context import AgentContext
from genevolve_graph.core.protocol import format_answer, format_tool_call

DATA = Path(__file__).resolve().parents[2] / "genevolve_graph" / "data"

SHORT_SYSTEM_PROMPT = (
    "Plan an image. Think in <think></think>, then make one <tool_call> or give the <answer> JSON "
    "(gen_prompt, reference_images).\n{tools}"
)

FOX = "A red fox sleeping in fresh snow"
TOWER = "The Eiffel Tower at dusk with its height written on it"


def think(text: str, body: str) -> str:
    """A reply in the canonical Qwen3 form (what its template re-renders unchanged)."""
    return f"<think>\n{text}\n</think>\n\n{body}"


def make_context(root: Path, **changes) -> AgentContext:
    """Tools over a three-document corpus and two captioned images, a short system prompt."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus.jsonl"
    docs = [
        {"title": "Red fox", "url": "https://example.org/fox", "text": "The red fox has orange-red fur, a white chest and a bushy tail with a white tip."},
        {"title": "Eiffel Tower", "url": "https://example.org/eiffel", "text": "The Eiffel Tower is a wrought-iron lattice tower in Paris, about 330 metres tall."},
        {"title": "Snow", "url": "https://example.org/snow", "text": "Fresh snow is bright and blue-tinted in shade."},
    ]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    images = root / "images"
    images.mkdir(exist_ok=True)
    for name, caption in (("cat", "red fox like orange animal"), ("eiffel_tower_dusk", "Eiffel Tower at dusk")):
        shutil.copy(DATA / "images" / f"{name}.png", images / f"{name}.png")
        (images / f"{name}.json").write_text(json.dumps({"title": caption, "caption": caption}))
    prompt = root / "system.txt"
    prompt.write_text(SHORT_SYSTEM_PROMPT)
    skills = root / "skills"
    skills.mkdir(exist_ok=True)
    (skills / "spatial_layout.md").write_text(
        "---\nname: spatial_layout\nsummary: Put things where the request says.\ntriggers: [left, right]\n---\n"
        "## Constraints to write into the prompt\n- Say where each object is.\n"
    )
    ctx = AgentContext(corpus=str(corpus), image_dir=str(images), system_prompt_file=str(prompt), skills_dir=str(skills),
                       renderer="none", top_k=1)
    return ctx.with_updates(**changes) if changes else ctx


def fox_good() -> list[str]:
    return [
        think("Check the fur colours.", format_tool_call("search", {"queries": ["red fox fur"], "top_k": 1})),
        think("Find a reference.", format_tool_call("image_search", {"query": "red fox", "top_k": 1})),
        think("Write it.", format_answer({
            "gen_prompt": "A red fox with orange-red fur and a white-tipped tail asleep in fresh snow, posed like the first reference image",
            "reference_images": [{"img_id": "IMG_001", "note": "pose"}],
        })),
    ]


def fox_poor() -> list[str]:
    return [think("Just draw it.", format_answer({"gen_prompt": "a fox", "reference_images": []}))]


def fox_skill() -> list[str]:
    return [
        think("Layout matters.", format_tool_call("query_knowledge", {"skill_name": "spatial_layout"})),
        think("Done.", format_answer({"gen_prompt": "A red fox curled up in snow, centred, seen from above", "reference_images": []})),
    ]


def tower_replies() -> list[list[str]]:
    return [
        [
            think("Get the height.", format_tool_call("search", {"queries": ["Eiffel Tower height"], "top_k": 1})),
            think("Done.", format_answer({"gen_prompt": 'The Eiffel Tower at dusk with the label "330 m" beside it', "reference_images": []})),
        ],
        [think("Quick.", format_answer({"gen_prompt": "a tower", "reference_images": []}))],
    ]


TINY_RUN = dict(per_device_train_batch_size=3, num_generations=3, max_completion_length=1024, learning_rate=1e-2, logging_steps=1,
                report_to="none", use_cpu=True, bf16=False, save_strategy="no", dataloader_num_workers=0, shuffle_dataset=False, seed=0)
"""The settings every trainer test shares: one CPU group of three, no reports, no shuffling."""


def tiny_sdl_config(output_dir: Path | str, **fields):
    """An ``SDLConfig`` for a trainer test: ``TINY_RUN`` under the test's own ``fields``."""
    from genevolve_graph.training.trainer import SDLConfig

    return SDLConfig(output_dir=str(output_dir), **{**TINY_RUN, **fields})
