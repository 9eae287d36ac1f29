"""Image observations in training rollouts, for a vision-language policy.

At inference with ``--show-images`` the tools node appends thumbnails of the retrieved images
to the ``<tool_response>`` turn as ``image_url`` parts, and a VLM server (vLLM) renders each
with its processor: the chat template writes the vision placeholder and the processor expands
it to the image's own number of image tokens. A request may also carry the user's reference
images (``request_images``), shown after the request text.

Training must see the same tokens and the same pixels:

* **Tokens.** Each turn's chat goes through the policy's *processor*
  (``processor.apply_chat_template(..., tokenize=True)``), which loads the data-URI images and
  expands the placeholders exactly as the serving processor does; the flat trace stays
  token-exact with the requests inference sends (``tests/training/test_vision_rollout.py``).
* **Pixels.** The images of a trajectory, in the order they appear in its tokens, are kept
  as their data URIs; :func:`multimodal_inputs` turns a batch of them into the model's
  ``pixel_values`` / ``image_grid_thw`` (with TRL's ``num_images``) through the same image
  processor, and :func:`mm_token_type_ids` marks the image tokens, so that every forward of
  the trainer (old, reference, student and SDL teacher log-probs) and the local sampler see
  the images the tokens stand for. The image-token count is checked against the processor's
  features for every row: a mismatch is an error, never a silent text-only forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IMAGE_PART_TYPES = ("image_url", "image")


def is_processor(processing_class: Any) -> bool:
    """Whether ``processing_class`` is a multimodal processor (it has an image processor)."""
    return getattr(processing_class, "image_processor", None) is not None


def text_tokenizer(processing_class: Any) -> Any:
    """The tokenizer inside a processor (or the tokenizer itself)."""
    return getattr(processing_class, "tokenizer", processing_class)


def image_urls(chat: Sequence[dict[str, Any]]) -> list[str]:
    """The images of a chat in order of appearance (their URLs: data URIs or file paths)."""
    urls: list[str] = []
    for message in chat:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "image_url":
                url = part.get("image_url")
                urls.append(url.get("url") if isinstance(url, dict) else str(url))
            elif part.get("type") == "image":
                urls.append(str(part.get("url") or part.get("path") or part.get("image")))
    return urls


def has_images(chat: Sequence[dict[str, Any]]) -> bool:
    return any(isinstance(m.get("content"), list) and any(isinstance(p, dict) and p.get("type") in IMAGE_PART_TYPES for p in m["content"]) for m in chat)


def image_token_id(processing_class: Any) -> int | None:
    """The id of the processor's image placeholder token (``<|image_pad|>``, ``<image>``, ...)."""
    value = getattr(processing_class, "image_token_id", None)
    if value is not None:
        return int(value)
    token = getattr(processing_class, "image_token", None)
    if token is None:
        return None
    return int(text_tokenizer(processing_class).convert_tokens_to_ids(token))


def load_images(urls: Sequence[str]) -> list[Any]:
    """PIL images from data URIs / paths, decoded as the processor's chat template decodes them."""
    from transformers.image_utils import load_image

    return [load_image(url) for url in urls]


def multimodal_inputs(processing_class: Any, rows: Sequence[Sequence[str]], device: Any = None) -> dict[str, Any]:
    """``pixel_values``, ``image_grid_thw`` (when the model uses it) and ``num_images`` for a batch.

    ``rows``: per sequence, the URLs of its images in token order. Empty when no row has an image.
    """
    flat = [url for row in rows for url in row]
    if not flat:
        return {}
    features = processing_class.image_processor(images=load_images(flat), return_tensors="pt")
    out: dict[str, Any] = {k: v.to(device) if device is not None and hasattr(v, "to") else v for k, v in features.items()}
    out["num_images"] = [len(row) for row in rows]
    return out


def image_tokens_per_image(processing_class: Any, inputs: dict[str, Any]) -> list[int]:
    """How many placeholder tokens the processor writes for each image of ``inputs``."""
    grid = inputs.get("image_grid_thw")
    if grid is not None:
        merge = int(getattr(processing_class.image_processor, "merge_size", 1) or 1)
        return [int(n) // (merge * merge) for n in grid.prod(-1).tolist()]
    per_image = getattr(processing_class, "num_image_tokens", None)
    if per_image is None:  # LLaVA-style: fixed count per image, read from a probe
        return []
    return [int(per_image)] * int(sum(inputs["num_images"]))


def mm_token_type_ids(input_ids: Any, processing_class: Any) -> Any:
    """1 on image placeholder tokens, 0 elsewhere (what Qwen-VL models read as ``mm_token_type_ids``)."""
    import torch

    token = image_token_id(processing_class)
    out = torch.zeros_like(input_ids)
    if token is not None:
        out[input_ids == token] = 1
    return out


def check_image_tokens(input_ids: Any, processing_class: Any, inputs: dict[str, Any]) -> None:
    """Every row holds exactly as many image tokens as its images have features (else an error
    that names the row: a cut-off image would otherwise silently desynchronise the forward)."""
    if not inputs:
        return
    per_image = image_tokens_per_image(processing_class, inputs)
    if not per_image:
        return
    token = image_token_id(processing_class)
    start = 0
    for row, count in enumerate(inputs["num_images"]):
        expected = sum(per_image[start : start + count])
        start += count
        found = int((input_ids[row] == token).sum())
        if found != expected:
            raise ValueError(
                f"row {row} holds {found} image tokens for {count} image(s) that need {expected}; "
                "a trajectory was cut inside an image (raise max_completion_length) or the processor changed between rollout and training"
            )


def select_rows(inputs: dict[str, Any], rows: Sequence[int]) -> dict[str, Any]:
    """The multimodal inputs of the sequences ``rows`` (in that order)."""
    import torch

    if not inputs:
        return {}
    counts = list(inputs["num_images"])
    starts = [0]
    for n in counts:
        starts.append(starts[-1] + n)
    images = [i for r in rows for i in range(starts[r], starts[r + 1])]
    out: dict[str, Any] = {"num_images": [counts[r] for r in rows]}
    pixel_values = inputs["pixel_values"]
    grid = inputs.get("image_grid_thw")
    if grid is not None:
        lengths = grid.prod(-1).tolist()
        offsets = [0]
        for n in lengths:
            offsets.append(offsets[-1] + int(n))
        pieces = [pixel_values[offsets[i] : offsets[i + 1]] for i in images]
        out["pixel_values"] = torch.cat(pieces) if pieces else pixel_values[:0]
        out["image_grid_thw"] = grid[images] if images else grid[:0]
    else:
        out["pixel_values"] = pixel_values[images] if images else pixel_values[:0]
    return out


def forward_kwargs(input_ids: Any, processing_class: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments a forward of ``input_ids`` needs for its images (nothing without images)."""
    if not inputs or sum(inputs["num_images"]) == 0:
        return {}
    kwargs = {k: v for k, v in inputs.items() if k != "num_images"}
    if "image_grid_thw" in inputs:
        kwargs["mm_token_type_ids"] = mm_token_type_ids(input_ids, processing_class)
    return kwargs
