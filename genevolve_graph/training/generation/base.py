"""What every generation backend shares: a sampled reply, the backend interface, sampling settings.

A rollout asks a :class:`TokenGenerator` for a continuation of a token-id prompt and gets a
:class:`Generation` back; the backends (the trainer's own model, an OpenAI-compatible completions
server such as vLLM's, vLLM in the trainer's process, scripted replies in tests) differ only in
where the tokens come from. A backend that fails raises :class:`GenerationError`: an
infrastructure failure, never a learning signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class GenerationError(RuntimeError):
    """The generation backend failed (not the policy's fault: the rollout gets no reward)."""



@dataclass
class Generation:
    """One sampled reply: its token ids (ending with EOS unless cut) and their log-probs."""

    token_ids: list[int]
    logprobs: list[float] | None = None


class TokenGenerator(Protocol):
    """Samples a continuation of a token-id prompt.

    A vision-language policy's prompt holds image tokens; ``images`` (keyword, only passed when
    there are some) are then the prompt's images in token order, as data URIs. A backend that
    cannot take images raises :class:`GenerationError` saying which backend to use.
    """

    async def generate(self, prompt_ids: list[int], max_new_tokens: int, *, images: list[str] | None = None) -> Generation: ...


@dataclass
class SamplingParams:
    """Sampling settings (TRL's ``GRPOConfig`` fields of the same names)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float | None = None
    repetition_penalty: float = 1.0

    @classmethod
    def from_args(cls, args: Any) -> "SamplingParams":
        return cls(
            temperature=float(getattr(args, "temperature", 1.0) or 1.0),
            top_p=float(getattr(args, "top_p", 1.0) or 1.0),
            top_k=int(getattr(args, "top_k", 0) or 0),
            min_p=getattr(args, "min_p", None),
            repetition_penalty=float(getattr(args, "repetition_penalty", 1.0) or 1.0),
        )

