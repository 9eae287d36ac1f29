"""Backend options: the names renderers read from ``AgentContext.options``, and typed access.

``AgentContext.options`` is one flat dict shared by all backends (it must stay JSON for
checkpoints and Studio), so each backend reads the keys it knows and ignores the rest.
Values may arrive as strings (command line, Studio forms): the readers below convert
them and raise a ``ValueError`` that names the option and what it accepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

OPTION_DOCS: dict[str, dict[str, str]] = {
    "diffusers": {
        "pipeline": "Local folder or hub id of a reference-conditioned pipeline (default Qwen/Qwen-Image-Edit-2511).",
        "pipeline_class": "diffusers pipeline class name or 'module:Class' (default QwenImageEditPlusPipeline; 'auto' reads model_index.json).",
        "t2i_pipeline": "Pipeline for programs without references, e.g. Qwen/Qwen-Image (default: none, such programs fail with a clear error).",
        "t2i_pipeline_class": "Class of t2i_pipeline (default QwenImagePipeline).",
        "dtype": "auto | bfloat16 | float16 | float32 (auto: bfloat16 on CUDA, float32 otherwise).",
        "device": "auto | cuda | cuda:N | mps | cpu (auto: cuda when available).",
        "offload": "none | model | sequential: diffusers CPU offload for GPUs too small for the model.",
        "processor": "auto | image-only | default: 'image-only' builds the Qwen2-VL processor without torchvision; auto does so when torchvision is missing.",
        "multi_reference": "Pass all references as a list (default: true for QwenImageEditPlusPipeline, else one reference only).",
        "vae_image_pixels": "Pixel area references are resized to for the VAE (Qwen edit pipelines; process-wide; default the pipeline's 1024*1024).",
        "condition_image_pixels": "Pixel area references are resized to for the VL condition (Qwen edit pipelines; process-wide; default 384*384).",
    },
    "service": {
        "service_urls": "Render service base URLs (list or comma-separated), used round-robin with failover.",
        "service_concurrency": "Requests in flight per endpoint (default 2).",
        "service_timeout": "Seconds one request may take (default 1800).",
        "service_retries": "Retries after the first attempt on 503, 5xx, timeouts and connection errors (default 3).",
        "service_retry_delay": "First backoff delay in seconds, doubled per retry with jitter (default 1.0).",
    },
    "gemini": {
        "gemini_model": "Gemini image model (default gemini-3-pro-image-preview).",
        "gemini_base_url": "Base URL of a Gemini-compatible gateway (default Google's endpoint).",
        "gemini_image_size": "1K | 2K | 4K (default 1K).",
        "gemini_aspect_ratio": "auto (from the first reference, 1:1 without one) or e.g. 16:9.",
        "gemini_retries": "Attempts in all for 408/429/5xx answers (default 5).",
        "gemini_retry_delay": "First retry delay in seconds (default 1.0).",
        "gemini_timeout": "Seconds one request may take (default 300).",
    },
    "generation (diffusers and service)": {
        "num_inference_steps": "Denoising steps (default 40).",
        "true_cfg_scale": "Qwen true classifier-free guidance scale (default 4.0).",
        "guidance_scale": "Guidance of guidance-distilled models (default 1.0).",
        "negative_prompt": "Negative prompt (default ' ').",
        "long_side": "Output long side; the size follows the first reference's aspect, multiples of 16 (default 1024).",
        "width": "Fixed output width (with height; overrides long_side).",
        "height": "Fixed output height (with width).",
    },
}
"""Every option name the generator backends read, with what it means (also in docs/generators.md)."""


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def get_str(options: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    """A string option; empty means the default."""
    value = options.get(key)
    return default if _missing(value) else str(value).strip()


def get_int(options: Mapping[str, Any], key: str, default: int | None = None, *, minimum: int | None = None) -> int | None:
    """An integer option (``"12"`` is accepted)."""
    value = options.get(key)
    if _missing(value):
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
        if number is None:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"option {key!r} must be an integer, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"option {key!r} must be at least {minimum}, not {number}")
    return number


def get_float(options: Mapping[str, Any], key: str, default: float | None = None, *, minimum: float | None = None) -> float | None:
    """A number option (``"1.5"`` is accepted)."""
    value = options.get(key)
    if _missing(value):
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {key!r} must be a number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"option {key!r} must be at least {minimum}, not {number}")
    return number


def get_bool(options: Mapping[str, Any], key: str, default: bool | None = None) -> bool | None:
    """A yes/no option (true/false, yes/no, 1/0, on/off)."""
    value = options.get(key)
    if _missing(value):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"option {key!r} must be true or false, not {value!r}")


def get_list(options: Mapping[str, Any], key: str) -> list[str]:
    """A list option: a list, a JSON list or a comma-separated string."""
    value = options.get(key)
    if _missing(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"option {key!r} is not a valid JSON list: {text!r}") from None
        else:
            value = text.split(",")
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"option {key!r} must be a list of strings, not {value!r}")
    return [str(item).strip() for item in value if str(item).strip()]


def parse_option_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """``["steps=8", "true_cfg_scale=4"]`` -> ``{"steps": 8, "true_cfg_scale": 4}``.

    A value that parses as JSON (numbers, true/false, lists) keeps that type; anything
    else stays a string.
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"option {pair!r} must look like KEY=VALUE")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def renderer_options_from_cli(
    *,
    service_urls: Iterable[str] = (),
    pipeline: str | None = None,
    pipeline_class: str | None = None,
    t2i_pipeline: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
    gemini_model: str | None = None,
    gemini_base_url: str | None = None,
    extra: Iterable[str] = (),
) -> dict[str, Any]:
    """The ``AgentContext.options`` for renderer flags of a command line.

    Flags left out are left out of the dict, so backend defaults apply. ``extra`` takes
    ``KEY=VALUE`` pairs (``--render-option num_inference_steps=8``) for everything else
    in :data:`OPTION_DOCS`; explicit flags win over them.
    """
    options = parse_option_pairs(extra)
    urls = [url for item in service_urls for url in str(item).split(",") if url.strip()]
    if urls:
        options["service_urls"] = [url.strip() for url in urls]
    named = {
        "pipeline": pipeline,
        "pipeline_class": pipeline_class,
        "t2i_pipeline": t2i_pipeline,
        "dtype": dtype,
        "device": device,
        "gemini_model": gemini_model,
        "gemini_base_url": gemini_base_url,
    }
    options.update({key: value for key, value in named.items() if value not in (None, "")})
    return options
