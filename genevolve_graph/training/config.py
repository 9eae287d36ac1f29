"""The YAML configuration of ``genevolve-graph train grpo``.

One file describes a whole run: the policy model, the RL data, the agent's tools and budgets,
the renderer that turns programs into images, the judges, the SDL options and the TRL
``GRPOConfig`` fields (including vLLM server mode for generation at scale). Secrets never go
in the file: judges name the environment variable that holds their key. See
``docs/training.md`` for a full example.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSettings(_Strict):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


class ModelSettings(_Strict):
    name_or_path: str = Field(description="Hub id or local directory of the policy (e.g. the GenEvolve SFT checkpoint).")
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = "bfloat16"
    attn_implementation: str | None = None
    lora: LoraSettings | None = None


class DataSettings(_Strict):
    path: str = Field(description="JSONL of RL rows: 'prompt' (or 'question') and 'gt_image'.")
    root: str | None = Field(default=None, description="Folder that 'gt_image' paths are relative to (default: the file's folder).")
    limit: int | None = Field(default=None, ge=1)


class RendererSettings(_Strict):
    name: str = Field(default="preview", description="A registered renderer: preview, service, diffusers, gemini, ...")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend options (AgentContext.options), e.g. service URLs.")
    seed: int = 0
    max_concurrency: int = Field(default=16, ge=1)


class JudgeSettings(_Strict):
    base_url: str
    model: str
    api_key_env: str | None = Field(default=None, description="Environment variable holding the API key (never the key itself).")
    rpm: float | None = None
    max_retries: int = Field(default=5, ge=0)
    timeout: float = Field(default=120.0, gt=0)

    def client(self):
        from genevolve_graph.evaluation.judge_client import JudgeClient

        key = None
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(f"judge {self.model!r}: environment variable {self.api_key_env} is not set; export it or drop api_key_env")
        return JudgeClient(self.base_url, self.model, key, rpm=self.rpm, max_retries=self.max_retries, timeout=self.timeout)


class JudgesSettings(_Strict):
    image: JudgeSettings = Field(description="KScore judge (R_img).")
    text: JudgeSettings | None = Field(default=None, description="Program-sufficiency judge (R_text); default: the image judge.")
    distiller: JudgeSettings | None = Field(default=None, description="Guide distiller; default: the text judge.")
    distiller_kind: Literal["vision", "text"] = Field(
        default="vision",
        description="vision: the distiller (a VLM) also sees the best and worst renders and the ground truth; text: trajectories only.",
    )
    text_uses_ground_truth: bool = True

    def resolved(self) -> tuple[JudgeSettings, JudgeSettings, JudgeSettings]:
        text = self.text or self.image
        return self.image, text, self.distiller or text


class SDLSettings(_Strict):
    enabled: bool = True
    coef: float = Field(default=0.1, ge=0)
    delta_min: float = Field(default=0.2, ge=0)
    gate: float = Field(default=0.84, ge=-1, le=1)
    top_k_fraction: float = Field(default=0.10, gt=0, le=1)
    buffer_capacity: int = Field(default=500, ge=1)
    embedding_model: str = "Qwen/Qwen3-Embedding-0.6B"
    buffer_dir: str | None = None
    decision_tags: list[str] = Field(default_factory=lambda: ["tool_call", "answer"])
    is_clip: float = Field(default=2.0, gt=0)


class RolloutSettings(_Strict):
    max_concurrency: int = Field(default=64, ge=1, description="Trajectories run at once on each process.")


class TrainConfig(_Strict):
    model: ModelSettings
    data: DataSettings
    agent: dict[str, Any] = Field(default_factory=dict, description="AgentContext fields: tools, budgets, system prompt.")
    renderer: RendererSettings = Field(default_factory=RendererSettings)
    judges: JudgesSettings
    sdl: SDLSettings = Field(default_factory=SDLSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    grpo: dict[str, Any] = Field(default_factory=dict, description="GRPOConfig fields (output_dir, num_generations, vLLM, ...).")

    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("agent")
    @classmethod
    def _agent_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        from dataclasses import fields

        from genevolve_graph.core.context import AgentContext

        known = {f.name for f in fields(AgentContext)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown agent field(s) {unknown}; known: {sorted(known)}")
        if value.get("protocol", "genevolve") != "genevolve":
            raise ValueError("training uses protocol 'genevolve' (the text protocol of the released checkpoint)")
        return value

    def path(self, value: str | None) -> Path | None:
        """A path from the file, relative to the file's folder."""
        if value is None:
            return None
        p = Path(os.path.expandvars(value)).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def model_ref(self, value: str) -> str:
        """A hub id stays as it is; a path (``./x``, ``/x``, ``~/x`` or an existing folder) is
        resolved against the file's folder."""
        local = self.path(value)
        if value.startswith((".", "/", "~")) or (local is not None and local.exists()):
            return str(local)
        return value

    def agent_context(self):
        from genevolve_graph.core.context import AgentContext

        values = dict(self.agent)
        for key in ("corpus", "image_dir", "skills_dir", "system_prompt_file"):
            if values.get(key):
                values[key] = str(self.path(values[key]))
        values.update(protocol="genevolve", renderer=self.renderer.name, options={**values.get("options", {}), **self.renderer.options},
                      seed=self.renderer.seed)
        return AgentContext(**values)

    def sdl_config(self, **overrides: Any):
        """The ``SDLConfig`` (TRL ``GRPOConfig`` + SDL) of this run."""
        from genevolve_graph.training.trainer import SDLConfig

        grpo = {"output_dir": "runs/grpo", "num_generations": 6, "reward_weights": [0.5, 0.5], "report_to": "none",
                "beta": 0.0, **self.grpo, **overrides}
        grpo["output_dir"] = str(self.path(str(grpo["output_dir"])))
        sdl = self.sdl
        buffer_dir = self.path(sdl.buffer_dir) if sdl.buffer_dir else None
        try:
            return SDLConfig(
                **grpo,
                sdl_coef=sdl.coef if sdl.enabled else 0.0,
                delta_min=sdl.delta_min,
                gate=sdl.gate,
                top_k_fraction=sdl.top_k_fraction,
                buffer_capacity=sdl.buffer_capacity,
                decision_tags=list(sdl.decision_tags),
                sdl_is_clip=sdl.is_clip,
                embedding_model=self.model_ref(sdl.embedding_model),
                buffer_dir=str(buffer_dir) if buffer_dir else None,
            )
        except TypeError as exc:
            raise ConfigError(f"grpo: {exc} (the 'grpo' section takes TRL GRPOConfig fields)") from None
        except ValueError as exc:
            raise ConfigError(f"grpo: {exc}") from None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {path}: {exc.strerror}; pass a readable YAML file with --config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: not valid YAML ({exc})") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` (``{}`` for an empty file), or a one-line ``ConfigError``."""
    raw = _read_yaml(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping of field names to values")
    return raw


def load_config(path: str | Path) -> TrainConfig:
    """Read and check a training config file."""
    path = Path(path)
    return validate_config(_read_yaml(path), path)


def validate_config(raw: Any, path: Path) -> TrainConfig:
    """Check the nested layout read from ``path`` (already parsed YAML)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping with model, data, judges, ...")
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"config {path}: {where}: {first['msg']}") from None
    config.base_dir = path.resolve().parent
    return config
