"""``ColocatedVLLMGenerator``: ``vllm.LLM`` in the trainer's own process (TRL ``vllm_mode="colocate"``).

TRL builds the engine (``trainer.vllm_generation.llm``, sharing the GPU with training at
``vllm_gpu_memory_utilization``) and loads the new weights into it before every call of the
``rollout_func``; this backend only samples from it. Concurrent trajectories' turns are batched
into one ``LLM.generate`` call (:class:`MicroBatchingGenerator`), each with its own token budget,
and the sampled tokens' log-probs come back for TRL's importance-sampling correction.

A vision-language policy's turns carry their images: each prompt goes to ``LLM.generate`` with
``multi_modal_data={"image": ...}`` (PIL images in token order, one image bare, several as a list),
exactly as TRL's own colocate generation sends them; an engine that loaded a text-only model is
refused at start-up (:meth:`accepts_images`, checked by ``GenEvolveRollout.check_backend``).

With ``vllm_enable_sleep_mode`` TRL keeps the engine asleep at level 2 (weights *and* KV cache
discarded) between generation rounds and records it in ``vllm_generation._llm_weights_sleeping``;
TRL's own ``generate`` re-pushes the training weights when that flag is set. The rollouts follow
the same bookkeeping: :meth:`begin` re-pushes the weights when they were discarded (through
TRL's ``sync_weights``, which wakes them, loads them and resets the prefix cache), then wakes the
KV cache; :meth:`end` sleeps at level 2 and sets the flag, so that whatever samples next (TRL's
next round, or the held-out KScore evaluation between two steps) reloads the weights first.
Tensor parallelism inside colocate mode is not supported here (TRL gathers prompts across the
TP group for single-turn generation; a multi-turn graph cannot keep such groups in step).
"""

from __future__ import annotations

import math
from typing import Any

from genevolve_graph.training.generation.base import Generation, SamplingParams
from genevolve_graph.training.generation.batching import MicroBatchingGenerator, Pending


def vllm_sampling_kwargs(sampling: SamplingParams, max_tokens: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``vllm.SamplingParams`` keyword arguments for one turn (as TRL's colocate mode sets them,
    plus the special tokens kept: the trace needs the exact sampled ids)."""
    return {
        "n": 1,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k if sampling.top_k else -1,
        "min_p": 0.0 if sampling.min_p is None else sampling.min_p,
        "repetition_penalty": sampling.repetition_penalty,
        "max_tokens": max_tokens,
        "logprobs": 0,  # the sampled token's own log-prob
        "skip_special_tokens": False,
        **(extra or {}),
    }


def generation_from_vllm(output: Any) -> Generation:
    """The first completion of a ``vllm.RequestOutput`` as a :class:`Generation`."""
    completion = output.outputs[0]
    ids = [int(t) for t in completion.token_ids]
    logprobs = None
    if completion.logprobs is not None and len(completion.logprobs) == len(ids):
        logprobs = []
        for token, table in zip(ids, completion.logprobs, strict=True):
            entry = table.get(token) if table else None
            value = float(entry.logprob) if entry is not None else float("nan")
            logprobs.append(float("nan") if math.isinf(value) and value > 0 else value)
    return Generation(ids, logprobs)


def engine_is_multimodal(llm: Any) -> bool:
    """Whether a ``vllm.LLM`` serves a model that takes images."""
    config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    return bool(getattr(config, "is_multimodal_model", False))


def vllm_prompt(prompt_ids: list[int], images: list[str] | None) -> dict[str, Any]:
    """One ``LLM.generate`` prompt: the token ids and, for a turn that shows images, the decoded
    images (TRL's layout: one image bare, several as a list, in token order)."""
    prompt: dict[str, Any] = {"prompt_token_ids": list(prompt_ids)}
    if images:
        from genevolve_graph.training.vision import load_images

        decoded = load_images(images)
        prompt["multi_modal_data"] = {"image": decoded if len(decoded) > 1 else decoded[0]}
    return prompt


class ColocatedVLLMGenerator(MicroBatchingGenerator):
    """Samples from TRL's colocated ``vllm.LLM`` (``trainer.vllm_generation``)."""

    backend = "colocated vLLM"

    def __init__(self, vllm_generation: Any, sampling: SamplingParams | None = None, *, extra: dict[str, Any] | None = None,
                 max_batch_size: int = 256) -> None:
        super().__init__(max_batch_size=max_batch_size)
        if int(getattr(vllm_generation, "tensor_parallel_size", 1) or 1) > 1:
            raise ValueError(
                "GenEvolve rollouts in vllm_mode colocate need vllm_tensor_parallel_size: 1 (each process runs its own "
                "engine); for tensor parallelism serve the policy (genevolve-graph serve-policy --for-training --tp N) "
                "and use vllm_mode: server"
            )
        self.vllm_generation = vllm_generation
        self.sampling = sampling or SamplingParams()
        self.extra = dict(extra or {})

    @property
    def llm(self) -> Any:
        return self.vllm_generation.llm

    def accepts_images(self) -> bool:
        """Whether the engine loaded a multimodal model (vLLM's ``model_config.is_multimodal_model``)."""
        return engine_is_multimodal(self.llm)

    def begin(self) -> None:
        """Before a rollout batch: with sleep mode, reload discarded weights, then wake the KV cache."""
        generation = self.vllm_generation
        if getattr(generation, "enable_sleep_mode", False):
            if getattr(generation, "_llm_weights_sleeping", False):
                # Level-2 sleep discarded the weights: waking them is not enough, TRL must push the
                # current training weights again (it clears the flag itself).
                generation.sync_weights()
            self.llm.wake_up(tags=["kv_cache"])

    def end(self) -> None:
        """After a rollout batch: release the engine's memory again for training, and tell TRL
        that the weights are gone (its next generation re-pushes them)."""
        generation = self.vllm_generation
        if getattr(generation, "enable_sleep_mode", False):
            self.llm.sleep(level=2)
            generation._llm_weights_sleeping = True

    def _generate_batch(self, batch: list[Pending]) -> list[Generation]:
        from vllm import SamplingParams as VLLMSamplingParams

        self.calls += 1
        prompts = [vllm_prompt(item.prompt_ids, item.images) for item in batch]
        params = [VLLMSamplingParams(**vllm_sampling_kwargs(self.sampling, item.max_new_tokens, self.extra)) for item in batch]
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        return [generation_from_vllm(output) for output in outputs]


__all__ = ["ColocatedVLLMGenerator", "engine_is_multimodal", "generation_from_vllm", "vllm_prompt", "vllm_sampling_kwargs"]
