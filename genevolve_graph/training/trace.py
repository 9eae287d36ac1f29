"""Token bookkeeping of one trajectory: the flat sequence TRL trains on, and the policy that fills it.

:class:`TokenTrace` keeps the one flat token sequence of a trajectory:

    prompt (system + request + generation prompt)
    reply 1 (sampled, loss on)  |  tool response / control turn + generation prompt (loss off)
    reply 2 (sampled, loss on)  |  ...  |  final reply with <answer> (loss on)

Each turn's prompt is the previous flat sequence plus the new turns' tokens. When the chat
template renders the history exactly as it was sampled (checked every turn), that prompt *is*
``apply_chat_template(messages the graph sends)``, token for token. When the template re-renders
an earlier reply differently, the sampled tokens are kept (training must score what was sampled)
and the turn is counted (``retemplated_turns``).

:class:`TracingPolicy` is the planner's policy during training: it turns the graph's messages
into the exact chat the OpenAI-compatible policy would send, extends the trace, and samples the
reply from a :class:`~genevolve_graph.training.generation.TokenGenerator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from genevolve_graph.core.context import AgentContext
from genevolve_graph.policies.base import PolicyError
from genevolve_graph.core.protocol import chat_dicts
from genevolve_graph.training.generation.base import Generation, GenerationError, TokenGenerator
from genevolve_graph.training.vision import has_images, image_urls, is_processor


class BudgetExhausted(PolicyError):
    """The trajectory used up ``max_completion_length`` before answering."""



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
    images: list[str] = field(default_factory=list)
    """The images of the sequence in token order (data URIs), when the policy sees images."""
    _last_reply_closed: bool = True
    _segment_images: list[int] = field(default_factory=list)

    @property
    def text_tokenizer(self) -> Any:
        """The tokenizer (``tokenizer`` may be a VLM processor, which wraps one)."""
        return getattr(self.tokenizer, "tokenizer", self.tokenizer)

    def render(self, chat: list[dict[str, Any]]) -> list[int]:
        """``apply_chat_template(chat, add_generation_prompt=True)`` as token ids.

        With a VLM processor the processor renders the chat, so each image becomes its own
        number of image tokens, exactly as the serving processor writes them.
        """
        out = self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=True, **self.chat_template_kwargs
        )
        ids = out["input_ids"]
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return list(ids[0] if ids and isinstance(ids[0], list) else ids)

    @property
    def sequence(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    def prompt_for(self, chat: list[dict[str, Any]]) -> tuple[list[int], int]:
        """The ids to sample the next reply from, appending the new turns' tokens (mask 0).

        Returns (ids, number of environment tokens appended).
        """
        rendered = self.render(chat)
        urls = image_urls(chat)
        new_images = urls[len(self.images) :]
        if not self.prompt_ids:
            self.prompt_ids = rendered
            self.images += new_images
            return list(rendered), 0
        current = self.sequence
        if rendered[: len(current)] == current:
            env = rendered[len(current) :]
        else:
            self.retemplated_turns += 1
            env = self._suffix_after_last_reply(rendered, chat)
        self._append(env, 0, None)
        self.images += new_images
        if env:
            self._segment_images.append(len(new_images))
        return self.sequence, len(env)

    def _suffix_after_last_reply(self, rendered: list[int], chat: list[dict[str, Any]]) -> list[int]:
        """The tokens after the end-of-turn token that closes the last assistant reply."""
        last_assistant = max((i for i, m in enumerate(chat) if m["role"] == "assistant"), default=None)
        if last_assistant is None:
            raise TemplateError("no assistant turn to continue from")
        new_turns = len(chat) - last_assistant - 1
        eos = self.text_tokenizer.eos_token_id
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
        eos = self.text_tokenizer.eos_token_id
        self._last_reply_closed = bool(generation.token_ids) and generation.token_ids[-1] == eos
        self.turns += 1

    def add_placeholder(self) -> None:
        """One EOS token outside the loss (mask 0, log-prob 0.0) for a trajectory with no reply:
        TRL needs at least one completion token per row, and an outage must not end the step."""
        self._append([self.text_tokenizer.eos_token_id], 0, None)

    def rollback(self, n_tokens: int) -> None:
        """Drop the last ``n_tokens`` (an environment turn that got no reply)."""
        if n_tokens:
            del self.completion_ids[-n_tokens:]
            del self.mask[-n_tokens:]
            if self.logprobs is not None:
                del self.logprobs[-n_tokens:]
            dropped = self._segment_images.pop() if self._segment_images else 0
            if dropped:
                del self.images[-dropped:]

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
        if has_images(chat) and not is_processor(self.trace.tokenizer):
            raise TemplateError(
                "a message holds images but the policy's processing class is a text tokenizer; train a vision-language "
                "policy (its processor is loaded with it) or turn off show_images and drop the rows' request_images"
            )
        ids, env_tokens = self.trace.prompt_for(chat)
        budget = min(ctx.max_tokens, self.max_completion_length - len(self.trace.completion_ids))
        if budget <= 0:
            self.trace.rollback(env_tokens)
            raise BudgetExhausted(f"the trajectory reached max_completion_length ({self.max_completion_length} tokens) without an answer")
        try:
            if self.trace.images:
                generation = await self.generator.generate(ids, budget, images=list(self.trace.images))
            else:
                generation = await self.generator.generate(ids, budget)
        except GenerationError as exc:
            self.trace.rollback(env_tokens)
            raise PolicyError(str(exc)) from exc
        self.trace.add_reply(generation)
        reply_ids = generation.token_ids
        if reply_ids and reply_ids[-1] == self.trace.text_tokenizer.eos_token_id:
            reply_ids = reply_ids[:-1]
        text = self.trace.text_tokenizer.decode(reply_ids, skip_special_tokens=True)
        return AIMessage(content=text)
