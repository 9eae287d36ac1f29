"""Scripted token generation for training tests and benchmarks.

Random tiny models never write a tool call, so training tests script the policy's replies,
but at the token level, where training happens:

* :class:`ScriptedPolicyScript`: per request, several *variants* (one per rollout of a GRPO
  group, handed out in arrival order), each a list of reply texts, one per turn. A reply is
  found from the token-id prompt alone: the request is the first user turn, the turn number is
  the number of assistant turns before, and the variant is the one whose earlier replies the
  prompt contains.
* :class:`ScriptedTokenGenerator`: an in-process ``TokenGenerator`` over a script.
* :class:`ScriptedCompletionsServer`: the same behind ``POST /v1/completions`` with token-id
  prompts and ``return_token_ids``, as vLLM serves it (so the HTTP generation path is tested
  for real). Replies come back tokenized with the tiny tokenizer, ending with EOS.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from genevolve_graph.testing.server_thread import ServedApp


@dataclass
class ScriptedPolicyScript:
    """``variants[request_key] = [[turn0, turn1, ...], [turn0, ...], ...]``."""

    tokenizer: Any
    variants: dict[str, list[list[str]]]
    logprob: float = -0.5
    _handed: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reply_text(self, prompt_ids: list[int]) -> str:
        text = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        user_turns = text.split("<|im_start|>user\n")
        if len(user_turns) < 2:
            raise KeyError("the prompt has no user turn")
        request = user_turns[1].split("<|im_end|>")[0]
        keys = [k for k in self.variants if k in request]
        if not keys:
            raise KeyError(f"no script for request {request[:80]!r}")
        key = max(keys, key=len)
        turn = text.count("<|im_start|>assistant") - 1
        options = self.variants[key]
        if turn == 0:
            with self._lock:
                index = self._handed.get(key, 0)
                self._handed[key] = index + 1
            replies = options[index % len(options)]
        else:
            matching = [v for v in options if all(r in text for r in v[:turn])]
            if not matching:
                raise KeyError(f"no variant of {key!r} matches the conversation at turn {turn}")
            replies = matching[0]
        if turn >= len(replies):
            raise KeyError(f"script for {key!r} exhausted at turn {turn}")
        return replies[turn]

    def reply_ids(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        ids = self.tokenizer.encode(self.reply_text(prompt_ids), add_special_tokens=False) + [self.tokenizer.eos_token_id]
        return ids[:max_new_tokens]


class ScriptedTokenGenerator:
    """In-process ``TokenGenerator`` over a :class:`ScriptedPolicyScript`."""

    def __init__(self, script: ScriptedPolicyScript) -> None:
        self.script = script
        self.prompts: list[list[int]] = []
        self.images: list[list[str]] = []
        """Per call, the images that came with the prompt (a vision policy's)."""

    async def generate(self, prompt_ids: list[int], max_new_tokens: int, *, images: list[str] | None = None):
        from genevolve_graph.training.generation import Generation, GenerationError

        self.prompts.append(list(prompt_ids))
        self.images.append(list(images or []))
        try:
            ids = self.script.reply_ids(prompt_ids, max_new_tokens)
        except KeyError as exc:  # as the HTTP server answers 404
            raise GenerationError(f"scripted generation: {exc}") from exc
        return Generation(ids, [self.script.logprob] * len(ids))


class ScriptedCompletionsServer(ServedApp):
    """A vLLM-like ``/v1/completions`` endpoint answering from a script."""

    def __init__(self, script: ScriptedPolicyScript, *, model: str = "scripted-policy", outages: dict[str, int] | None = None) -> None:
        self.script = script
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.outages = dict(outages or {})
        """``{request substring: n}``: answer the next ``n`` first-turn requests for it with HTTP 503
        (a transient outage, as a restarting vLLM server gives)."""
        self.outage_answers = 0
        self.app = Starlette(routes=[
            Route("/v1/completions", self._complete, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _complete(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        prompt = body.get("prompt")
        if not (isinstance(prompt, list) and all(isinstance(t, int) for t in prompt)):
            return JSONResponse({"error": {"message": "this scripted server takes token-id prompts"}}, status_code=400)
        if self._outage(prompt):
            return JSONResponse({"error": {"message": "scripted outage: the server is restarting"}}, status_code=503)
        try:
            ids = self.script.reply_ids(prompt, int(body.get("max_tokens", 16)))
        except KeyError as exc:
            return JSONResponse({"error": {"message": str(exc)}}, status_code=404)
        finish = "stop" if ids and ids[-1] == self.script.tokenizer.eos_token_id else "length"
        choice = {
            "index": 0,
            "text": self.script.tokenizer.decode(ids, skip_special_tokens=True),
            "finish_reason": finish,
            "logprobs": {"token_logprobs": [self.script.logprob] * len(ids)} if body.get("logprobs") is not None else None,
            "prompt_token_ids": prompt if body.get("return_token_ids") else None,
            "token_ids": ids if body.get("return_token_ids") else None,
        }
        return JSONResponse({
            "id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": int(time.time()),
            "model": self.model, "choices": [choice],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(ids), "total_tokens": len(prompt) + len(ids)},
        })

    def _outage(self, prompt: list[int]) -> bool:
        if not self.outages:
            return False
        text = self.script.tokenizer.decode(prompt, skip_special_tokens=False)
        if text.count("<|im_start|>assistant") != 1:  # first turns only
            return False
        for key, left in self.outages.items():
            if left > 0 and key in text:
                self.outages[key] = left - 1
                self.outage_answers += 1
                return True
        return False

    @property
    def base_url(self) -> str:
        return self.url + "/v1"
