"""A tiny Qwen-Image-Edit-Plus pipeline built from configs, for tests and benchmarks.

It has the real component classes of ``Qwen/Qwen-Image-Edit-2511`` (Qwen2.5-VL text
encoder, Qwen-Image transformer and VAE, flow-matching scheduler, Qwen2 tokenizer and
Qwen2-VL processor) at a few million parameters, so the whole diffusers code path runs on
a CPU in a fraction of a second. Nothing is downloaded: the tokenizer is byte-level with
no merges and the image processor is the pure-PIL one.

``save_tiny_pipeline`` writes it in the layout of the released model (one folder per
component, ``model_index.json``), so tests load it back through the same loader users run
(:func:`genevolve_graph.generators.diffusers_backend.load_pipeline`).

Its output is noise: it proves plumbing, not quality. Run it with the loader options
``vae_image_pixels=TINY_VAE_IMAGE_PIXELS`` and ``condition_image_pixels=TINY_CONDITION_IMAGE_PIXELS``
and small output sizes (long side 64), otherwise references are resized to ~1 MP and a
render takes a minute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_VAE_IMAGE_PIXELS = 64 * 64
TINY_CONDITION_IMAGE_PIXELS = 56 * 56
TINY_LONG_SIDE = 64

SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]


def tiny_tokenizer() -> Any:
    """A byte-level Qwen2 tokenizer: 256 byte symbols, no merges, Qwen's special tokens."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab = {symbol: index for index, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    return tokenizer


def tiny_processor(tokenizer: Any) -> Any:
    """The image-only Qwen2-VL processor with small internal image sizes."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from genevolve_graph.generators.qwen_processor import ImageOnlyQwen2VLProcessor

    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 4)
    return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_text_encoder(tokenizer: Any) -> Any:
    """A two-layer Qwen2.5-VL with a two-block vision tower, hidden size 16."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    token = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1_000_000.0,
            "vocab_size": len(tokenizer),
            "bos_token_id": None,
            "eos_token_id": token("<|im_end|>"),
            "pad_token_id": token("<|endoftext|>"),
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16,
        vocab_size=len(tokenizer),
        image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"),
        vision_token_id=token("<|vision_pad|>"),
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def tiny_components(seed: int = 0) -> dict[str, Any]:
    """The six components of ``QwenImageEditPlusPipeline``, deterministically initialised."""
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": vae.eval(),
        "text_encoder": tiny_text_encoder(tokenizer),
        "tokenizer": tokenizer,
        "processor": tiny_processor(tokenizer),
        "transformer": transformer.eval(),
    }


def build_tiny_edit_pipeline(seed: int = 0) -> Any:
    """A ``QwenImageEditPlusPipeline`` of tiny components (in memory)."""
    from diffusers import QwenImageEditPlusPipeline

    return QwenImageEditPlusPipeline(**tiny_components(seed))


def save_tiny_pipeline(pipe: Any, directory: str | Path) -> Path:
    """Save an edit pipeline in the released layout; returns the directory.

    ``save_pretrained`` cannot save a processor without its video part, so each
    component is saved by itself and the processor folder gets the tokenizer files and
    the image processor config, as in the released model. ``model_index.json`` names the
    stock ``Qwen2VLProcessor``, as the released model does.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, component in pipe.components.items():
        if name == "processor":
            component.tokenizer.save_pretrained(directory / name)
            component.image_processor.save_pretrained(directory / name)
        else:
            component.save_pretrained(directory / name)
    pipe.save_config(directory)
    index_path = directory / "model_index.json"
    index = json.loads(index_path.read_text())
    if "processor" in index:
        index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_path.write_text(json.dumps(index, indent=2))
    return directory


def save_tiny_text_to_image_pipeline(pipe: Any, directory: str | Path) -> Path:
    """Save a tiny ``QwenImagePipeline`` sharing the edit pipeline's components."""
    from diffusers import QwenImagePipeline

    directory = Path(directory)
    parts = {name: pipe.components[name] for name in ("scheduler", "vae", "text_encoder", "tokenizer", "transformer")}
    QwenImagePipeline(**parts).save_pretrained(directory)
    return directory


def tiny_loader_options() -> dict[str, Any]:
    """Backend options that make the tiny pipeline fast on a CPU."""
    return {
        "device": "cpu",
        "dtype": "float32",
        "vae_image_pixels": TINY_VAE_IMAGE_PIXELS,
        "condition_image_pixels": TINY_CONDITION_IMAGE_PIXELS,
        "long_side": TINY_LONG_SIDE,
        "num_inference_steps": 2,
        "processor": "image-only",
    }
