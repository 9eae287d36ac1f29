"""A recording stand-in for ``vllm.LLM``, for CPU tests of the colocated-vLLM paths.

vLLM needs CUDA GPUs and is not installed on CI, yet the trainer asks several things of TRL's
colocated engine: sampling with images (``generate`` with ``multi_modal_data``), sleep and wake
(``sleep(level)``, ``wake_up(tags)``), and the weight sync (``load_weights`` through
``llm_engine.model_executor.driver_worker.model_runner.model``, then ``reset_prefix_cache``).
:class:`RecordingLLM` implements exactly the methods and arguments TRL 1.16's own code calls
(``trl/generation/vllm_generation.py``) and records every call in order, so a test can check
the sequence; it samples by asking a :class:`ScriptedPolicyScript` for the reply to the token
prompt.

:func:`install` puts it where TRL's real ``VLLMGeneration`` looks for it (so TRL's own
``_init_vllm``, ``sync_weights`` and bookkeeping run unchanged), and a ``vllm`` module holding
:class:`SamplingParams` (recording its keyword arguments) where the rollout backend imports it.
Anything TRL calls that this class does not define raises ``AttributeError``: a TRL upgrade
that calls something new fails the tests instead of passing silently.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class SamplingParams:
    """``vllm.SamplingParams``: keeps its keyword arguments for the test to read."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.max_tokens = kwargs.get("max_tokens", 16)


@dataclass
class _Logprob:
    logprob: float
    rank: int = 1


@dataclass
class EngineCall:
    """One call on the engine: its name and what it was given."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


class RecordingLLM:
    """``vllm.LLM`` as TRL's colocate mode uses it; set :attr:`script` before sampling."""

    instances: list[RecordingLLM] = []
    script: Any = None
    multimodal: bool = False

    def __init__(self, **kwargs: Any) -> None:
        self.init_kwargs = kwargs
        self.calls: list[EngineCall] = []
        self.weights_loaded: dict[str, Any] = {}
        self.awake = {"weights": True, "kv_cache": True}
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load_weights))
        self.llm_engine = SimpleNamespace(
            model_config=SimpleNamespace(is_multimodal_model=type(self).multimodal, max_model_len=kwargs.get("max_model_len") or 32768),
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner)),
        )
        type(self).instances.append(self)

    # -- what TRL calls
    def sleep(self, level: int = 1) -> None:
        self.calls.append(EngineCall("sleep", {"level": level}))
        self.awake = {"weights": level < 2, "kv_cache": False}
        if level >= 2:
            self.weights_loaded = {}  # level 2 discards the weights

    def wake_up(self, tags: list[str] | None = None) -> None:
        self.calls.append(EngineCall("wake_up", {"tags": list(tags) if tags else None}))
        for tag in tags or ["weights", "kv_cache"]:
            self.awake[tag] = True

    def reset_prefix_cache(self) -> None:
        self.calls.append(EngineCall("reset_prefix_cache"))

    def _load_weights(self, weights: list[tuple[str, Any]]) -> None:
        names = [name for name, _ in weights]
        if self.calls and self.calls[-1].name == "load_weights":
            self.calls[-1].args["names"].extend(names)
        else:
            self.calls.append(EngineCall("load_weights", {"names": names}))
        for name, tensor in weights:
            self.weights_loaded[name] = tensor.detach().clone()

    def generate(self, prompts: list[dict[str, Any]], sampling_params: Any = None, use_tqdm: bool = True) -> list[Any]:
        self.calls.append(EngineCall("generate", {
            "prompts": prompts, "sampling_params": sampling_params, "use_tqdm": use_tqdm,
            "awake": dict(self.awake), "weights": dict(self.weights_loaded),
        }))
        if self.script is None:
            raise RuntimeError("RecordingLLM.script is not set")
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        outputs = []
        for prompt, sp in zip(prompts, params, strict=True):
            ids = self.script.reply_ids(prompt["prompt_token_ids"], int(getattr(sp, "max_tokens", 16) or 16))
            logprobs = [{t: _Logprob(self.script.logprob)} for t in ids]
            completion = SimpleNamespace(token_ids=ids, logprobs=logprobs)
            outputs.append(SimpleNamespace(prompt_token_ids=list(prompt["prompt_token_ids"]), outputs=[completion]))
        return outputs

    # -- for the tests
    def names(self) -> list[str]:
        return [c.name for c in self.calls]


def install(monkeypatch: Any, script: Any, *, multimodal: bool = False) -> type[RecordingLLM]:
    """Make TRL's ``VLLMGeneration`` build a :class:`RecordingLLM` (``monkeypatch``: pytest's)."""
    from trl.generation import vllm_generation

    engine = type("ScriptedLLM", (RecordingLLM,), {"instances": [], "script": script, "multimodal": multimodal})
    module = types.ModuleType("vllm")
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    module.LLM = engine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(vllm_generation, "is_vllm_available", lambda *a, **k: True)
    monkeypatch.setattr(vllm_generation, "LLM", engine, raising=False)
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"}.items():
        monkeypatch.setenv(name, value)  # TRL's _init_vllm writes them; restored after the test
    return engine


__all__ = ["EngineCall", "RecordingLLM", "SamplingParams", "install"]
