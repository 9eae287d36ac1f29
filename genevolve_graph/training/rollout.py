"""Multi-turn tool rollouts for GRPO, token-exact with inference: the agent graph itself runs.

Why a ``rollout_func`` and not TRL's ``tools=`` / ``environment_factory=``: both render the
prompt with ``apply_chat_template(..., tools=...)``, so the chat template writes its own tool
preamble into the system prompt, which the GenEvolve protocol never sends (DESIGN.md §3: no
``tools`` parameter, the tool block lives in *our* system prompt); their loops parse calls with
the template's parser instead of ``protocol.parse_reply`` and never send the graph's control
messages (format errors, the final-step message, the tool budget). A rollout built on them
would train the policy on token sequences it never sees at inference.

So each rollout runs the real agent graph (``graph.build_graph``: the same planner budget
rules, the same tools and backends, the same binder and emitter) with one difference: the
planner's policy is :class:`~genevolve_graph.training.trace.TracingPolicy`, which samples every
reply from the model being trained and keeps the flat token sequence TRL trains on
(:mod:`genevolve_graph.training.trace`; ``tests/training/test_rollout.py`` checks it token for
token against the requests a real inference run sends).

Where things live: the generation backends in :mod:`genevolve_graph.training.generation`, the
token bookkeeping in :mod:`genevolve_graph.training.trace`, this TRL ``rollout_func`` here, the
SDL loss in :mod:`genevolve_graph.training.sdl`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage

from genevolve_graph.core.context import AgentContext
from genevolve_graph.core.protocol import chat_dicts
from genevolve_graph.training.generation import (
    CompletionsGenerator,
    Generation,
    GenerationError,
    LocalGenerator,
    SamplingParams,
    TokenGenerator,
)
from genevolve_graph.training.trace import BudgetExhausted, TemplateError, TokenTrace, TracingPolicy

if TYPE_CHECKING:
    from genevolve_graph.core.state import Program


@dataclass
class RolloutResult:
    """One trajectory: its tokens and what the graph made of it."""

    request: str
    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    logprobs: list[float] | None
    program: dict[str, Any] | None
    termination: str
    error: str | None
    failed: bool
    """The generation backend failed: no reward should be given (infrastructure, not policy)."""
    truncated: bool
    rounds: int
    tool_calls: int
    retemplated_turns: int
    trajectory: list[dict[str, Any]]
    """The chat after the prompt (assistant replies, tool responses, control messages)."""
    prompt_messages: list[dict[str, Any]] = field(default_factory=list)
    """The system prompt and the request as the policy read them (the teacher extends these)."""
    messages: list[BaseMessage] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    """A vision policy's images in token order (request images, then thumbnails), as data URIs."""


def request_of(prompt: Any) -> str:
    """The image request of a TRL prompt (conversational: the last user turn; else the text)."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(prompt):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
            return str(content)
    raise ValueError("a prompt holds no user turn with the image request")


def request_prompt(request: str, ctx: AgentContext, images: list[str] | None = None) -> list[dict[str, Any]]:
    """The dataset ``prompt`` for a request: exactly the graph's first two messages
    (``images``: the user's reference images as data URIs, shown to a vision policy)."""
    from genevolve_graph.nodes.planner import initial_messages

    prompt = chat_dicts(initial_messages(request, ctx, images=images), "genevolve")
    if images:  # one content type per column, so that a datasets (Arrow) table can hold the rows
        prompt = [{**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m["content"], str) else m for m in prompt]
    return prompt


def request_images_of(prompt: Any) -> list[str]:
    """The user's reference images in a TRL prompt (the image parts of its last user turn)."""
    from genevolve_graph.training.vision import image_urls

    if isinstance(prompt, str):
        return []
    users = [m for m in prompt if m.get("role") == "user"]
    return image_urls(users[-1:])


_ROLLOUT_POLICY: ContextVar[TracingPolicy] = ContextVar("genevolve_rollout_policy")


class _RoutedPolicy:
    """The policy of the one compiled rollout graph: each turn goes to the ``TracingPolicy`` of
    the rollout being run, found in a context variable that ``GenEvolveRollout.rollout`` sets
    around ``ainvoke`` (every rollout runs in its own asyncio task, so each sees its own)."""

    name = TracingPolicy.name
    model = TracingPolicy.model

    async def respond(self, messages: list[BaseMessage], ctx: AgentContext) -> Any:
        try:
            policy = _ROLLOUT_POLICY.get()
        except LookupError:  # pragma: no cover - the graph is only invoked from GenEvolveRollout.rollout
            raise RuntimeError("the rollout graph ran outside GenEvolveRollout.rollout (no trajectory to trace)") from None
        return await policy.respond(messages, ctx)


class GenEvolveRollout:
    """TRL ``rollout_func``: runs the agent graph once per prompt with the trained policy.

    ``ctx``: the agent settings (tools, budgets, system prompt); its renderer is ignored
    (rewards render). ``generator``: a fixed backend, or None to choose from the trainer
    (``vllm_mode='server'`` -> :class:`CompletionsGenerator` on the TRL vLLM server, else
    :class:`LocalGenerator`). ``search``/``image_search``/``skills``: injected backends (as
    ``build_graph`` takes them), else built from ``ctx`` exactly as at inference.
    """

    def __init__(
        self,
        ctx: AgentContext,
        *,
        generator: TokenGenerator | None = None,
        max_concurrency: int = 64,
        search: Any = None,
        image_search: Any = None,
        skills: Any = None,
    ) -> None:
        if ctx.protocol != "genevolve":
            raise ValueError("training rollouts use protocol 'genevolve'; set protocol: genevolve in the agent settings")
        self.ctx = replace(ctx, renderer="none")
        self.generator = generator
        self.max_concurrency = max_concurrency
        self.services = {"search": search, "image_search": image_search, "skills": skills}
        self.last_results: list[RolloutResult] = []
        self._graph: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ event loop

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run on one long-lived loop (backends and HTTP pools are cached per loop)."""
        if self._loop is None:
            ready = threading.Event()

            def serve() -> None:
                self._loop = asyncio.new_event_loop()
                asyncio.set_event_loop(self._loop)
                ready.set()
                self._loop.run_forever()

            self._thread = threading.Thread(target=serve, name="genevolve-rollouts", daemon=True)
            self._thread.start()
            ready.wait()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._loop = None

    # ------------------------------------------------------------------ TRL entry point

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        from genevolve_graph.training.vision import is_processor

        processing_class = trainer.processing_class
        # A VLM's processor renders the chats (its own image tokens); a text policy's tokenizer otherwise.
        tokenizer = processing_class if is_processor(processing_class) else getattr(processing_class, "tokenizer", processing_class)
        kwargs = dict(getattr(trainer, "chat_template_kwargs", None) or {})
        requests = [request_of(p) for p in prompts]
        images = [request_images_of(p) for p in prompts]
        if (self.ctx.options.get("show_images") or any(images)) and not is_processor(processing_class):
            raise ValueError(
                "image observations (show_images) and request images need a vision-language policy, but the trainer's "
                "processing class is a text tokenizer; train a VLM or turn show_images off and drop request_images"
            )
        generator, local_model = self._generator_for(trainer, tokenizer)
        self._wait_for_weight_sync(trainer)
        if local_model is not None:
            from trl.models import unwrap_model_for_generation

            with unwrap_model_for_generation(
                trainer.model_wrapped, trainer.accelerator, gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs
            ) as unwrapped:
                generator.model = unwrapped
                results = self.run(requests, tokenizer=tokenizer, generator=generator,
                                   max_completion_length=trainer.max_completion_length, chat_template_kwargs=kwargs, images=images)
        else:
            begin, end = getattr(generator, "begin", None), getattr(generator, "end", None)
            if begin is not None:
                begin()
            try:
                results = self.run(requests, tokenizer=tokenizer, generator=generator,
                                   max_completion_length=trainer.max_completion_length, chat_template_kwargs=kwargs, images=images)
            finally:
                if end is not None:
                    end()
        self._log(trainer, results)
        output = self.to_trl(results)
        if output["logprobs"] is None and getattr(trainer, "use_vllm", False) and getattr(trainer.args, "vllm_importance_sampling_correction", False):
            raise RuntimeError(
                "the generation endpoint returned no log-probs, which TRL's vLLM importance-sampling correction needs; "
                "serve the policy with vLLM (logprobs on) or set grpo.vllm_importance_sampling_correction: false"
            )
        return output

    def check_backend(self, trainer: Any, prompts: Any = None) -> None:
        """At start-up, not per rollout: when the rollouts will show images (``show_images``, or a
        prompt of ``prompts`` / the trainer's training set with request images), the trainer needs
        a vision-language processor and a generation backend that takes images. Raises a one-line
        ``ValueError`` naming the fix; otherwise every such rollout would fail, be excluded as an
        infrastructure failure, and bias training against the image tools while it reports success.
        """
        from genevolve_graph.training.vision import is_processor

        if self.ctx.options.get("show_images"):
            why = "show_images is on"
        else:
            rows = prompts if prompts is not None else (getattr(trainer, "train_dataset", None) or [])
            with_images = any(request_images_of(row["prompt"] if isinstance(row, dict) else row) for row in rows)
            if not with_images:
                return
            why = "the data rows hold request_images"
        processing_class = trainer.processing_class
        if not is_processor(processing_class):
            raise ValueError(
                f"the rollouts show images ({why}) but the trainer's processing class is a text tokenizer; "
                "train a vision-language policy or turn show_images off and drop request_images"
            )
        generator, _ = self._generator_for(trainer, processing_class)
        accepts = getattr(generator, "accepts_images", None)
        if accepts is not None and not accepts():
            backend = getattr(generator, "backend", type(generator).__name__)
            if getattr(trainer, "use_vllm", False) and getattr(trainer.args, "vllm_mode", "server") == "colocate":
                fix = "the colocated vLLM engine loaded a text-only model; give model_name_or_path a vision-language model"
            else:
                fix = "roll out with vllm_mode: colocate (vLLM passes the images) or without vLLM (use_vllm: false)"
            raise ValueError(f"the rollouts show images ({why}) but the {backend} generation backend cannot take images: {fix}")

    @staticmethod
    def _wait_for_weight_sync(trainer: Any) -> None:
        """Every process waits here until all have arrived, before any samples.

        With a vLLM server, TRL pushes the new weights from the main process alone, just before
        it calls ``rollout_func``; the other processes return from ``sync_weights`` at once. Without
        this barrier they would sample from the server while the push is still under way, from a
        mix of old and new weights.
        """
        accelerator = getattr(trainer, "accelerator", None)
        if accelerator is not None and accelerator.num_processes > 1:
            accelerator.wait_for_everyone()

    def _generator_for(self, trainer: Any, tokenizer: Any) -> tuple[TokenGenerator, Any]:
        """The generation backend the trainer's settings ask for.

        ``use_vllm`` with ``vllm_mode: server``: the TRL vLLM server over HTTP
        (:class:`CompletionsGenerator`); with ``vllm_mode: colocate``: TRL's in-process
        ``vllm.LLM`` (:class:`ColocatedVLLMGenerator`); without vLLM: the trained model itself
        (:class:`LocalGenerator`). A generator given to the constructor wins.
        """
        if self.generator is not None:
            return self.generator, None
        args = trainer.args
        sampling = SamplingParams.from_args(args)
        extra = dict(getattr(args, "generation_kwargs", None) or {})
        if getattr(trainer, "use_vllm", False):
            mode = getattr(args, "vllm_mode", "server")
            if mode == "colocate":
                from genevolve_graph.training.generation.colocate import ColocatedVLLMGenerator

                self.generator = ColocatedVLLMGenerator(trainer.vllm_generation, sampling, extra=extra)
                return self.generator, None
            if mode != "server":
                raise ValueError(f"vllm_mode must be server or colocate for GenEvolve rollouts, got {mode!r}")
            base = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
            self.generator = CompletionsGenerator(base, sampling=sampling, extra_body=extra)
            return self.generator, None
        from genevolve_graph.training.vision import is_processor, text_tokenizer

        processor = tokenizer if is_processor(tokenizer) else None
        generator = LocalGenerator(trainer.model, text_tokenizer(tokenizer), sampling, processor=processor)
        return generator, trainer.model

    def run(
        self,
        requests: list[str],
        *,
        tokenizer: Any,
        generator: TokenGenerator,
        max_completion_length: int,
        chat_template_kwargs: dict[str, Any] | None = None,
        images: list[list[str]] | None = None,
    ) -> list[RolloutResult]:
        """Roll out every request (blocking); results in the order of ``requests``.
        ``images``: per request, the user's reference images (data URIs)."""
        return self._run(self.arun(requests, tokenizer=tokenizer, generator=generator,
                                   max_completion_length=max_completion_length, chat_template_kwargs=chat_template_kwargs, images=images))

    async def arun(
        self,
        requests: list[str],
        *,
        tokenizer: Any,
        generator: TokenGenerator,
        max_completion_length: int,
        chat_template_kwargs: dict[str, Any] | None = None,
        images: list[list[str]] | None = None,
    ) -> list[RolloutResult]:
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def one(request: str, request_images: list[str]) -> RolloutResult:
            async with semaphore:
                return await self.rollout(request, tokenizer=tokenizer, generator=generator, max_completion_length=max_completion_length,
                                          chat_template_kwargs=chat_template_kwargs, images=request_images)

        return list(await asyncio.gather(*(one(r, list(i or [])) for r, i in zip(requests, images or [[]] * len(requests), strict=True))))

    async def rollout(
        self,
        request: str,
        *,
        tokenizer: Any,
        generator: TokenGenerator,
        max_completion_length: int,
        chat_template_kwargs: dict[str, Any] | None = None,
        images: list[str] | None = None,
    ) -> RolloutResult:
        """One trajectory through the agent graph (``images``: the user's reference images)."""
        from genevolve_graph.agent.graph import build_graph, recursion_limit

        trace = TokenTrace(tokenizer, dict(chat_template_kwargs or {}))
        policy = TracingPolicy(trace, generator, max_completion_length=max_completion_length)
        if self._graph is None:  # one compiled graph for every rollout (compiling one costs more than a turn)
            self._graph = build_graph(None, policy=_RoutedPolicy(), **{k: v for k, v in self.services.items() if v is not None})
        graph_input: dict[str, Any] = {"request": request, **({"request_images": list(images)} if images else {})}
        token = _ROLLOUT_POLICY.set(policy)  # this rollout's task (and the tasks the graph starts) see its policy
        try:
            values = await self._graph.ainvoke(graph_input, {"recursion_limit": recursion_limit(self.ctx)}, context=self.ctx)
        finally:
            _ROLLOUT_POLICY.reset(token)
        messages = list(values.get("messages") or [])
        error = values.get("error")
        truncated = bool(error) and "max_completion_length" in str(error)
        failed = values.get("termination") == "error" and not truncated
        program: Program | None = values.get("program")
        if not trace.prompt_ids:  # the graph stopped before the first turn (bad request)
            trace.prompt_ids = trace.render(request_prompt(request, self.ctx))  # text only: its images may be the bad part
        if not trace.completion_ids:
            # Nothing was sampled (the first turn failed, e.g. a transient 503): TRL reads the last
            # token of every completion, so the row carries one masked placeholder and no reward.
            trace.add_placeholder()
            failed, truncated = True, False
            error = error or "the rollout stopped before the policy replied"
        return RolloutResult(
            request=request,
            prompt_ids=trace.prompt_ids,
            completion_ids=trace.completion_ids,
            env_mask=trace.mask,
            logprobs=trace.logprobs,
            program=program.model_dump(mode="json") if program is not None else None,
            termination="truncated" if truncated else str(values.get("termination") or "no_answer"),
            error=error,
            failed=failed,
            truncated=truncated,
            rounds=int(values.get("rounds", 0)),
            tool_calls=int(values.get("tool_calls", 0)),
            retemplated_turns=trace.retemplated_turns,
            trajectory=chat_dicts(messages[2:], "genevolve") if len(messages) > 2 else [],
            prompt_messages=chat_dicts(messages[:2], "genevolve") if len(messages) >= 2 else request_prompt(request, self.ctx),
            messages=messages,
            images=list(trace.images),
        )

    # ------------------------------------------------------------------ TRL output

    @staticmethod
    def to_trl(results: list[RolloutResult]) -> dict[str, Any]:
        """The dict TRL's ``rollout_func`` returns: ids, log-probs, ``env_mask`` and the extra
        fields every reward function receives as keyword arguments."""
        with_lp = all(r.logprobs is not None for r in results)
        return {
            "prompt_ids": [r.prompt_ids for r in results],
            "completion_ids": [r.completion_ids for r in results],
            "logprobs": [r.logprobs for r in results] if with_lp else None,
            "env_mask": [r.env_mask for r in results],
            "program": [r.program for r in results],
            "termination": [r.termination for r in results],
            "rollout_failed": [r.failed for r in results],
            "rollout_error": [r.error for r in results],
            "tool_calls": [r.tool_calls for r in results],
            "trajectory": [r.trajectory for r in results],
            "policy_prompt": [r.prompt_messages for r in results],
            "rollout_images": [r.images for r in results],
        }

    def _log(self, trainer: Any, results: list[RolloutResult]) -> None:
        self.last_results = results
        metrics = getattr(trainer, "_metrics", None)
        if metrics is None or not results:
            return
        mode = "train" if trainer.model.training else "eval"
        n = len(results)
        turns = sum(max(r.rounds, 1) for r in results)
        metrics[mode]["rollout/answer_rate"].append(sum(r.termination == "answer" for r in results) / n)
        metrics[mode]["rollout/failed_rate"].append(sum(r.failed for r in results) / n)
        metrics[mode]["rollout/truncated_rate"].append(sum(r.truncated for r in results) / n)
        metrics[mode]["rollout/tool_calls_mean"].append(sum(r.tool_calls for r in results) / n)
        metrics[mode]["rollout/retemplated_turns"].append(sum(r.retemplated_turns for r in results) / turns)


__all__ = [
    "BudgetExhausted",
    "CompletionsGenerator",
    "GenEvolveRollout",
    "Generation",
    "GenerationError",
    "LocalGenerator",
    "RolloutResult",
    "SamplingParams",
    "TokenGenerator",
    "TemplateError",
    "TokenTrace",
    "TracingPolicy",
    "request_prompt",
    "request_of",
]
