"""A tiny Qwen3-VL (the released policy's architecture) with its processor, built locally.

* Tokenizer: the tiny byte-level BPE of :mod:`genevolve_graph.testing.tiny_models` plus
  Qwen-VL's vision tokens (``<|vision_start|>``, ``<|image_pad|>``, ``<|vision_end|>``,
  ``<|video_pad|>``) and the stock Qwen3-VL chat template that TRL ships (read from the
  installed ``trl`` package).
* Processor: ``Qwen3VLProcessor`` over the PIL Qwen2-VL image processor (4-pixel patches,
  2x2 merge, images resized to 16..32 px a side, so an image is 4 to 16 tokens). The CI image
  has no torchvision, which transformers' *video* processor needs, so the processor is built
  without one (:class:`ImageOnlyQwen3VLProcessor`); the image path, the one GenEvolve uses,
  is transformers' own code.
* Model: a randomly initialised ``Qwen3VLForConditionalGeneration`` (about 60k parameters).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def _processor_class():
    from transformers import Qwen3VLProcessor

    class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
        """``Qwen3VLProcessor`` for images only (no video processor, so no torchvision needed)."""

        @classmethod
        def get_attributes(cls) -> list[str]:
            return ["image_processor", "tokenizer"]

    return ImageOnlyQwen3VLProcessor


def qwen3_vl_chat_template() -> str:
    """The Qwen3-VL chat template as shipped inside the installed ``trl`` package."""
    return (importlib.resources.files("trl") / "chat_templates" / "qwen3_vl.jinja").read_text()


def build_tiny_vlm_processor(vocab_size: int = 640, *, min_side: int = 16, max_side: int = 32) -> Any:
    """The tiny Qwen3-VL processor (tokenizer + PIL image processor)."""
    from tokenizers import AddedToken
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from genevolve_graph.testing.tiny_models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(vocab_size)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in VISION_TOKENS], special_tokens=True)
    template = qwen3_vl_chat_template()
    tokenizer.chat_template = template
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=min_side * min_side, max_pixels=max_side * max_side
    )
    return _processor_class()(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def build_tiny_vlm(processor: Any, *, seed: int = 0) -> Any:
    """A random tiny ``Qwen3VLForConditionalGeneration`` matching ``processor``."""
    import torch
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, rope_scaling={"rope_type": "default", "mrope_section": [1, 1, 2]}, max_position_embeddings=8192,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
        ),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2, deepstack_visual_indexes=[0], num_position_embeddings=64),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    return model


def save_tiny_vlm(directory: str | Path, *, seed: int = 0) -> Path:
    """Model and processor saved to ``directory`` (for runs that load a policy by path)."""
    directory = Path(directory)
    processor = build_tiny_vlm_processor()
    build_tiny_vlm(processor, seed=seed).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
