"""The Gemini backend: Nano Banana Pro (``gemini-3-pro-image-preview``) through google-genai.

References go in as inline image parts, each after a line naming it by its ordinal ("the
first reference image"), the words the program's ``gen_prompt`` uses; then the prompt.
Retries of 408/429/5xx are the SDK's own (``HttpRetryOptions``: exponential backoff with
jitter), so rate limits are handled where the wire is. A safety block is not retried: it
comes back as a render error that says which reason Gemini gave.

The API key comes from ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY`` and never from the
context, so it never reaches a checkpoint. ``gemini_base_url`` points the SDK at a
compatible gateway (or a test server).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genevolve_graph.generators.base import RenderError
from genevolve_graph.core.options import get_float, get_int, get_str
from genevolve_graph.generators.references import PreparedReference, prepare_program_references
from genevolve_graph.safety.imaging import UnsafeImageError, decode_image_bytes
from genevolve_graph.core.state import Program, RenderResult

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-3-pro-image-preview"
API_KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGE_SIZES = ("1K", "2K", "4K")
RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)
GEMINI_MAX_REFERENCE_BYTES = 7 * 1024 * 1024
"""Inline parts above this are re-encoded smaller (the request as a whole is capped at 20 MB)."""
MAX_RESPONSE_PIXELS = 64_000_000
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth", "thirteenth", "fourteenth")


@dataclass(frozen=True)
class GeminiConfig:
    """The Gemini backend's options, read from ``AgentContext.options``."""

    api_key: str
    model: str = DEFAULT_MODEL
    base_url: str | None = None
    image_size: str = "1K"
    aspect_ratio: str = "auto"
    attempts: int = 5
    retry_delay: float = 1.0
    max_retry_delay: float = 60.0
    timeout: float = 300.0

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        from genevolve_graph.safety.redaction import redact_url

        base_url = redact_url(self.base_url) if self.base_url else self.base_url
        return f"GeminiConfig(model={self.model!r}, base_url={base_url!r}, image_size={self.image_size!r})"

    @classmethod
    def from_options(cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> "GeminiConfig":
        environ = os.environ if environ is None else environ
        api_key = next((environ[name] for name in API_KEY_VARIABLES if environ.get(name)), "")
        if not api_key:
            raise RenderError("the gemini renderer needs an API key: set GOOGLE_API_KEY or GEMINI_API_KEY in the environment")
        try:
            image_size = get_str(options, "gemini_image_size", "1K").upper()
            if image_size not in IMAGE_SIZES:
                raise ValueError(f"option 'gemini_image_size' must be one of {', '.join(IMAGE_SIZES)}, not {image_size!r}")
            aspect = get_str(options, "gemini_aspect_ratio", "auto")
            if aspect != "auto" and aspect not in ASPECT_RATIOS:
                raise ValueError(f"option 'gemini_aspect_ratio' must be auto or one of {', '.join(ASPECT_RATIOS)}, not {aspect!r}")
            return cls(
                api_key=api_key,
                model=get_str(options, "gemini_model", DEFAULT_MODEL),
                base_url=get_str(options, "gemini_base_url"),
                image_size=image_size,
                aspect_ratio=aspect,
                attempts=get_int(options, "gemini_retries", 5, minimum=1),
                retry_delay=get_float(options, "gemini_retry_delay", 1.0, minimum=0.0),
                timeout=get_float(options, "gemini_timeout", 300.0, minimum=0.001),
            )
        except ValueError as exc:
            raise RenderError(str(exc)) from None


def nearest_aspect_ratio(size: tuple[int, int] | None) -> str:
    """The supported aspect ratio closest (in log scale) to an image size; 1:1 without one."""
    if size is None:
        return "1:1"
    target = math.log(size[0] / size[1])

    def distance(ratio: str) -> float:
        width, height = (int(part) for part in ratio.split(":"))
        return abs(math.log(width / height) - target)

    return min(ASPECT_RATIOS, key=distance)


def reference_label(index: int, note: str) -> str:
    """The text before the ``index``-th (0-based) reference part."""
    ordinal = ORDINALS[index] if index < len(ORDINALS) else f"#{index + 1}"
    return f"The {ordinal} reference image" + (f" (note: {note})" if note else "") + ":"


class GeminiRenderer:
    """Renders programs with a Gemini image model."""

    name = "gemini"

    def __init__(self, config: GeminiConfig) -> None:
        from google import genai
        from google.genai import types

        self.config = config
        self._types = types
        http_options = types.HttpOptions(
            base_url=config.base_url,
            timeout=int(config.timeout * 1000),  # milliseconds
            retry_options=types.HttpRetryOptions(
                attempts=config.attempts,
                initial_delay=config.retry_delay,
                max_delay=config.max_retry_delay,
                exp_base=2,
                jitter=config.retry_delay,  # the SDK default (1 s) for the default delay; tests go faster
                http_status_codes=list(RETRY_STATUS_CODES),
            ),
        )
        self._client = genai.Client(api_key=config.api_key, vertexai=False, http_options=http_options)

    def contents(self, program: Program, references: list[PreparedReference]) -> list[Any]:
        """One user turn: a label and an inline part per reference, then the prompt."""
        types = self._types
        parts: list[Any] = []
        for index, (reference, prepared) in enumerate(zip(program.reference_images, references)):
            parts.append(types.Part.from_text(text=reference_label(index, reference.note)))
            parts.append(types.Part.from_bytes(data=prepared.data, mime_type=prepared.mime))
        parts.append(types.Part.from_text(text=program.gen_prompt))
        return [types.Content(role="user", parts=parts)]

    def generation_config(self, references: list[PreparedReference], seed: int = 0) -> Any:
        types = self._types
        aspect = self.config.aspect_ratio
        if aspect == "auto":
            aspect = nearest_aspect_ratio(references[0].size if references else None)
        return types.GenerateContentConfig(
            seed=int(seed),
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=aspect, image_size=self.config.image_size),
        )

    async def render(self, program: Program, out_path: Path, *, seed: int = 0) -> RenderResult:
        from google.genai import errors

        started = time.perf_counter()
        out_path = Path(out_path)
        try:
            references = await asyncio.to_thread(prepare_program_references, program, max_bytes=GEMINI_MAX_REFERENCE_BYTES)
            response = await self._client.aio.models.generate_content(
                model=self.config.model,
                contents=self.contents(program, references),
                config=self.generation_config(references, seed),
            )
            data = image_from_response(response)
            await asyncio.to_thread(_save_png, data, out_path)
        except RenderError as exc:
            return RenderResult(success=False, backend=self.name, error=str(exc), seconds=time.perf_counter() - started)
        except errors.APIError as exc:
            message = f"Gemini API error {exc.code} {exc.status or ''}: {exc.message or exc}".replace("  ", " ")
            return RenderResult(success=False, backend=self.name, error=message, seconds=time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - network errors etc. are results, not crashes of the graph
            log.exception("gemini render failed")
            return RenderResult(success=False, backend=self.name, error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - started)
        return RenderResult(success=True, output_path=str(out_path), backend=self.name, seconds=time.perf_counter() - started)


def _enum_name(value: Any) -> str:
    return getattr(value, "name", None) or str(value)


def image_from_response(response: Any) -> bytes:
    """The final image of a response, or a ``RenderError`` that says why there is none."""
    candidates = response.candidates or []
    if not candidates:
        feedback = response.prompt_feedback
        reason = _enum_name(feedback.block_reason) if feedback is not None and feedback.block_reason else "no reason given"
        detail = f": {feedback.block_reason_message}" if feedback is not None and feedback.block_reason_message else ""
        raise RenderError(f"Gemini blocked the request ({reason}){detail}")
    candidate = candidates[0]
    parts = (candidate.content.parts if candidate.content is not None else None) or []
    images = [part.inline_data.data for part in parts if part.inline_data is not None and part.inline_data.data and not part.thought]
    if not images:
        reason = _enum_name(candidate.finish_reason) if candidate.finish_reason else "unknown"
        said = " ".join(part.text for part in parts if part.text and not part.thought).strip()
        message = f"Gemini returned no image (finish reason {reason})"
        if candidate.finish_message:
            message += f": {candidate.finish_message}"
        if said:
            message += f"; the model said: {said[:500]}"
        raise RenderError(message)
    return images[-1]


def _save_png(data: bytes, out_path: Path) -> None:
    try:
        image = decode_image_bytes(data, max_pixels=MAX_RESPONSE_PIXELS, max_bytes=max(len(data), 1))
    except UnsafeImageError as exc:
        raise RenderError(f"Gemini sent an unusable image: {exc}") from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    image.save(out_path, format="PNG")


def from_context(ctx: "AgentContext") -> GeminiRenderer:
    """Registry factory: the Gemini renderer configured by ``ctx.options`` and the environment."""
    return GeminiRenderer(GeminiConfig.from_options(ctx.options))
