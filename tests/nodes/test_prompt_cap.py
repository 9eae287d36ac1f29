"""An overlong gen_prompt is cut at a word boundary to ``max_prompt_chars`` (default 4,000)
and the cut is a recorded repair, in the emitter and through a whole served trajectory."""

from __future__ import annotations

from genevolve_graph import AgentContext
from genevolve_graph.nodes.emitter import emit_program
from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.agent.runner import run_with_saver

from tests.scripts import answer

LONG = " ".join(f"word{i}" for i in range(3000))  # about 23,000 characters


def test_default_cap_is_4000_characters_and_recorded():
    assert AgentContext().max_prompt_chars == 4000
    program, repairs, error = emit_program({"gen_prompt": LONG, "reference_images": []}, [], 2)
    assert not error and program is not None
    assert len(program.gen_prompt) <= 4000 and LONG.startswith(program.gen_prompt)
    assert program.gen_prompt.split()[-1] == LONG.split()[len(program.gen_prompt.split()) - 1]  # whole words only
    assert any(r.startswith(f"cut gen_prompt from {len(LONG)} to {len(program.gen_prompt)} characters") for r in repairs)


def test_short_prompts_are_untouched():
    program, repairs, _ = emit_program({"gen_prompt": "A red fox in snow.", "reference_images": []}, [], 2)
    assert program.gen_prompt == "A red fox in snow." and repairs == []


def test_one_giant_word_is_cut_inside_it():
    program, repairs, _ = emit_program({"gen_prompt": "x" * 50, "reference_images": []}, [], 2, max_prompt_chars=10)
    assert program.gen_prompt == "x" * 10 and repairs


async def test_the_cap_is_a_context_field_of_a_served_run(scripted_server, tmp_path):
    server = scripted_server({"fox": [answer(LONG)]})
    ctx = AgentContext(policy="openai", base_url=server.base_url, model="m", renderer="none", output_dir=str(tmp_path),
                       max_prompt_chars=120, retry_initial_delay=0.01)
    async with open_checkpointer("memory") as saver:
        result = await run_with_saver("a fox", ctx, saver, thread_id="t-1")
    assert result.termination == "answer"
    assert len(result.program.gen_prompt) <= 120
    assert any("cut gen_prompt" in r and "the limit is 120" in r for r in result.repairs)
