"""A tiny Qwen3 causal LM and byte-level BPE tokenizer, built locally (no hub).

The tokenizer is trained on the texts the model will see, with the GenEvolve tags as
ordinary (non-special) added tokens, and carries the stock Qwen3 chat template that TRL
ships: for assistant-only loss TRL recognises it and swaps in its training variant with
``{% generation %}`` markers, exactly as it does for a real Qwen3 checkpoint.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Iterable

TAGS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<answer>", "</answer>"]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def qwen3_chat_template() -> str:
    return (importlib.resources.files("trl") / "chat_templates" / "qwen3.jinja").read_text()


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="right", chat_template=qwen3_chat_template()
    )


def build_model(tokenizer, seed: int = 0):
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=8192, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    return model


def save_tiny_model(directory: Path, corpus: Iterable[str], vocab_size: int = 1024) -> Path:
    tokenizer = build_tokenizer(corpus, vocab_size)
    model = build_model(tokenizer)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
