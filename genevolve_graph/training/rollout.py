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
planner's policy is :class:`TracingPolicy`, which turns the graph's messages into the exact
chat the OpenAI-compatible policy would send (``protocol.chat_dicts``), tokenizes it with the
policy's chat template, and samples the reply from the model being trained. Its
:class:`TokenTrace` keeps the one flat token sequence TRL trains on:

    prompt (system + request + generation prompt)
    reply 1 (sampled, loss on)  |  tool response / control turn + generation prompt (loss off)
    reply 2 (sampled, loss on)  |  ...  |  final reply with <answer> (loss on)

Each turn's prompt is the previous flat sequence plus the new turns' tokens. When the chat
template renders the history exactly as it was sampled (the normal case, checked every turn),
that prompt *is* ``apply_chat_template(messages the graph sends)``, token for token, which
``tests/training/test_rollout.py`` checks against the requests a real inference run sends.
When the template re-renders an earlier reply differently (Qwen3 normalises whitespace around
``<think>``), the sampled tokens are kept (training must score what was sampled) and the turn
is counted in the ``rollout/retemplated_turns`` metric.

Generation backends: :class:`LocalGenerator` (the trainer's model, micro-batched across
concurrent trajectories) and :class:`CompletionsGenerator` (``POST /v1/completions`` with
token-id prompts: a vLLM server in TRL's ``vllm_mode="server"``, whose weights TRL syncs
before each rollout).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from langchain_core.messages import AIMessage, BaseMessage

from genevolve_graph.context import AgentContext
from genevolve_graph.policies.base import PolicyError
from genevolve_graph.protocol import chat_dicts

if TYPE_CHECKING:
    from genevolve_graph.state import Program


class GenerationError(RuntimeError):
    """The generation backend failed (not the policy's fault: the rollout gets no reward)."""


class BudgetExhausted(PolicyError):
    """The trajectory used up ``max_completion_length`` before answering."""


@dataclass
class Generation:
    """One sampled reply: its token ids (ending with EOS unless cut) and their log-probs."""

    token_ids: list[int]
    logprobs: list[float] | None = None


class TokenGenerator(Protocol):
    """Samples a continuation of a token-id prompt."""

    async def generate(self, prompt_ids: list[int], max_new_tokens: int) -> Generation: ...


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


# --------------------------------------------------------------------------- backends


@dataclass
class _Pending:
    prompt_ids: list[int]
    max_new_tokens: int
    future: asyncio.Future


class LocalGenerator:
    """Samples with ``model.generate`` on the model being trained.

    Trajectories run concurrently (tools of one overlap the generation of others); requests
    that arrive while the model is busy are batched into its next ``generate`` call, which
    runs in a worker thread so the event loop keeps executing tools.
    """

    def __init__(self, model: Any, tokenizer: Any, sampling: SamplingParams | None = None, *, max_batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sampling = sampling or SamplingParams()
        self.max_batch_size = max_batch_size
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task | None = None
        self.calls = 0

    async def generate(self, prompt_ids: list[int], max_new_tokens: int) -> Generation:
        loop = asyncio.get_running_loop()
        pending = _Pending(list(prompt_ids), max_new_tokens, loop.create_future())
        self._queue.append(pending)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        while self._queue:
            for _ in range(3):  # let concurrent trajectories that are ready submit too
                await asyncio.sleep(0)
            batch, self._queue = self._queue[: self.max_batch_size], self._queue[self.max_batch_size :]
            try:
                results = await asyncio.to_thread(self._generate_batch, batch)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting trajectory
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(GenerationError(f"local generation failed: {type(exc).__name__}: {exc}"))
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

    def _generate_batch(self, batch: list[_Pending]) -> list[Generation]:
        import torch
        from transformers import GenerationConfig

        self.calls += 1
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        width = max(len(p.prompt_ids) for p in batch)
        device = next(self.model.parameters()).device
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            n = len(item.prompt_ids)
            input_ids[row, width - n :] = torch.tensor(item.prompt_ids)
            attention[row, width - n :] = 1
        s = self.sampling
        config = GenerationConfig(
            max_new_tokens=max(p.max_new_tokens for p in batch),
            do_sample=True,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,  # 0 disables top-k explicitly (a model's generation_config.json may set one)
            min_p=s.min_p,
            repetition_penalty=s.repetition_penalty,
            eos_token_id=eos,
            pad_token_id=pad,
            bos_token_id=None,
        )
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config)
        new = out[:, width:].tolist()
        results = []
        for item, ids in zip(batch, new, strict=True):
            ids = ids[: item.max_new_tokens]
            if eos in ids:
                ids = ids[: ids.index(eos) + 1]
            results.append(Generation(ids, None))
        return results


class CompletionsGenerator:
    """``POST {base_url}/v1/completions`` with a token-id prompt (vLLM, SGLang).

    Asks for the sampled token ids (``return_token_ids``) and their log-probs, so the trainer
    can apply TRL's vLLM importance-sampling correction.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        sampling: SamplingParams | None = None,
        timeout: float = 600.0,
        max_retries: int = 3,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        self.base_url = base[: -len("/v1")] if base.endswith("/v1") else base
        self.model = model
        self.sampling = sampling or SamplingParams()
        self.timeout = timeout
        self.max_retries = max_retries
        self.extra_body = dict(extra_body or {})
        self._clients: dict[int, httpx.AsyncClient] = {}

    def _client(self) -> httpx.AsyncClient:
        key = id(asyncio.get_running_loop())
        client = self._clients.get(key)
        if client is None:
            client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout)
            self._clients[key] = client
        return client

    async def _model_name(self) -> str:
        if self.model is None:
            response = await self._client().get("/v1/models")
            response.raise_for_status()
            self.model = response.json()["data"][0]["id"]
        return self.model

    async def generate(self, prompt_ids: list[int], max_new_tokens: int) -> Generation:
        s = self.sampling
        body: dict[str, Any] = {
            "prompt": list(prompt_ids),
            "max_tokens": max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k if s.top_k else -1,
            "repetition_penalty": s.repetition_penalty,
            "logprobs": 0,
            "return_token_ids": True,
            "skip_special_tokens": False,
            **({"min_p": s.min_p} if s.min_p else {}),
            **self.extra_body,
        }
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            try:
                body["model"] = await self._model_name()
                response = await self._client().post("/v1/completions", json=body)
                if response.status_code >= 500 or response.status_code == 429:
                    raise httpx.HTTPStatusError(f"HTTP {response.status_code}", request=response.request, response=response)
                if response.status_code != 200:
                    raise GenerationError(f"the completions endpoint answered HTTP {response.status_code}: {response.text[:300]}")
                return self._parse(response.json())
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                last = exc
                if attempt < self.max_retries:
                    await asyncio.sleep(min(2.0**attempt, 30.0))
        raise GenerationError(f"the completions endpoint at {self.base_url} failed: {last}")

    @staticmethod
    def _parse(payload: dict[str, Any]) -> Generation:
        try:
            choice = payload["choices"][0]
            ids = [int(t) for t in choice["token_ids"]]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise GenerationError(
                "the completions endpoint returned no 'token_ids'; serve the policy with vLLM (it honours "
                "'return_token_ids') so that training sees the exact sampled tokens"
            ) from exc
        logprobs = None
        lp = choice.get("logprobs") or {}
        values = lp.get("token_logprobs") if isinstance(lp, dict) else None
        if isinstance(values, list) and len(values) == len(ids):
            logprobs = [float("nan") if v is None else float(v) for v in values]
        return Generation(ids, logprobs)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


# --------------------------------------------------------------------------- the trace


class TemplateError(RuntimeError):
    """The chat template cannot be continued turn by turn."""


@dataclass
class TokenTrace:
    """The flat token sequence of one trajectory and what produced each token."""

    tokenizer: Any
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    """1 on tokens the policy sampled, 0 on tokens the environment wrote."""
    logprobs: list[float] | None = field(default_factory=list)
    retemplated_turns: int = 0
    turns: int = 0
    _last_reply_closed: bool = True

    def render(self, chat: list[dict[str, Any]]) -> list[int]:
        """``apply_chat_template(chat, add_generation_prompt=True)`` as token ids."""
        out = self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=True, **self.chat_template_kwargs
        )
        ids = out["input_ids"]
        return list(ids[0] if ids and isinstance(ids[0], list) else ids)

    @property
    def sequence(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    def prompt_for(self, chat: list[dict[str, Any]]) -> tuple[list[int], int]:
        """The ids to sample the next reply from, appending the new turns' tokens (mask 0).

        Returns (ids, number of environment tokens appended).
        """
        rendered = self.render(chat)
        if not self.prompt_ids:
            self.prompt_ids = rendered
            return list(rendered), 0
        current = self.sequence
        if rendered[: len(current)] == current:
            env = rendered[len(current) :]
        else:
            self.retemplated_turns += 1
            env = self._suffix_after_last_reply(rendered, chat)
        self._append(env, 0, None)
        return self.sequence, len(env)

    def _suffix_after_last_reply(self, rendered: list[int], chat: list[dict[str, Any]]) -> list[int]:
        """The tokens after the end-of-turn token that closes the last assistant reply."""
        last_assistant = max((i for i, m in enumerate(chat) if m["role"] == "assistant"), default=None)
        if last_assistant is None:
            raise TemplateError("no assistant turn to continue from")
        new_turns = len(chat) - last_assistant - 1
        eos = self.tokenizer.eos_token_id
        closers = [i for i, t in enumerate(rendered) if t == eos]
        if len(closers) < new_turns + 1:
            raise TemplateError(
                "the chat template does not end every turn with the EOS token, so a re-rendered history "
                "cannot be continued; use a ChatML-style template (Qwen)"
            )
        cut = closers[-(new_turns + 1)]
        return rendered[cut + 1 :] if self._last_reply_closed else rendered[cut:]

    def add_reply(self, generation: Generation) -> None:
        self._append(generation.token_ids, 1, generation.logprobs)
        eos = self.tokenizer.eos_token_id
        self._last_reply_closed = bool(generation.token_ids) and generation.token_ids[-1] == eos
        self.turns += 1

    def rollback(self, n_tokens: int) -> None:
        """Drop the last ``n_tokens`` (an environment turn that got no reply)."""
        if n_tokens:
            del self.completion_ids[-n_tokens:]
            del self.mask[-n_tokens:]
            if self.logprobs is not None:
                del self.logprobs[-n_tokens:]

    def _append(self, ids: list[int], flag: int, logprobs: list[float] | None) -> None:
        self.completion_ids += ids
        self.mask += [flag] * len(ids)
        if self.logprobs is not None:
            if flag == 1 and logprobs is None:
                self.logprobs = None  # one reply without log-probs: none for the trajectory
            else:
                self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)


class TracingPolicy:
    """The planner's policy during training: the model being trained, token-exact."""

    name = "trainer"
    model = "policy-under-training"

    def __init__(self, trace: TokenTrace, generator: TokenGenerator, *, max_completion_length: int, protocol: str = "genevolve") -> None:
        if protocol != "genevolve":
            raise ValueError("training rollouts use the 'genevolve' text protocol (the released checkpoint's)")
        self.trace = trace
        self.generator = generator
        self.max_completion_length = max_completion_length
        self.protocol = protocol

    async def respond(self, messages: list[BaseMessage], ctx: AgentContext) -> AIMessage:
        chat = chat_dicts(messages, self.protocol)
        if any(not isinstance(m.get("content"), str) for m in chat):
            raise TemplateError("a message holds non-text parts (images); training rollouts are text-only")
        ids, env_tokens = self.trace.prompt_for(chat)
        budget = min(ctx.max_tokens, self.max_completion_length - len(self.trace.completion_ids))
        if budget <= 0:
            self.trace.rollback(env_tokens)
            raise BudgetExhausted(f"the trajectory reached max_completion_length ({self.max_completion_length} tokens) without an answer")
        try:
            generation = await self.generator.generate(ids, budget)
        except GenerationError as exc:
            self.trace.rollback(env_tokens)
            raise PolicyError(str(exc)) from exc
        self.trace.add_reply(generation)
        reply_ids = generation.token_ids
        if reply_ids and reply_ids[-1] == self.trace.tokenizer.eos_token_id:
            reply_ids = reply_ids[:-1]
        text = self.trace.tokenizer.decode(reply_ids, skip_special_tokens=True)
        return AIMessage(content=text)


# --------------------------------------------------------------------------- rollouts


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


def request_of(prompt: Any) -> str:
    """The image request of a TRL prompt (conversational: the last user turn; else the text)."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(prompt):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    raise ValueError("a prompt holds no user turn with the image request")


def request_prompt(request: str, ctx: AgentContext) -> list[dict[str, Any]]:
    """The dataset ``prompt`` for a request: exactly the graph's first two messages."""
    from genevolve_graph.nodes.planner import initial_messages

    return chat_dicts(initial_messages(request, ctx), "genevolve")


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
        if ctx.options.get("show_images"):
            raise ValueError("training rollouts are text-only: remove the 'show_images' option (thumbnails in observations are for vision policies)")
        self.ctx = replace(ctx, renderer="none")
        self.generator = generator
        self.max_concurrency = max_concurrency
        self.services = {"search": search, "image_search": image_search, "skills": skills}
        self.last_results: list[RolloutResult] = []
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
        tokenizer = trainer.processing_class
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        kwargs = dict(getattr(trainer, "chat_template_kwargs", None) or {})
        generator, local_model = self._generator_for(trainer, tokenizer)
        requests = [request_of(p) for p in prompts]
        if local_model is not None:
            from trl.models import unwrap_model_for_generation

            with unwrap_model_for_generation(
                trainer.model_wrapped, trainer.accelerator, gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs
            ) as unwrapped:
                generator.model = unwrapped
                results = self.run(requests, tokenizer=tokenizer, generator=generator,
                                   max_completion_length=trainer.max_completion_length, chat_template_kwargs=kwargs)
        else:
            results = self.run(requests, tokenizer=tokenizer, generator=generator,
                               max_completion_length=trainer.max_completion_length, chat_template_kwargs=kwargs)
        self._log(trainer, results)
        output = self.to_trl(results)
        if output["logprobs"] is None and getattr(trainer, "use_vllm", False) and getattr(trainer.args, "vllm_importance_sampling_correction", False):
            raise RuntimeError(
                "the generation endpoint returned no log-probs, which TRL's vLLM importance-sampling correction needs; "
                "serve the policy with vLLM (logprobs on) or set grpo.vllm_importance_sampling_correction: false"
            )
        return output

    def _generator_for(self, trainer: Any, tokenizer: Any) -> tuple[TokenGenerator, Any]:
        if self.generator is not None:
            return self.generator, None
        args = trainer.args
        sampling = SamplingParams.from_args(args)
        if getattr(trainer, "use_vllm", False):
            if getattr(args, "vllm_mode", "server") != "server":
                raise ValueError("GenEvolve rollouts generate through an HTTP endpoint: set vllm_mode: server (see docs/training.md)")
            base = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
            self.generator = CompletionsGenerator(base, sampling=sampling, extra_body=dict(getattr(args, "generation_kwargs", None) or {}))
            return self.generator, None
        generator = LocalGenerator(trainer.model, tokenizer, sampling)
        return generator, trainer.model

    def run(
        self,
        requests: list[str],
        *,
        tokenizer: Any,
        generator: TokenGenerator,
        max_completion_length: int,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> list[RolloutResult]:
        """Roll out every request (blocking); results in the order of ``requests``."""
        return self._run(self.arun(requests, tokenizer=tokenizer, generator=generator,
                                   max_completion_length=max_completion_length, chat_template_kwargs=chat_template_kwargs))

    async def arun(
        self,
        requests: list[str],
        *,
        tokenizer: Any,
        generator: TokenGenerator,
        max_completion_length: int,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> list[RolloutResult]:
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def one(request: str) -> RolloutResult:
            async with semaphore:
                return await self.rollout(request, tokenizer=tokenizer, generator=generator,
                                          max_completion_length=max_completion_length, chat_template_kwargs=chat_template_kwargs)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def rollout(
        self,
        request: str,
        *,
        tokenizer: Any,
        generator: TokenGenerator,
        max_completion_length: int,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> RolloutResult:
        """One trajectory through the agent graph."""
        from genevolve_graph.graph import build_graph, recursion_limit

        trace = TokenTrace(tokenizer, dict(chat_template_kwargs or {}))
        policy = TracingPolicy(trace, generator, max_completion_length=max_completion_length)
        graph = build_graph(None, policy=policy, **{k: v for k, v in self.services.items() if v is not None})
        values = await graph.ainvoke({"request": request}, {"recursion_limit": recursion_limit(self.ctx)}, context=self.ctx)
        messages = list(values.get("messages") or [])
        error = values.get("error")
        truncated = bool(error) and "max_completion_length" in str(error)
        failed = values.get("termination") == "error" and not truncated
        program: Program | None = values.get("program")
        if not trace.prompt_ids:  # the graph stopped before the first turn (bad request)
            trace.prompt_ids = trace.render(request_prompt(request, self.ctx))
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
    "TokenTrace",
    "TracingPolicy",
    "request_prompt",
    "request_of",
]
