"""``train sft``: real TRL SFTTrainer steps on exported trajectories with a tiny local Qwen3.

Checks that only the assistant turns carry loss (the labels the collator hands the model
are exactly the assistant turns as the Qwen3 training template renders them), that the model
learns them (it overfits one fixed batch), and the command end to end (LoRA included) with
its errors.

The learning checks ask for behaviour, not a library's numerics: training runs until the loss
falls below half of where it started, inside a step budget several times what it needs, so a
change in transformers' or torch's kernels cannot cross the bound the way "under 75% after six
steps" did.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.runner import run_with_saver
from genevolve_graph.training.export import export_threads
from genevolve_graph.training.export_commands import register
from genevolve_graph.training.sft import SFTSetupError, build_trainer, freeze_vision_tower, load_training_records, make_sft_config, vision_messages
from genevolve_graph.training.sft_data import JsonlWriter, SFTRecord

from ..scripts import answer, tool
from .tiny import save_tiny_llava, save_tiny_model

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

SCRIPTS = {
    "a red fox in snow": [tool("image_search", "Find a fox.", query="red fox", top_k=2), answer("A red fox in snow, fur as in the first reference image.", [("IMG_001", "fur colour")])],
    "a lighthouse at dusk": [tool("search", "Check the light.", queries=["lighthouse"]), answer("A white lighthouse at dusk, beam on.")],
}
FAST = ["--max_steps", "1", "--per_device_train_batch_size", "2", "--logging_steps", "1", "--save_strategy", "no", "--use_cpu", "True",
        "--bf16", "False", "--activation_checkpointing", "False", "--dataloader_num_workers", "0", "--max_length", "2048", "--seed", "0"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sft")


@pytest.fixture(scope="module")
def data_dir(workspace) -> Path:
    """Two short recorded trajectories (a short system prompt keeps them ~1k tokens), exported as SFT records."""
    import asyncio

    from genevolve_graph import AgentContext
    from genevolve_graph.testing.scripted_openai import ScriptedChatServer

    prompt_file = workspace / "system.txt"
    prompt_file.write_text("Plan an image in rounds: <think>, then one <tool_call> or the <answer>.\n{tools}")
    data = workspace / "data"

    async def go(server) -> None:
        ctx = AgentContext(policy="openai", base_url=server.base_url, model="m", renderer="none", request_timeout=5.0,
                           system_prompt_file=str(prompt_file), output_dir=str(workspace / "renders"))
        async with open_checkpointer("memory") as saver:
            for i, request in enumerate(SCRIPTS):
                await run_with_saver(request, ctx, saver, thread_id=f"t{i}")
            with JsonlWriter(data / "sft.jsonl") as writer:
                for record in export_threads(saver, images_dir=data / "images"):
                    writer.write(record.to_json())

    with ScriptedChatServer(SCRIPTS) as server:
        asyncio.run(go(server))
    return data


@pytest.fixture(scope="module")
def model_dir(workspace, data_dir) -> Path:
    records, _ = load_training_records(data_dir)
    corpus = [m.text() for r in records for m in r.messages] * 2
    return save_tiny_model(workspace / "tiny-qwen3", corpus, vocab_size=1024)


def expected_assistant_spans(record: SFTRecord) -> list[str]:
    """Each assistant turn as Qwen3's training template writes it inside {% generation %}."""
    spans = []
    for message in record.messages:
        if message.role != "assistant":
            continue
        content = message.text()
        reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
        body = content.split("</think>")[-1].lstrip("\n")
        spans.append("<think>\n" + reasoning.strip("\n") + "\n</think>\n\n" + body + "<|im_end|>\n")
    return spans


class StopBelow:
    """A TrainerCallback that ends training once a logged loss falls below ``fraction`` of the first.

    Overfitting one fixed batch drives the loss far below its start; the bound is far from the
    start and the step budget (``max_steps``) leaves a wide margin, so only a model that does not
    learn its labelled tokens fails.
    """

    def __init__(self, fraction: float) -> None:
        from transformers import TrainerCallback

        self.fraction = fraction
        self.losses: list[float] = []
        outer = self

        class _Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    outer.losses.append(float(logs["loss"]))
                    if outer.reached:
                        control.should_training_stop = True

        self.callback = _Callback()

    @property
    def reached(self) -> bool:
        return len(self.losses) > 1 and self.losses[-1] < self.fraction * self.losses[0]


LEARN = ["--learning_rate", "1e-2", "--lr_scheduler_type", "constant", "--warmup_steps", "0"]
STEP_BUDGET = 40  # the tiny models get below half their first loss in about ten steps


def labelled_runs(labels: list[int], input_ids: list[int]) -> list[list[int]]:
    runs, current = [], []
    for label, token in zip(labels, input_ids):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def test_only_assistant_tokens_carry_loss_and_the_loss_falls(data_dir, model_dir, workspace):
    torch.set_num_threads(2)
    records, loaded = load_training_records(data_dir)
    assert len(records) == 2 and loaded.problems == []
    args = FAST + ["--max_steps", str(STEP_BUDGET), *LEARN]
    trainer = build_trainer(records, model_dir, workspace / "run", config_args=args)
    assert trainer.args.assistant_only_loss and trainer.chat_template is not None  # TRL's Qwen3 training template
    tokenizer = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for row, record in enumerate(records):
        input_ids = batch["input_ids"][row].tolist()
        labels = batch["labels"][row].tolist()
        decoded = [tokenizer.decode(run) for run in labelled_runs(labels, input_ids)]
        assert decoded == expected_assistant_spans(record)
        everything = tokenizer.decode([t for t, m in zip(input_ids, batch["attention_mask"][row].tolist()) if m])
        # The system prompt, the request and the tool responses are in the input but carry no loss.
        assert "<tool_response>" in everything and "<tool_response>" not in "".join(decoded)
        assert record.messages[1].text() in everything and record.messages[1].text() not in "".join(decoded)
    stop = StopBelow(0.5)
    trainer.add_callback(stop.callback)
    trainer.train()
    assert stop.reached, stop.losses  # the assistant turns of one fixed batch were learned
    assert trainer.state.global_step < STEP_BUDGET


def test_train_sft_command_with_lora_and_errors(data_dir, model_dir, workspace):
    app = typer.Typer()
    register(app)

    def invoke(*args):
        return CliRunner().invoke(app, ["train", "sft", *[str(a) for a in args]])

    out = workspace / "lora-out"
    result = invoke("--data", data_dir, "--model", model_dir, "--out", out, "--use_peft", "--lora_r", "4", "--lora_alpha", "8", *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["records"] == 2 and summary["steps"] == 1 and summary["first_loss"] is not None
    assert (out / "adapter_config.json").is_file() and (out / "tokenizer_config.json").is_file()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    kinds = {name.rsplit(".", 1)[-1] for name in adapter["target_modules"]}  # all-linear, expanded by PEFT
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    no_peft = invoke("--data", data_dir, "--model", model_dir, "--out", out, "--lora_r", "4")
    assert no_peft.exit_code == 2 and "--lora_r is set without --use_peft" in no_peft.output
    unknown = invoke("--data", data_dir, "--model", model_dir, "--out", out, "--learning_rat", "1")
    assert unknown.exit_code == 2 and "unknown SFTConfig option(s) --learning_rat 1;" in unknown.output
    no_model = invoke("--data", data_dir, "--model", workspace / "nothing", "--out", out)
    assert no_model.exit_code == 2 and "is not a model folder" in no_model.output
    # a hub id goes to from_pretrained as it is (offline here, so it is not found in the cache)
    hub = invoke("--data", data_dir, "--model", "genevolve-test/no-such-model", "--out", out)
    assert hub.exit_code == 2 and "cannot load model 'genevolve-test/no-such-model' (--model)" in hub.output
    assert "HF_HUB_OFFLINE is set" in hub.output
    no_data = invoke("--data", workspace / "nope", "--model", model_dir, "--out", out)
    assert no_data.exit_code == 2 and "does not exist" in no_data.output


def test_a_template_without_generation_markers_is_refused(model_dir, workspace):
    from transformers import AutoTokenizer

    from genevolve_graph.training.sft import check_chat_template

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert "training variant" in check_chat_template(tokenizer)
    tokenizer.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    with pytest.raises(SFTSetupError, match="no {% generation %} markers"):
        check_chat_template(tokenizer)
    config = make_sft_config(workspace / "x", ["--learning_rate", "1e-5", "--num_train_epochs", "2"])
    assert config.learning_rate == 1e-5 and config.num_train_epochs == 2 and config.assistant_only_loss and config.report_to == []


def test_vision_placement_and_frozen_tower(data_dir):
    records, _ = load_training_records(data_dir)
    fox = next(r for r in records if r.images)
    messages = vision_messages(fox)
    images_at = [i for i, m in enumerate(messages) for part in m["content"] if part["type"] == "image"]
    # The image sits in the <tool_response> turn of the image_search that returned it.
    assert len(images_at) == len(fox.images) == len(fox.meta["image_ids"]) >= 1
    assert all("--- image search result for [red fox]" in messages[i]["content"][0]["text"] for i in images_at)
    assert messages[images_at[0]]["role"] == "user" and messages[images_at[0]]["content"][-1] == {"type": "image"}
    # Without matching ids (other data), all images go before the request, as TRL places them.
    other = fox.model_copy(update={"meta": None, "images": fox.images + fox.images})
    first_user = next(m for m in vision_messages(other) if m["role"] == "user")
    assert [p["type"] for p in first_user["content"]] == ["image"] * len(other.images) + ["text"]
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    config = Qwen3VLConfig(
        text_config=dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=8, rope_scaling={"rope_type": "default", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=16, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2, deepstack_visual_indexes=[0]),
    )
    model = Qwen3VLForConditionalGeneration(config)
    assert freeze_vision_tower(model) == ["model.visual"]
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("model.visual.") for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("model.language_model."))


def test_vlm_trains_with_images_in_their_turns_and_the_vision_tower_frozen(data_dir, workspace):
    records, _ = load_training_records(data_dir)
    model_dir = save_tiny_llava(workspace / "tiny-llava", [m.text() for r in records for m in r.messages] * 2)
    args = FAST + ["--max_steps", str(STEP_BUDGET), *LEARN, "--max_length", "4096"]
    trainer = build_trainer(records, model_dir, workspace / "vlm-run", config_args=args)
    tokenizer = trainer.processing_class.tokenizer
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    n_images = sum(len(r.images) for r in records)
    assert n_images >= 1 and batch["pixel_values"].shape[0] == n_images
    assert int((batch["input_ids"] == image_token).sum()) == n_images * 17  # 16 patches + CLS each
    for row, record in enumerate(records):
        ids = batch["input_ids"][row].tolist()
        labels = batch["labels"][row].tolist()
        assert [tokenizer.decode(run) for run in labelled_runs(labels, ids)] == [m.text() + "<|im_end|>\n" for m in record.messages if m.role == "assistant"]
        if record.images:  # right after the image search observation that returned them, in the same user turn
            text = tokenizer.decode(ids)
            assert "--- end of image search result ---\n</tool_response>" + "<image>" * 17 * len(record.images) + "<|im_end|>" in text
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    stop = StopBelow(0.5)
    trainer.add_callback(stop.callback)
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and not any("vision_tower" in n for n in changed)
    assert any(n.startswith("model.language_model.") for n in changed) and any("multi_modal_projector" in n for n in changed)
    assert stop.reached and trainer.state.global_step < STEP_BUDGET, stop.losses
