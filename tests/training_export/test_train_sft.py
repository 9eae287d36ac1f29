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
from genevolve_graph.agent.runner import run_with_saver
from genevolve_graph.training.export import export_threads
from genevolve_graph.cli.export import register
from genevolve_graph.training.sft import SFTSetupError, build_trainer, freeze_vision_tower, make_sft_config, vision_messages
from genevolve_graph.training.sft_data import load_training_records
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


def test_held_out_split_logs_eval_loss_and_keeps_the_best_checkpoint(data_dir, model_dir, workspace):
    """--eval-split 0.5: one prompt trains, the other is held out; eval_loss is logged at every
    checkpoint and the model saved to --out holds the weights of the checkpoint with the lowest one."""
    from safetensors.torch import load_file

    app = typer.Typer()
    register(app)
    out = workspace / "eval-out"
    args = [a for a in FAST if a not in ("--save_strategy", "no")] + [
        "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "1", "--learning_rate", "0.3",
        "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--per_device_train_batch_size", "1", "--per_device_eval_batch_size", "1",
    ]
    result = CliRunner().invoke(app, ["train", "sft", "--data", str(data_dir), "--model", str(model_dir), "--out", str(out), "--eval-split", "0.5", *args])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.rindex('{"records"'):])  # after the progress bars
    assert summary["train_records"] == 1 and summary["eval_records"] == 1 and summary["steps"] == 4
    history = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    eval_losses = {entry["step"]: entry["eval_loss"] for entry in history if "eval_loss" in entry}
    assert sorted(eval_losses) == [1, 2, 3, 4]
    best_step = min(eval_losses, key=eval_losses.get)
    assert summary["best_eval_loss"] == pytest.approx(eval_losses[best_step])
    assert summary["best_checkpoint"] == str(out / f"checkpoint-{best_step}")
    assert summary["last_eval_loss"] == pytest.approx(eval_losses[4])
    saved = load_file(out / "model.safetensors")
    best = load_file(out / f"checkpoint-{best_step}" / "model.safetensors")
    assert saved.keys() == best.keys() and all(torch.equal(saved[k], best[k]) for k in saved)
    if best_step != 4:  # at this learning rate the run usually diverges: then the kept model is not the last one
        last = load_file(out / "checkpoint-4" / "model.safetensors")
        assert any(not torch.equal(saved[k], last[k]) for k in saved)


def test_held_out_split_from_a_file_and_its_errors(data_dir, model_dir, workspace):
    from genevolve_graph.training.sft import SFTOptions, train_sft
    from genevolve_graph.training.sft_eval import EvalSplitError, eval_defaults, resolve_eval_split, split_by_prompt

    records, _ = load_training_records(data_dir)
    held_file = workspace / "held" / "held.jsonl"
    held_file.parent.mkdir(exist_ok=True)
    with JsonlWriter(held_file) as writer:  # the text-only trajectory, with one broken record beside it
        writer.write(next(r for r in records if not r.images).to_json())
        writer.write({"messages": [{"role": "user", "content": "no answer"}]})
    options = SFTOptions(data=data_dir, model=model_dir, out=workspace / "file-eval", eval_split=str(held_file),
                         config_args=FAST + ["--save_strategy", "steps", "--save_steps", "1", "--max_steps", "2"])
    trainer, loaded = train_sft(options)
    assert len(trainer.train_dataset) == 2 and len(trainer.eval_dataset) == 1
    assert trainer.args.load_best_model_at_end and trainer.args.metric_for_best_model == "eval_loss" and not trainer.args.greater_is_better
    assert [e["step"] for e in trainer.state.log_history if "eval_loss" in e] == [1, 2]
    assert trainer.state.best_model_checkpoint is not None
    assert any(where.startswith("--eval-split held.jsonl") for where, _ in loaded.problems)
    # Trajectories of one prompt never straddle the split.
    doubled = records + [r.model_copy() for r in records]
    train, held = split_by_prompt(doubled, 0.5)
    assert len(train) == len(held) == 2 and {m.text() for r in train for m in r.messages[1:2]}.isdisjoint({m.text() for r in held for m in r.messages[1:2]})
    with pytest.raises(EvalSplitError, match="strictly between 0 and 1"):
        resolve_eval_split("1.5", records, data_dir)
    with pytest.raises(EvalSplitError, match="does not exist"):
        resolve_eval_split(str(workspace / "missing.jsonl"), records, data_dir)
    with pytest.raises(EvalSplitError, match="is the training data itself"):
        resolve_eval_split(str(data_dir), records, data_dir)
    with pytest.raises(EvalSplitError, match="needs at least 2"):
        split_by_prompt(records[:1], 0.2)
    with pytest.raises(EvalSplitError, match="drop --save_strategy no"):
        eval_defaults(["--save_strategy", "no"], "epoch")
    assert "--eval_strategy" not in eval_defaults(["--save_strategy", "no", "--load_best_model_at_end", "False", "--eval_strategy", "steps"], "epoch")
    assert eval_defaults(["--save_strategy=steps", "--save_steps", "50"], "epoch")[-4:] == ["--eval_strategy", "steps", "--eval_steps", "50"]
    with pytest.raises(SFTSetupError, match="needs held-out data"):
        make_sft_config(workspace / "x", ["--eval_strategy", "steps"])
    app = typer.Typer()
    register(app)
    bad = CliRunner().invoke(app, ["train", "sft", "--data", str(data_dir), "--model", str(model_dir), "--out", str(workspace / "y"), "--eval-split", "0"])
    assert bad.exit_code == 2 and "strictly between 0 and 1" in bad.output


def test_train_sft_resumes_from_a_checkpoint(data_dir, model_dir, workspace):
    """Issue 23 item 2: ``train sft --resume_from_checkpoint`` continues at the checkpoint's step
    (TRL's resume: optimizer, scheduler, RNG) instead of training from step 0; a wrong path is one line."""
    app = typer.Typer()
    register(app)
    out = workspace / "resume-out"
    pairs = dict(zip(FAST[::2], FAST[1::2], strict=True))
    pairs.pop("--max_steps")
    pairs["--save_strategy"] = "steps"
    args = [x for pair in pairs.items() for x in pair] + ["--save_steps", "1"]
    base = ["train", "sft", "--data", str(data_dir), "--model", str(model_dir), "--out", str(out), *args]
    first = CliRunner().invoke(app, [*base, "--max_steps", "1"])
    assert first.exit_code == 0, first.output
    resumed = CliRunner().invoke(app, [*base, "--max_steps", "2", "--resume_from_checkpoint", str(out / "checkpoint-1")])
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.output[resumed.output.rindex('{"records"'):])
    assert summary["steps"] == 2
    history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    assert [e["step"] for e in history if "loss" in e] == [1, 2]
    assert resumed.output.count("'loss': ") == 1  # only step 2 ran in the resumed process
    last = CliRunner().invoke(app, [*base, "--max_steps", "2", "--resume_from_checkpoint", "last"])
    assert last.exit_code == 0 and json.loads(last.output[last.output.rindex('{"records"'):])["steps"] == 2
    assert last.output.count("'loss': ") == 0  # checkpoint-2 is already at max_steps
    bad = CliRunner().invoke(app, [*base, "--resume_from_checkpoint", str(out / "checkpoint-9")])
    assert bad.exit_code == 2 and "checkpoint-9: no such folder" in bad.output
    wandb = CliRunner().invoke(app, [*base, "--report_to", "wandb"])  # issue 23 item 7: one line, before any model loads
    assert wandb.exit_code == 2 and "report_to: wandb needs the wandb package" in wandb.output
