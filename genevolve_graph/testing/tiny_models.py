"""Tiny models built on the spot, so that training tests run offline on a CPU.

Nothing here downloads anything:

* ``build_tiny_tokenizer``: a byte-level BPE tokenizer trained with ``tokenizers`` on a few
  hundred strings of the GenEvolve protocol. Like Qwen3's tokenizer, ``<think>``,
  ``<tool_call>`` and ``<tool_response>`` (with their closing tags) are single *non-special*
  added tokens, ``<answer>`` is not (it spans several tokens), and ``<|im_start|>`` /
  ``<|im_end|>`` / ``<|endoftext|>`` are special. Its chat template is the real Qwen3 chat
  template as TRL ships it (read from the installed ``trl`` package, not copied), so token
  sequences built here have exactly the shape the released checkpoint sees.
* ``build_tiny_causal_lm``: a randomly initialised ``Qwen3ForCausalLM`` (about 40k parameters).
* ``build_random_qwen3``: the same architecture at a realistic size (``0.5b``) for benchmarks.
* ``build_tiny_sentence_transformer``: a sentence-transformers model, either a static
  bag-of-tokens embedder (instant) or a Qwen3-Embedding-shaped transformer with last-token
  pooling (the architecture of Qwen3-Embedding-0.6B).

Needs the ``train`` extra (torch, transformers, trl, sentence-transformers).
"""

from __future__ import annotations

from collections.abc import Iterable

import importlib.resources
import json
from pathlib import Path
from typing import Literal

from genevolve_graph.core.protocol import SKILL_NAMES, format_answer, format_tool_call, tools_block, wrap_tool_response

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
"""Special tokens, as in Qwen3: padding, turn start, turn end (= EOS of a reply)."""
TAG_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
"""Protocol tags that Qwen3's tokenizer keeps as single, non-special added tokens."""

_REQUESTS = [
    "A red fox sleeping in fresh snow under a pine tree at dawn",
    "The Eiffel Tower drawn as a blueprint with its real height written on it",
    "Three green apples and two pears on a wooden table, seen from above",
    "A poster for a jazz night with the words BLUE NOTE in neon letters",
    "A watercolor of the Golden Gate Bridge in fog",
    "An astronaut riding a horse on the moon, photorealistic",
    "The first page of a children's book about a brave snail",
    "A glass of water refracting a pencil, macro photo",
    "A portrait of Marie Curie in her laboratory, oil painting",
    "A map of the Nile delta in the style of an old atlas",
]
_QUERIES = ["red fox winter coat", "Eiffel Tower height", "Golden Gate Bridge color", "Marie Curie laboratory photo", "Nile delta map"]


def tiny_corpus() -> list[str]:
    """Strings that look like GenEvolve trajectories (so BPE learns useful merges)."""
    corpus: list[str] = [tools_block()]
    for i, request in enumerate(_REQUESTS):
        query = _QUERIES[i % len(_QUERIES)]
        skill = SKILL_NAMES[i % len(SKILL_NAMES)]
        corpus += [
            request,
            f"<think>\nThe request needs facts about {query}.\n</think>\n\n" + format_tool_call("search", {"queries": [query], "top_k": 3}),
            format_tool_call("image_search", {"query": query}),
            format_tool_call("query_knowledge", {"skill_name": skill}),
            format_answer({"gen_prompt": request + ", matching the first reference image", "reference_images": [{"img_id": f"IMG_00{i % 9 + 1}", "note": "pose and colors"}]}),
            wrap_tool_response(
                f"--- search result for [{query}] ---\n1. title: {query.title()}\n  url: https://example.org/{i}\n"
                f"  snippet: Facts about {query}.\n--- end of search result ---"
            ),
            wrap_tool_response(
                f"--- image search result for [{query}] ---\nIMG_00{i % 9 + 1}: title: {query}\n  url: https://example.org/{i}.jpg\n"
                f"  local_path: /tmp/images/{i}.jpg\n  page_url: https://example.org/{i}\n--- end of image search result ---"
            ),
            f"## Skill Guidance\n=== Skill: {skill} ===\nWrite concrete constraints for {skill.replace('_', ' ')}.",
        ]
    return corpus


def qwen3_chat_template() -> str:
    """The Qwen3 chat template as shipped inside the installed ``trl`` package."""
    try:
        return (importlib.resources.files("trl") / "chat_templates" / "qwen3.jinja").read_text()
    except ModuleNotFoundError as exc:  # pragma: no cover - the train extra brings trl
        raise ImportError("the tiny tokenizer uses the Qwen3 chat template shipped with trl: pip install 'genevolve-graph[train]'") from exc


def build_tiny_tokenizer(vocab_size: int = 640, *, corpus: Iterable[str] | None = None, padding_side: str = "left"):
    """A byte-level BPE tokenizer with Qwen3's special tokens, tags and chat template,
    trained on ``corpus`` (default: GenEvolve-protocol texts)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) if corpus is not None else tiny_corpus(), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side=padding_side,
        chat_template=qwen3_chat_template(),
    )
    return hf_tok


def _qwen3_config(tokenizer, **shape):
    from transformers import Qwen3Config

    return Qwen3Config(
        max_position_embeddings=shape.pop("max_position_embeddings", 4096),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **shape,
    )


def _finish(model, tokenizer):
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    return model


def build_tiny_causal_lm(
    tokenizer, *, hidden_size: int = 32, num_layers: int = 2, seed: int = 0, max_position_embeddings: int = 4096
):
    """A random ``Qwen3ForCausalLM`` over the tiny tokenizer's vocabulary."""
    import torch
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = _qwen3_config(
        tokenizer,
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=max_position_embeddings,
    )
    return _finish(Qwen3ForCausalLM(cfg), tokenizer)


ModelSize = Literal["tiny", "0.5b"]


def build_random_qwen3(tokenizer, size: ModelSize = "tiny", *, seed: int = 0, dtype=None):
    """A random Qwen3 causal LM of a named size (``0.5b``: the shape of a 0.5B Qwen with its
    full 151,936-token vocabulary, so the LM head costs what it costs in real training)."""
    import torch
    from transformers import Qwen3ForCausalLM

    if size == "tiny":
        return build_tiny_causal_lm(tokenizer, seed=seed)
    if size != "0.5b":
        raise ValueError(f"unknown model size {size!r}; choose 'tiny' or '0.5b'")
    torch.manual_seed(seed)
    cfg = _qwen3_config(
        tokenizer,
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=32768,
    )
    if dtype is not None:
        cfg.dtype = dtype
    model = Qwen3ForCausalLM(cfg)
    if dtype is not None:
        model = model.to(dtype)
    return _finish(model, tokenizer)


def save_tiny_policy(directory: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny tokenizer + model to ``directory`` (for code paths that load by path)."""
    directory = Path(directory)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_causal_lm(tokenizer, seed=seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


EmbedderKind = Literal["static", "qwen3"]


def build_tiny_sentence_transformer(kind: EmbedderKind = "static", *, directory: str | Path | None = None, dim: int = 32, seed: int = 0):
    """A tiny sentence-transformers model; saved to ``directory`` when given.

    ``static``: a WordPiece vocabulary trained on the tiny corpus and a random embedding
    table averaged over tokens (texts sharing most words get cosine near 1, unrelated texts
    near 0, which is what retrieval-gate tests need). ``qwen3``: a random two-layer
    ``Qwen3Model`` with last-token pooling and normalisation, shaped like Qwen3-Embedding.
    """
    import torch
    from genevolve_graph.util.quiet import quiet_progress_imports

    with quiet_progress_imports():
        from sentence_transformers import SentenceTransformer

    torch.manual_seed(seed)
    if kind == "static":
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        wp.normalizer = normalizers.BertNormalizer(lowercase=True)
        wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        wp.train_from_iterator(
            tiny_corpus(), trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[UNK]", "[PAD]"], show_progress=False)
        )
        static = StaticEmbedding(wp, embedding_dim=dim)
        _token_keyed_rows(static.embedding.weight, wp.get_vocab(), seed)
        model = SentenceTransformer(modules=[static], device="cpu", similarity_fn_name="cosine")
    elif kind == "qwen3":
        import tempfile

        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
        from transformers import Qwen3Config, Qwen3Model

        tokenizer = build_tiny_tokenizer()
        base = Path(directory) / "backbone" if directory is not None else Path(tempfile.mkdtemp(prefix="tiny-qwen3-emb-"))
        cfg = Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=dim,
            intermediate_size=2 * dim,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=dim // 4,
            pad_token_id=tokenizer.pad_token_id,
        )
        Qwen3Model(cfg).save_pretrained(base)
        tokenizer.save_pretrained(base)
        model = SentenceTransformer(
            modules=[Transformer(str(base), max_seq_length=128), Pooling(dim, "lasttoken"), Normalize()],
            device="cpu",
            similarity_fn_name="cosine",
        )
    else:
        raise ValueError(f"unknown embedder kind {kind!r}; choose 'static' or 'qwen3'")
    if directory is not None:
        model.save(str(directory))
    return model


def _token_keyed_rows(weight, vocab: dict[str, int], seed: int) -> None:
    """Give each token a row drawn from a generator seeded by the token's text.

    The WordPiece trainer numbers its tokens in a different order from run to run (it breaks
    ties by hash order), so rows drawn in id order gave the same text pair cosines from 0.87
    to 0.96 across builds, around the 0.84 retrieval gate. Keyed by the token itself, a
    token's vector no longer depends on its id.
    """
    import hashlib

    import torch

    with torch.no_grad():
        for token, index in vocab.items():
            digest = int.from_bytes(hashlib.sha256(f"{seed}:{token}".encode()).digest()[:8], "little")
            generator = torch.Generator().manual_seed(digest)
            weight[index] = torch.randn(weight.shape[1], generator=generator)


def describe(model) -> str:
    """One line about a tiny model (for logs)."""
    n = sum(p.numel() for p in model.parameters())
    return json.dumps({"class": type(model).__name__, "parameters": n})


def build_word_sentence_transformer(texts: Iterable[str], *, directory: str | Path | None = None, dim: int = 64, seed: int = 0):
    """A deterministic bag-of-words sentence-transformers model over the words of ``texts``.

    A word-level vocabulary (sorted, lower-cased; unknown words share ``[UNK]``) and a
    seeded random embedding table, averaged over tokens: the cosine of two texts follows
    their word overlap, and the same texts always give the same model (the WordPiece
    trainer behind ``build_tiny_sentence_transformer("static")`` breaks ties differently
    from run to run, which a test that asserts exact near-duplicate counts cannot use).
    """
    import re as _re

    import torch
    from genevolve_graph.util.quiet import quiet_progress_imports

    with quiet_progress_imports():
        from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    words = sorted({w for text in texts for w in _re.findall(r"\w+", text.lower())})
    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(len(vocab), dim, generator=generator)
    module = StaticEmbedding(tokenizer, embedding_weights=weights.numpy())
    model = SentenceTransformer(modules=[module], device="cpu", similarity_fn_name="cosine")
    if directory is not None:
        model.save(str(directory))
    return model
