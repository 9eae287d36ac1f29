"""``train grpo`` arguments in TRL's configuration style.

One flat YAML file, read by ``trl.TrlParser`` into three dataclasses, exactly as TRL's own
scripts do (``trl grpo --config recipe.yaml``):

* :class:`~genevolve_graph.training.trainer.SDLConfig`: every ``GRPOConfig`` field plus the SDL
  options (``sdl_coef``, ``gate``, ``delta_min``, ...);
* ``trl.ModelConfig``: the policy (``model_name_or_path``, ``dtype``, ``attn_implementation``) and
  LoRA the TRL way (``use_peft``, ``lora_r``, ``lora_alpha``, ``lora_target_modules``, ...);
* :class:`GenEvolveArguments`: what only this project has: the RL data, the agent settings, the
  renderer, the judges, the rollout concurrency and the optional KScore evaluation.

Any field can be overridden on the command line (``--learning_rate 1e-6 --sdl_coef 0.2``); an
``env:`` mapping in the file sets environment variables, as in TRL. Relative paths *in the file*
are relative to the file's folder (so a config works from any working directory); paths given on
the command line are relative to the working directory, as usual.

The nested layout of earlier releases (``model:``, ``data:``, ``judges:``, ``sdl:``, ``grpo:``
sections) is still read, with a deprecation note: :func:`nested_to_flat` converts it, and
``train grpo --dump-config`` prints the flat equivalent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genevolve_graph.training.config import ConfigError, TrainConfig, read_config_file, validate_config

NESTED_SECTIONS = ("model", "data", "agent", "renderer", "judges", "sdl", "rollout", "grpo")
"""Top-level keys of the deprecated nested layout (all mappings there)."""

GRPO_DEFAULTS: dict[str, Any] = {
    "output_dir": "runs/grpo",
    "num_generations": 6,
    "per_device_train_batch_size": 6,
    "reward_weights": [0.5, 0.5],
    "report_to": "none",
    "beta": 0.0,
    "dtype": "bfloat16",
}
"""This project's defaults where they differ from TRL's (DESIGN.md §5: groups of 6, R = 0.5/0.5)."""

_DERIVED = ("generation_batch_size",)
"""GRPOConfig fields computed from others (setting both is an error)."""
_AGENT_PATHS = ("corpus", "image_dir", "skills_dir", "system_prompt_file")
_FILE_PATHS = ("output_dir", "data_path", "data_root", "buffer_dir", "kscore_eval_path", "logging_dir", "resume_from_checkpoint")
_MODEL_REFS = ("model_name_or_path", "embedding_model")


def _mapping(value: Any, name: str) -> dict[str, Any] | None:
    """A dict field: a mapping in YAML, or JSON text on the command line."""
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--{name}: not a JSON object ({exc.msg}); pass e.g. --{name} '{{\"key\": \"value\"}}'") from None
        if isinstance(parsed, dict):
            return parsed
    raise ConfigError(f"{name} must be a mapping (YAML) or a JSON object (command line), got {type(value).__name__}")


@dataclass
class GenEvolveArguments:
    """The settings of a GRPO + SDL run that TRL's dataclasses do not have."""

    data_path: str | None = field(default=None, metadata={"help": "JSONL of RL rows: 'prompt' (or 'question') and 'gt_image'."})
    data_root: str | None = field(default=None, metadata={"help": "Folder that 'gt_image' paths are relative to (default: the data file's folder)."})
    data_limit: int | None = field(default=None, metadata={"help": "Use only the first N rows."})
    agent: dict[str, Any] | str | None = field(default=None, metadata={"help": "AgentContext fields (tools, budgets, system prompt); JSON on the command line."})
    renderer: str = field(default="preview", metadata={"help": "A registered renderer: preview, service, diffusers, gemini, ..."})
    renderer_options: dict[str, Any] | str | None = field(default=None, metadata={"help": "Backend options (AgentContext.options), e.g. service URLs; JSON on the command line."})
    renderer_seed: int = field(default=0, metadata={"help": "Render seed."})
    renderer_max_concurrency: int = field(default=16, metadata={"help": "Renders at once."})
    judges: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "{image: {base_url, model, api_key_env, ...}, text: ..., distiller: ..., text_uses_ground_truth}; JSON on the command line."},
    )
    rollout_max_concurrency: int = field(default=64, metadata={"help": "Trajectories run at once on each process."})
    kscore_eval_path: str | None = field(default=None, metadata={"help": "JSONL of held-out RL rows scored with the KScore reward path during training."})
    kscore_eval_steps: int = field(default=0, metadata={"help": "Evaluate on kscore_eval_path every N optimizer steps (0: never)."})
    kscore_eval_limit: int | None = field(default=None, metadata={"help": "Use only the first N held-out rows."})
    kscore_eval_at_start: bool = field(default=True, metadata={"help": "Also evaluate before the first step (step 0), as a baseline."})
    kscore_eval_at_end: bool = field(default=True, metadata={"help": "Also evaluate after the last step (unless that step was just evaluated)."})
    extra_reward_funcs: list[str] = field(default_factory=list, metadata={"help": "Further reward functions, 'module:function' with TRL's reward_funcs signature."})
    extra_reward_weights: list[float] | None = field(default=None, metadata={"help": "Weights of extra_reward_funcs (default 1.0 each), after the GenEvolve reward_weights."})

    def __post_init__(self) -> None:
        self.agent = _mapping(self.agent, "agent") or {}
        self.renderer_options = _mapping(self.renderer_options, "renderer_options") or {}
        self.judges = _mapping(self.judges, "judges")
        if self.kscore_eval_steps < 0:
            raise ConfigError(f"kscore_eval_steps must be >= 0, got {self.kscore_eval_steps}")
        if self.kscore_eval_steps and not self.kscore_eval_path:
            raise ConfigError("kscore_eval_steps is set but kscore_eval_path is not; name the held-out rows (JSONL) or drop kscore_eval_steps")


@dataclass
class GRPORun:
    """What ``train grpo`` parsed: the three dataclasses and where relative paths start."""

    args: Any
    """:class:`~genevolve_graph.training.trainer.SDLConfig`."""
    model_args: Any
    """``trl.ModelConfig``."""
    genevolve: GenEvolveArguments
    config_file: Path | None = None
    deprecated_layout: bool = False

    settings: dict[str, Any] = field(default_factory=dict)
    """The fields the file (as written) and the command line set, for ``flat``."""

    def flat(self) -> dict[str, Any]:
        """The flat configuration this run was given (file + overrides), e.g. to migrate a nested file."""
        return {k: _plain(v) for k, v in self.settings.items()}

    def resolved(self) -> dict[str, Any]:
        """Every effective field (GRPOConfig/SDLConfig, ModelConfig, GenEvolveArguments) after the
        defaults, the file and the command line, with local paths absolute: written to a file, it
        re-reads to the same run from any folder (``train grpo --dump-config``). Secrets (``*_token``)
        are left out; fields TRL derives from others (``generation_batch_size``) too."""
        import dataclasses

        values = self.args.to_dict()  # enums and nested configs as plain values
        out: dict[str, Any] = {}
        for obj in (self.args, self.model_args, self.genevolve):
            for f in dataclasses.fields(obj):
                if not f.init or f.name.startswith("_") or f.name in _DERIVED or f.name.endswith("_token"):
                    continue
                out[f.name] = _plain(values[f.name] if obj is self.args and f.name in values else getattr(obj, f.name))

        def absolute(value: str) -> str:
            return str(Path(os.path.expandvars(value)).expanduser().resolve())

        for key in _FILE_PATHS:
            value = out.get(key)
            if isinstance(value, str) and value and value.strip().lower() not in ("true", "last", "latest", "false"):
                out[key] = absolute(value)
        for key in _MODEL_REFS:
            value = out.get(key)
            if isinstance(value, str) and (value.startswith((".", "/", "~")) or Path(value).exists()):
                out[key] = absolute(value)
        if isinstance(out.get("agent"), dict):
            out["agent"] = {k: (absolute(v) if k in _AGENT_PATHS and isinstance(v, str) and v else v) for k, v in out["agent"].items()}
        return out


def _plain(value: Any) -> Any:
    import enum

    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value") and not isinstance(value, str | int | float | bool):  # enums (IntervalStrategy, ...)
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _option_names(argv: list[str]) -> list[str]:
    return [a[2:].split("=", 1)[0] for a in argv if a.startswith("--")]


def _parser():
    from trl import ModelConfig, TrlParser

    from genevolve_graph.training.trainer import SDLConfig

    class _Parser(TrlParser):
        def error(self, message: str) -> None:  # argparse would print usage and exit
            raise ConfigError(f"train grpo: {message}")

    parser = _Parser([SDLConfig, ModelConfig, GenEvolveArguments], allow_abbrev=False)
    parser.set_defaults_with_config(**GRPO_DEFAULTS)
    return parser


# --------------------------------------------------------------------------- files


def is_nested(raw: dict[str, Any]) -> bool:
    """True for the deprecated layout: a ``model``/``data``/``sdl``/``grpo``/``rollout``/``renderer``
    *section* (a mapping). In the flat layout ``renderer`` is a name and the others are not keys;
    ``agent`` and ``judges`` are mappings in both."""
    return any(isinstance(raw.get(key), dict) for key in ("model", "data", "sdl", "grpo", "rollout", "renderer"))


def nested_to_flat(config: TrainConfig) -> dict[str, Any]:
    """The flat equivalent of a (validated) nested config, paths as written in the file."""
    model, data, renderer, sdl = config.model, config.data, config.renderer, config.sdl
    flat: dict[str, Any] = {"model_name_or_path": model.name_or_path, "dtype": model.dtype}
    if model.attn_implementation:
        flat["attn_implementation"] = model.attn_implementation
    if model.lora is not None:
        targets = model.lora.target_modules
        flat.update(use_peft=True, lora_r=model.lora.r, lora_alpha=model.lora.alpha, lora_dropout=model.lora.dropout,
                    lora_target_modules=[targets] if isinstance(targets, str) else list(targets))
    flat.update(data_path=data.path, data_root=data.root, data_limit=data.limit)
    if config.agent:
        flat["agent"] = dict(config.agent)
    flat.update(renderer=renderer.name, renderer_seed=renderer.seed, renderer_max_concurrency=renderer.max_concurrency)
    if renderer.options:
        flat["renderer_options"] = dict(renderer.options)
    flat["judges"] = config.judges.model_dump(mode="json", exclude_none=True)
    flat.update(
        sdl_coef=sdl.coef if sdl.enabled else 0.0, delta_min=sdl.delta_min, gate=sdl.gate, top_k_fraction=sdl.top_k_fraction,
        buffer_capacity=sdl.buffer_capacity, embedding_model=sdl.embedding_model, decision_tags=list(sdl.decision_tags),
        sdl_is_clip=sdl.is_clip,
    )
    if sdl.buffer_dir:
        flat["buffer_dir"] = sdl.buffer_dir
    flat["rollout_max_concurrency"] = config.rollout.max_concurrency
    flat.update(config.grpo)
    return {k: v for k, v in flat.items() if v is not None}


def _rebase(flat: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths written in the file, made relative to the file's folder (hub ids stay as they are)."""

    def local(value: str) -> Path:
        p = Path(os.path.expandvars(value)).expanduser()
        return p if p.is_absolute() else base / p

    out = dict(flat)
    for key in _FILE_PATHS:
        if isinstance(out.get(key), str) and not (key == "resume_from_checkpoint" and out[key].strip().lower() in ("true", "last", "latest", "false", "")):
            out[key] = str(local(out[key]))
    for key in _MODEL_REFS:
        value = out.get(key)
        if isinstance(value, str) and (value.startswith((".", "/", "~")) or local(value).exists()):
            out[key] = str(local(value))
    agent = out.get("agent")
    if isinstance(agent, dict):
        out["agent"] = {k: (str(local(v)) if k in _AGENT_PATHS and isinstance(v, str) and v else v) for k, v in agent.items()}
    return out


def run_from_train_config(config: TrainConfig, **overrides: Any) -> GRPORun:
    """A validated nested :class:`TrainConfig` (notebooks, the deprecated layout) as a :class:`GRPORun`;
    ``overrides``: further fields (e.g. ``max_steps``)."""
    flat = {**_rebase(nested_to_flat(config), config.base_dir), **overrides}
    return _parse(flat, [], None, deprecated=True)


def parse_grpo_args(argv: list[str], config_file: Path | None = None, *, ablation: str | None = None) -> GRPORun:
    """Parse ``train grpo`` arguments: the config file (flat or nested) then command-line overrides.
    ``ablation``: one variant of the file's ``ablations:`` (:mod:`~genevolve_graph.training.ablations`)."""
    from genevolve_graph.training.ablations import ablation_table, apply_ablation

    flat: dict[str, Any] = {}
    written: dict[str, Any] = {}
    deprecated = False
    if ablation is not None and config_file is None:
        raise ConfigError(f"--ablation {ablation} needs --config FILE with an 'ablations:' section")
    if config_file is not None:
        raw = read_config_file(config_file)
        base = config_file.resolve().parent
        table = ablation_table(raw.pop("ablations"), config_file) if "ablations" in raw else {}
        if ablation is not None:
            raw = apply_ablation(raw, table, ablation, str(config_file))
        if is_nested(raw):
            deprecated = True
            raw = nested_to_flat(validate_config(raw, config_file))
        env = raw.pop("env", None) or {}
        if not isinstance(env, dict):
            raise ConfigError(f"config {config_file}: 'env' must map variable names to values")
        for key, value in env.items():
            os.environ[str(key)] = str(value)
        flat = _rebase(raw, base)
        written = raw
    return _parse(flat, argv, config_file, deprecated=deprecated, written=written)


def _parse(flat: dict[str, Any], argv: list[str], config_file: Path | None, *, deprecated: bool, written: dict[str, Any] | None = None) -> GRPORun:
    parser = _parser()
    if flat:
        unknown = parser.set_defaults_with_config(**flat)
        if unknown:
            names = sorted({u[2:] for u in unknown[::2]})
            raise ConfigError(
                f"config {config_file or '(settings)'}: unknown field(s) {', '.join(names)}; a flat config takes GRPOConfig/SDLConfig, "
                "ModelConfig and GenEvolveArguments fields (see docs/training.md)"
            )
    try:
        args, model_args, genevolve, remaining = parser.parse_args_into_dataclasses(args=list(argv), return_remaining_strings=True)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        where = f"config {config_file}: " if config_file else ""
        raise ConfigError(f"{where}{exc}") from None
    if remaining:
        raise ConfigError(
            f"unknown option(s) {' '.join(remaining)}; any GRPOConfig/SDLConfig, ModelConfig or GenEvolveArguments field "
            "is accepted as --field_name VALUE (e.g. --learning_rate 1e-6)"
        )
    if not model_args.model_name_or_path:
        raise ConfigError("no policy model: set model_name_or_path (a hub id or a local folder) in the config or with --model_name_or_path")
    if not genevolve.data_path:
        raise ConfigError("no RL data: set data_path (JSONL of prompt + gt_image rows) in the config or with --data_path")
    if not genevolve.judges:
        raise ConfigError("no judges: set judges.image (base_url, model, api_key_env) in the config or with --judges '{...}'")
    settings = dict(flat if written is None else written)
    for name in _option_names(argv):
        for obj in (args, model_args, genevolve):
            if hasattr(obj, name):
                settings[name] = getattr(obj, name)
                break
    return GRPORun(args, model_args, genevolve, config_file, deprecated, settings)


__all__ = [
    "GRPO_DEFAULTS",
    "GRPORun",
    "GenEvolveArguments",
    "is_nested",
    "nested_to_flat",
    "parse_grpo_args",
    "read_config_file",
    "run_from_train_config",
]
