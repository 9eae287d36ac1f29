"""A tiny Qwen3 causal LM and byte-level BPE tokenizer, built locally (no hub).

The tokenizer is trained on the texts the model will see, with the GenEvolve tags as
ordinary (non-special) added tokens, and carries the stock Qwen3 chat template that TRL
ships: for assistant-only loss TRL recognises it and swaps in its training variant with
``{% generation %}`` markers, exactly as it does for a real Qwen3 checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from genevolve_graph.testing.tiny_models import build_tiny_causal_lm, build_tiny_tokenizer


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):
    return build_tiny_tokenizer(vocab_size, corpus=corpus, padding_side="right")


def build_model(tokenizer, seed: int = 0):
    return build_tiny_causal_lm(tokenizer, seed=seed, max_position_embeddings=8192)


def save_tiny_model(directory: Path, corpus: Iterable[str], vocab_size: int = 1024) -> Path:
    tokenizer = build_tokenizer(corpus, vocab_size)
    model = build_model(tokenizer)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# A ChatML template with {% generation %} around assistant turns and an <image> token per image part.
CHATML_VISION_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.role == 'assistant' %}{% generation %}"
    "{%- if message.content is string %}{{- message.content }}{%- else %}"
    "{%- for part in message.content %}{%- if part.type == 'text' %}{{- part.text }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{% endgeneration %}"
    "{%- else %}"
    "{%- if message.content is string %}{{- message.content }}{%- else %}"
    "{%- for part in message.content %}{%- if part.type == 'text' %}{{- part.text }}{%- elif part.type == 'image' %}{{- '<image>' }}{%- endif %}{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def save_tiny_llava(directory: Path, corpus: Iterable[str], vocab_size: int = 1024) -> Path:
    """A tiny LLaVA (CLIP vision tower + Qwen3 language model) with its processor, saved to ``directory``.

    16x16 images, 4x4 patches: 16 patch tokens + CLS per image.
    """
    import torch
    from tokenizers import AddedToken
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, Qwen3Config

    tokenizer = build_tokenizer(corpus, vocab_size)
    tokenizer.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    tokenizer.chat_template = CHATML_VISION_TEMPLATE
    image_processor = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4, vision_feature_select_strategy="full",
                               chat_template=CHATML_VISION_TEMPLATE, image_token="<image>", num_additional_image_tokens=1)
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                                       patch_size=4, projection_dim=16),
        text_config=Qwen3Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                num_key_value_heads=2, head_dim=8, max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=tokenizer.eos_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="full", vision_feature_layer=-1,
    )
    LlavaForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
