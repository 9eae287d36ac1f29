"""``CompletionsGenerator``: token-id prompts to an OpenAI-compatible ``/v1/completions`` server.

This is the vLLM server of TRL's ``vllm_mode="server"`` (whose weights TRL syncs before each
rollout) or any server that honours ``return_token_ids``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from genevolve_graph.net.limits import OutboundLimits, ReplyTooLarge, limited_client

from genevolve_graph.training.generation.base import Generation, GenerationError, SamplingParams


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
            # Under the outbound policy (net.limits): ``timeout`` is each request's total deadline, the reply capped.
            client = limited_client(OutboundLimits.resolve(total_deadline_s=self.timeout), base_url=self.base_url)
            self._clients[key] = client
        return client

    async def _model_name(self) -> str:
        if self.model is None:
            response = await self._client().get("/v1/models")
            response.raise_for_status()
            self.model = response.json()["data"][0]["id"]
        return self.model

    backend = "vLLM server (/v1/completions)"

    def accepts_images(self) -> bool:
        """Token-id completions carry no images (checked at start-up by ``GenEvolveRollout.check_backend``)."""
        return False

    async def generate(self, prompt_ids: list[int], max_new_tokens: int, *, images: list[str] | None = None) -> Generation:
        if images:
            raise GenerationError(
                "the /v1/completions endpoint takes token ids without images; roll out a vision-language policy with the "
                "trainer's own model (no vLLM) or colocated vLLM (vllm_mode: colocate), which receive the images"
            )
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
            except ReplyTooLarge as exc:  # the same request would get the same reply
                raise GenerationError(str(exc)) from None
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
