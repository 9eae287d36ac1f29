"""Supervised fine-tuning of the policy on exported or imported trajectories (TRL ``SFTTrainer``).

- Data: the records ``genevolve-graph export`` writes (``sft`` or ``trl`` JSONL, or the
  ``trl`` dataset folder) or a local copy of GenEvolve-Data-SFT; every record goes through
  the same validation as ``import-sft`` and bad ones are reported and skipped.
- Loss on the assistant turns only (``assistant_only_loss``): the chat template must mark
  them with ``{% generation %}``; TRL swaps in its training variant for the templates it
  knows (Qwen3, Qwen3-VL, Qwen2.5, ...). Otherwise pass a template with the markers.
- A VLM (a model whose config has a ``vision_config``) trains with its vision tower frozen;
  each listed image is placed in the ``<tool_response>`` turn of the ``image_search`` that
  returned it. A text-only model trains on the text, which names the images by ``IMG_###``.
- ``--model``: a local model folder or a hub id (``Qwen/Qwen3-VL-8B-Instruct``), loaded with
  ``from_pretrained`` as TRL's scripts do.
- Optional LoRA with TRL's ``ModelConfig`` flags (``--use_peft --lora_r 16 --lora_alpha 32
  --lora_target_modules q_proj v_proj``); bf16 when the accelerator supports it; every other
  ``SFTConfig`` field can be set (``--learning_rate 1e-5 --num_train_epochs 2 ...``).
- Optional held-out split (``eval_split``, see ``sft_eval``): held-out trajectory loss on the
  checkpoint schedule and the best checkpoint by ``eval_loss`` kept as the final model.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genevolve_graph.training.sft_data import LoadResult, SFTRecord, load_training_records, message_text

VISION_MODULE_NAMES = ("visual", "vision_tower", "vision_model", "vision_encoder", "image_encoder", "vision")
_IMG_LINE_RE = re.compile(r"^(IMG_\d{3,}):", re.M)


class SFTSetupError(ValueError):
    """Training cannot start as asked; the message names the input and the fix."""


@dataclass
class SFTOptions:
    data: Path
    model: Path | str
    """A local model folder or a hub id."""
    out: Path
    lora_r: int = 0
    """LoRA rank (0: full fine-tuning)."""
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    freeze_vision: bool = True
    config_args: list[str] = field(default_factory=list)
    """Further ``SFTConfig`` options as command-line arguments (``--learning_rate 1e-5``)."""
    eval_split: str | None = None
    """Held-out split: a fraction of the prompts of ``data`` (``"0.1"``) or a file/folder of records."""


# --------------------------------------------------------------------------- data


def _text_messages(record: SFTRecord) -> list[dict[str, Any]]:
    messages = []
    for message in record.chat():
        if not isinstance(message.get("content"), str):
            message["content"] = message_text(message.get("content"))
        messages.append(message)
    return messages


def vision_messages(record: SFTRecord) -> list[dict[str, Any]]:
    """Messages as content parts with an image placeholder for every listed image.

    The k-th listed image is the k-th ``IMG_###`` id an ``image_search`` returned, so its
    placeholder goes right after the text of that ``<tool_response>`` turn, where the policy
    first learns of it. When the ids cannot be matched to the list (other data), all images
    go before the request text, as TRL does by default.
    """
    messages = [{**m, "content": [{"type": "text", "text": message_text(m.get("content"))}]} for m in record.chat()]
    if not record.images:
        return messages
    ids = (record.meta or {}).get("image_ids") or []
    turn_of: dict[int, list[int]] = {}
    seen: list[str] = []
    for index, message in enumerate(messages):
        text = message["content"][0]["text"]
        if message["role"] in ("user", "tool") and "--- image search result for [" in text:
            for img_id in _IMG_LINE_RE.findall(text):
                if img_id not in seen:
                    seen.append(img_id)
                    turn_of.setdefault(index, []).append(len(seen) - 1)
    if (ids and ids != seen[: len(ids)]) or len(seen) != len(record.images):
        first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[first_user]["content"] = [{"type": "image"} for _ in record.images] + messages[first_user]["content"]
        return messages
    for index, positions in turn_of.items():
        messages[index]["content"] = messages[index]["content"] + [{"type": "image"} for _ in positions]
    return messages


def build_dataset(records: list[SFTRecord], *, vision: bool = False) -> Any:
    """A ``datasets.Dataset`` in TRL's conversational format."""
    from datasets import Dataset

    if not records:
        raise SFTSetupError("no valid training records; check the data with genevolve-graph import-sft --data PATH")
    if vision:
        columns: dict[str, list[Any]] = {"messages": [vision_messages(r) for r in records], "images": [list(r.images) for r in records]}
    else:
        columns = {"messages": [_text_messages(r) for r in records]}
    if any(r.tools for r in records):
        columns["tools"] = [json.dumps(r.tools, ensure_ascii=False) if r.tools else None for r in records]
    return Dataset.from_list([dict(zip(columns, row)) for row in zip(*columns.values())])


# --------------------------------------------------------------------------- model


def is_vision_model(config: Any) -> bool:
    return getattr(config, "vision_config", None) is not None


def freeze_vision_tower(model: Any) -> list[str]:
    """Freeze every vision-encoder submodule (``visual``, ``vision_tower``, ...). Returns their names."""
    frozen: list[str] = []
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in VISION_MODULE_NAMES and not any(name.startswith(f + ".") for f in frozen):
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            frozen.append(name)
    return frozen


def check_chat_template(processing_class: Any) -> str:
    """Which template will mark the assistant tokens; raises ``SFTSetupError`` when none can."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = getattr(processing_class, "chat_template", None)
    if not template:
        raise SFTSetupError(
            "the tokenizer has no chat template; pass one with {% generation %} markers: --chat_template_path FILE.jinja"
        )
    if has_generation_markers(template):
        return "the model's template (has {% generation %} markers)"
    try:
        get_training_chat_template(processing_class)
    except ValueError:
        raise SFTSetupError(
            "the model's chat template has no {% generation %} markers and TRL has no training variant of it, so the "
            "assistant tokens cannot be masked; pass a template with the markers (--chat_template_path FILE.jinja) "
            "or train on every token (--assistant_only_loss False)"
        ) from None
    return "TRL's training variant of the model's template"


def _bf16_available() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def make_sft_config(out: Path, config_args: list[str] | None = None, *, evaluate: bool = False) -> Any:
    """``SFTConfig`` with this project's defaults, overridden by ``config_args``."""
    return parse_sft_args(out, config_args, evaluate=evaluate)[0]


def parse_sft_args(out: Path, config_args: list[str] | None = None, *, evaluate: bool = False) -> tuple[Any, Any]:
    """``(SFTConfig, trl.ModelConfig)`` from this project's defaults and ``config_args``
    (any ``SFTConfig`` field, and TRL's LoRA flags ``--use_peft --lora_r ...``).

    ``evaluate``: a held-out set exists, so evaluate on the checkpoint schedule and load the
    checkpoint with the lowest ``eval_loss`` at the end (unless the user set otherwise).
    """
    from transformers import HfArgumentParser
    from trl import ModelConfig, SFTConfig

    class _Parser(HfArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise SFTSetupError(f"SFTConfig option: {message}")

    bf16 = _bf16_available()
    defaults: dict[str, Any] = {
        "output_dir": str(out),
        "assistant_only_loss": True,
        "max_length": 16384,
        "bf16": bf16,
        "report_to": "none",
        "logging_steps": 10,
        "save_strategy": "epoch",
    }
    argv: list[str] = []
    for key, value in defaults.items():
        argv += [f"--{key}", str(value)]
    if evaluate:
        from genevolve_graph.training.sft_eval import EvalSplitError, eval_defaults

        try:
            argv += eval_defaults(list(config_args or []), defaults["save_strategy"])
        except EvalSplitError as exc:
            raise SFTSetupError(str(exc)) from None
    argv += list(config_args or [])
    try:
        config, model_args, remaining = _Parser((SFTConfig, ModelConfig), allow_abbrev=False).parse_args_into_dataclasses(
            args=argv, return_remaining_strings=True
        )
    except (ValueError, TypeError) as exc:
        if isinstance(exc, SFTSetupError):
            raise
        raise SFTSetupError(f"SFTConfig: {exc}") from None
    if remaining:
        raise SFTSetupError(
            f"unknown SFTConfig option(s) {' '.join(remaining)}; any SFTConfig field is accepted as --field_name VALUE (e.g. --learning_rate 1e-5)"
        )
    from genevolve_graph.training.reporting import missing_reporter

    problem = missing_reporter(config.report_to)
    if problem:
        raise SFTSetupError(problem)
    strategy = getattr(config.eval_strategy, "value", config.eval_strategy)
    if not evaluate and strategy != "no":
        raise SFTSetupError(f"--eval_strategy {strategy} needs held-out data: add --eval-split 0.1 (or a file of held-out records)")
    lora_flags = [a for a in config_args or [] if a.startswith(("--lora_", "--lora-"))]
    if lora_flags and not model_args.use_peft:
        raise SFTSetupError(f"{lora_flags[0]} is set without --use_peft; add --use_peft to train a LoRA adapter (TRL's flags)")
    return config, model_args


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def model_reference(model: Path | str) -> str:
    """``--model`` as ``from_pretrained`` takes it: a local model folder, or a hub id.

    A path that exists must be a model folder (``config.json``); one that does not is read as a
    hub id when it looks like one (``org/name``), otherwise it is an error naming the input.
    """
    text = str(model)
    local = Path(text).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise SFTSetupError(f"{local} is not a model folder (no config.json) (--model); pass a Hugging Face model directory or a hub id")
        return str(local)
    if text.startswith((".", "/", "~")) or "\\" in text or not HUB_ID.match(text):
        raise SFTSetupError(f"{text} is not a model folder (it does not exist) nor a hub id like Qwen/Qwen3-VL-8B-Instruct (--model)")
    return text


def _load_error(model_ref: str, exc: Exception) -> SFTSetupError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    hint = " HF_HUB_OFFLINE is set, so only models already in the local cache load" if offline else ""
    return SFTSetupError(f"cannot load model {model_ref!r} (--model): {str(exc).splitlines()[0][:300]}.{hint}")


def build_trainer(
    records: list[SFTRecord],
    model_path: Path | str,
    out: Path | str,
    *,
    config_args: list[str] | None = None,
    lora_r: int = 0,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    lora_target_modules: str = "all-linear",
    freeze_vision: bool = True,
    eval_records: list[SFTRecord] | None = None,
) -> Any:
    """An ``SFTTrainer`` ready to ``train()``: model, tokenizer/processor, data, config.

    With ``eval_records`` the trainer logs ``eval_loss`` on them and keeps the best checkpoint.
    """
    from transformers import AutoConfig

    model_path = model_reference(model_path)
    config, model_args = parse_sft_args(Path(out), config_args, evaluate=bool(eval_records))
    try:
        model_config = AutoConfig.from_pretrained(model_path)
    except OSError as exc:
        raise _load_error(model_path, exc) from None
    vision = is_vision_model(model_config)
    dtype = "bfloat16" if config.bf16 else "float32"
    if vision:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=dtype)
        processing_class = AutoProcessor.from_pretrained(model_path)
        if freeze_vision:
            freeze_vision_tower(model)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
        processing_class = AutoTokenizer.from_pretrained(model_path)
    if config.assistant_only_loss and not config.chat_template_path:
        check_chat_template(processing_class)
    peft_config = None
    if model_args.use_peft:
        from trl import get_peft_config

        if model_args.lora_target_modules is None:
            model_args.lora_target_modules = "all-linear"  # this project's default: every linear layer
        peft_config = get_peft_config(model_args)
    elif lora_r > 0:  # the Python API's own arguments (the command line uses TRL's flags)
        from peft import LoraConfig

        targets: str | list[str] = lora_target_modules if lora_target_modules == "all-linear" else [t.strip() for t in lora_target_modules.split(",") if t.strip()]
        peft_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=targets, task_type="CAUSAL_LM")
    if peft_config is not None:
        if vision and freeze_vision:
            peft_config.exclude_modules = r".*(" + "|".join(VISION_MODULE_NAMES) + r").*"
    dataset = build_dataset(records, vision=vision)
    eval_dataset = build_dataset(eval_records, vision=vision) if eval_records else None
    from trl import SFTTrainer

    return SFTTrainer(model=model, args=config, train_dataset=dataset, eval_dataset=eval_dataset, processing_class=processing_class, peft_config=peft_config)


def train_sft(options: SFTOptions) -> tuple[Any, LoadResult]:
    """Load, validate, train and save. Returns (trainer, load report)."""
    records, loaded = load_training_records(options.data)
    eval_records = None
    if options.eval_split is not None:
        from genevolve_graph.training.sft_eval import EvalSplitError, resolve_eval_split

        try:
            split = resolve_eval_split(options.eval_split, records, options.data)
        except EvalSplitError as exc:
            raise SFTSetupError(str(exc)) from None
        records, eval_records = split.train, split.eval
        loaded.problems.extend((f"--eval-split {where}", problem) for where, problem in split.problems)
    trainer = build_trainer(
        records,
        options.model,
        options.out,
        config_args=options.config_args,
        lora_r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        lora_target_modules=options.lora_target_modules,
        freeze_vision=options.freeze_vision,
        eval_records=eval_records,
    )
    from genevolve_graph.training.checkpoints import CheckpointError, resolve_checkpoint

    try:  # TRL's --resume_from_checkpoint: a checkpoint folder, or true/last for the newest in --out
        checkpoint = resolve_checkpoint(trainer.args.resume_from_checkpoint, trainer.args.output_dir)
    except CheckpointError as exc:
        raise SFTSetupError(str(exc)) from None
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(options.out))
    processing_class = trainer.processing_class
    if processing_class is not None:
        processing_class.save_pretrained(str(options.out))
    return trainer, loaded
