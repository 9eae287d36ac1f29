"""Colocated vLLM on CPU (issue 23 items 1 and 3): TRL's real ``VLLMGeneration`` runs unchanged
over a recording stand-in of ``vllm.LLM`` (``genevolve_graph.testing.recording_vllm``) that
implements exactly what TRL 1.16 calls: ``generate`` with ``multi_modal_data``, ``sleep(level)``,
``wake_up(tags)``, ``load_weights`` through the driver worker, ``reset_prefix_cache``. The real
engine runs in ``benchmarks/gpu_check.sh`` on a machine with vLLM."""

from __future__ import annotations

import base64
import io
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from genevolve_graph.testing import recording_vllm
from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator
from genevolve_graph.testing.tiny_models import build_tiny_causal_lm
from genevolve_graph.training.generation import CompletionsGenerator
from genevolve_graph.training.generation.colocate import ColocatedVLLMGenerator
from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt

from .helpers import DATA, FOX, TOWER, fox_good, fox_poor, fox_skill, make_context, tiny_sdl_config, tower_replies


def _user_image(colour=(20, 120, 220), size=(40, 24)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def processor():
    from genevolve_graph.testing.tiny_vlm import build_tiny_vlm_processor

    return build_tiny_vlm_processor()


def test_colocated_vllm_receives_the_images_of_a_vision_rollout(tmp_path, processor, monkeypatch):
    """Item 1: before the fix the colocated backend refused images, so the turn failed and the
    rollout was dropped as an infrastructure failure. Now every turn reaches ``LLM.generate``
    with its images as ``multi_modal_data`` in TRL's layout (one image bare, several as a list)."""
    from PIL import Image

    script = ScriptedPolicyScript(processor.tokenizer, {"red fox": [fox_good()]})
    engine_cls = recording_vllm.install(monkeypatch, script, multimodal=True)
    engine = engine_cls()
    generator = ColocatedVLLMGenerator(SimpleNamespace(tensor_parallel_size=1, enable_sleep_mode=False, llm=engine))
    ctx = make_context(tmp_path, options={"show_images": True, "thumbnail_max_side": 40})
    rollout = GenEvolveRollout(ctx, generator=generator)
    try:
        (result,) = rollout.run([FOX], tokenizer=processor, generator=generator, max_completion_length=2048, images=[[_user_image()]])
    finally:
        rollout.close()
    assert not result.failed and result.termination == "answer", result.error
    generates = [c for c in engine.calls if c.name == "generate"]
    assert len(generates) == 3
    prompts = [c.args["prompts"][0] for c in generates]
    first, last = prompts[0]["multi_modal_data"]["image"], prompts[2]["multi_modal_data"]["image"]
    assert isinstance(first, Image.Image) and first.size == (40, 24)  # the request image, bare
    assert isinstance(last, list) and len(last) == 2 and all(isinstance(i, Image.Image) for i in last)  # + the thumbnail
    assert [p["prompt_token_ids"] for p in prompts] == [list(p) for p in prompts_of(result, 3)]


def prompts_of(result, turns: int) -> list[list[int]]:
    """The token prompt of each turn, cut from the rollout's flat sequence at its policy turns."""
    ids = result.prompt_ids + result.completion_ids
    mask = [0] * len(result.prompt_ids) + result.env_mask
    starts = [i for i in range(1, len(mask)) if mask[i] == 1 and mask[i - 1] == 0]
    return [ids[:s] for s in starts][:turns]


def _check_trainer(processing_class, *, use_vllm: bool, mode: str = "server", multimodal: bool = True, dataset=()) -> SimpleNamespace:
    engine = SimpleNamespace(llm_engine=SimpleNamespace(model_config=SimpleNamespace(is_multimodal_model=multimodal)))
    args = SimpleNamespace(temperature=1.0, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0, generation_kwargs=None,
                           vllm_mode=mode, vllm_server_base_url="http://127.0.0.1:9", vllm_server_host="127.0.0.1", vllm_server_port=9)
    return SimpleNamespace(args=args, use_vllm=use_vllm, model=object(), processing_class=processing_class, train_dataset=list(dataset),
                           vllm_generation=SimpleNamespace(tensor_parallel_size=1, enable_sleep_mode=False, llm=engine))


def test_a_backend_that_cannot_take_images_is_refused_at_start_up(tmp_path, processor, tiny_tokenizer):
    """Item 1: the check runs once, before training, with one line naming the fix."""
    shows = make_context(tmp_path / "a", options={"show_images": True})
    with pytest.raises(ValueError, match=r"vLLM server \(/v1/completions\) generation backend cannot take images: roll out with vllm_mode: colocate"):
        GenEvolveRollout(shows).check_backend(_check_trainer(processor, use_vllm=True))
    with pytest.raises(ValueError, match="the colocated vLLM engine loaded a text-only model"):
        GenEvolveRollout(shows).check_backend(_check_trainer(processor, use_vllm=True, mode="colocate", multimodal=False))
    GenEvolveRollout(shows).check_backend(_check_trainer(processor, use_vllm=True, mode="colocate"))  # a VLM engine: accepted
    GenEvolveRollout(shows).check_backend(_check_trainer(processor, use_vllm=False))  # the trainer's own VLM: accepted
    # request images in the data, show_images off: also refused on the server backend
    plain = make_context(tmp_path / "b")
    rows = [{"prompt": request_prompt(FOX, plain, [_user_image()])}]
    with pytest.raises(ValueError, match=r"\(the data rows hold request_images\)"):
        GenEvolveRollout(plain).check_backend(_check_trainer(processor, use_vllm=True, dataset=rows))
    GenEvolveRollout(plain).check_backend(_check_trainer(processor, use_vllm=True, dataset=[{"prompt": request_prompt(FOX, plain)}]))
    assert CompletionsGenerator("http://127.0.0.1:9").accepts_images() is False


def test_a_text_policy_with_image_observations_fails_when_the_trainer_is_built(tmp_path, tiny_tokenizer):
    """Item 1: before the fix the refusal came from the first rollout, inside ``train()``."""
    from genevolve_graph.training.trainer import SDLConfig, SDLGRPOTrainer

    ctx = make_context(tmp_path / "agent", options={"show_images": True})
    script = ScriptedPolicyScript(tiny_tokenizer, {"red fox": [fox_good()]})
    args = SDLConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, num_generations=2, max_steps=1, report_to="none",
                     use_cpu=True, bf16=False, save_strategy="no", sdl_coef=0.0)
    rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(script))
    with pytest.raises(ValueError, match=r"show images \(show_images is on\) but the trainer's processing class is a text tokenizer"):
        SDLGRPOTrainer(model=build_tiny_causal_lm(tiny_tokenizer), reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                       args=args, train_dataset=Dataset.from_list([{"prompt": request_prompt(FOX, ctx)}]), processing_class=tiny_tokenizer,
                       rollout_func=rollout)


def test_sleep_mode_keeps_trl_bookkeeping_so_evaluation_never_samples_discarded_weights(tmp_path, tiny_tokenizer, tiny_embedder, monkeypatch):
    """Item 3: colocate + ``vllm_enable_sleep_mode`` + the held-out KScore evaluation after a step.

    TRL's own ``VLLMGeneration`` runs over the recording engine. Before the fix the rollout's
    ``end()`` slept at level 2 (weights discarded) without telling TRL, and the evaluation then
    sampled after a bare ``wake_up(kv_cache)``: from no weights at all. Now every ``generate``
    runs on the current training weights, loaded after the last level-2 sleep.
    """
    from genevolve_graph.evaluation.judge_client import JudgeClient
    from genevolve_graph.experience.buffer import ExperienceBuffer
    from genevolve_graph.experience.embedders import SentenceEmbedder
    from genevolve_graph.generators.preview import PreviewRenderer
    from genevolve_graph.training.evaluation import KScoreEvalCallback
    from genevolve_graph.training.rewards import GenEvolveRewards
    from genevolve_graph.training.trainer import SDLGRPOTrainer

    from .judges import JudgeScript, judge_server

    ctx = make_context(tmp_path / "agent")
    gt = str(DATA / "images" / "cat.png")
    script = ScriptedPolicyScript(tiny_tokenizer, {"red fox": [fox_good(), fox_poor(), fox_skill()], "Eiffel": tower_replies()})
    engine_cls = recording_vllm.install(monkeypatch, script)
    model = build_tiny_causal_lm(tiny_tokenizer)
    model.save_pretrained(tmp_path / "policy")
    tiny_tokenizer.save_pretrained(tmp_path / "policy")
    judge = JudgeScript()
    with judge_server(judge) as server:
        client = JudgeClient(server.base_url, "scripted-judge", max_retries=0)
        rewards = GenEvolveRewards(renderer=PreviewRenderer(), image_judge=client, text_judge=client, image_dir=tmp_path / "renders")
        args = tiny_sdl_config(
            tmp_path / "out", max_steps=1, reward_weights=[0.5, 0.5], sdl_coef=0.0,
            use_vllm=True, vllm_mode="colocate", vllm_enable_sleep_mode=True,
            vllm_importance_sampling_correction=False,  # the scripted log-probs are not the tiny model's: keep every row in the loss
        )
        rollout = GenEvolveRollout(ctx)  # the backend comes from the trainer: ColocatedVLLMGenerator over TRL's engine
        held_out = Dataset.from_list([{"prompt": request_prompt(TOWER, ctx), "gt_image": gt}])
        callback = KScoreEvalCallback(held_out, rollout=rollout, rewards=rewards, every=1)
        trainer = SDLGRPOTrainer(model=str(tmp_path / "policy"), reward_funcs=rewards.reward_funcs(), args=args,
                                 train_dataset=Dataset.from_list([{"prompt": request_prompt(FOX, ctx), "gt_image": gt}]),
                                 processing_class=tiny_tokenizer, rollout_func=rollout,
                                 experience_buffer=ExperienceBuffer(SentenceEmbedder(tiny_embedder, name="tiny")), callbacks=[callback])
        callback.bind(trainer)
        try:
            trainer.train()
        finally:
            rollout.close()
    (engine,) = engine_cls.instances
    assert engine.init_kwargs["enable_sleep_mode"] is True
    names = engine.names()
    assert names[0] == "sleep"  # TRL puts the new engine to sleep at once
    generates = [c for c in engine.calls if c.name == "generate"]
    tower_ids = tiny_tokenizer.encode("Eiffel", add_special_tokens=False)
    is_eval = [tiny_tokenizer.decode(c.args["prompts"][0]["prompt_token_ids"]).count("Eiffel") > 0 for c in generates]
    assert any(is_eval) and not is_eval[0] and tower_ids
    final = {n: p.detach() for n, p in trainer.model.named_parameters()}
    for index, call in enumerate(engine.calls):
        if call.name != "generate":
            continue
        before = names[:index]
        last_sleep = len(before) - 1 - before[::-1].index("sleep")
        since = before[last_sleep + 1 :]
        # after the last level-2 sleep: weights woken, loaded, prefix cache reset, KV cache woken
        assert since[:1] == ["wake_up"] and "load_weights" in since and "reset_prefix_cache" in since, since
        assert call.args["awake"] == {"weights": True, "kv_cache": True}
        assert call.args["weights"], "sampled from discarded weights"
    eval_call = generates[is_eval.index(True)]
    assert trainer.state.global_step == 1
    assert all(torch.equal(eval_call.args["weights"][n], final[n]) for n in eval_call.args["weights"] if n in final)
    assert any(not torch.equal(generates[0].args["weights"][n], final[n]) for n in final if n in generates[0].args["weights"])
    assert names[-1] == "sleep" and trainer.vllm_generation._llm_weights_sleeping is True
    assert [rec["eval/kscore_rollouts"] for rec in trainer.state.log_history if "eval/kscore_rollouts" in rec] == [1.0]
