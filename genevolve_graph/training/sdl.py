"""The SDL loss term: which tokens it acts on and what it computes (DESIGN.md §5).

Three pure pieces, kept apart from the trainer so that each can be checked by hand:

* ``decision_token_mask``: the completion tokens that make a *decision*: those inside
  ``<tool_call>…</tool_call>`` and ``<answer>…</answer>`` blocks (tags included; an unterminated
  block runs to the end of its turn). Blocks are found in the decoded text and mapped back to
  tokens through byte offsets, so a tag split over several tokens (``<answer>`` is three
  tokens in Qwen3) or a token straddling a tag boundary (``>{"``) is handled exactly: a token
  belongs to a block when any of its bytes does. Only model-generated turns are scanned (tool
  responses are masked out before), and text inside a closed ``<think>`` block is ignored, as
  ``protocol.parse_reply`` ignores it.
* ``select_top_fraction``: per sequence, the ``ceil(fraction · n)`` masked tokens with the
  largest ``|log π_teacher − log π_student|`` (at least one when ``n > 0``).
* ``reverse_kl_terms``: the importance-weighted reverse KL on the student's own sampled tokens.
  For a token y sampled from the behaviour policy, ``log π_s(y) − log π_t(y)`` estimates
  KL(π_s ‖ π_t), and its score-function gradient is ``(log π_s − log π_t) ∇ log π_s``. The term
  returned has exactly that value *and* that gradient: ``w · d · (1 + s − sg(s))`` with
  ``d = sg(s − t)`` and ``w = min(exp(sg(s − s_old)), clip)`` (the PPO-style ratio when the
  sample came from an older policy). The teacher enters only through ``sg`` (stop-gradient),
  so the teacher branch never receives a gradient.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache

import torch

DEFAULT_DECISION_TAGS: tuple[str, ...] = ("tool_call", "answer")

_THINK = re.compile(rb"<think>.*?</think>", re.S)


def _block_regex(tags: Sequence[str]) -> re.Pattern[bytes]:
    names = b"|".join(re.escape(t.encode()) for t in tags)
    return re.compile(rb"<(" + names + rb")>.*?(?:</\1>|\Z)", re.S)


def decision_spans(text: bytes, tags: Sequence[str] = DEFAULT_DECISION_TAGS) -> list[tuple[int, int]]:
    """Byte spans ``[start, end)`` of the decision blocks of one model turn."""
    blanked = _THINK.sub(lambda m: b" " * (m.end() - m.start()), text)
    return [m.span() for m in _block_regex(tags).finditer(blanked)]


# --------------------------------------------------------------------------- token bytes


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of the byte-level BPE alphabet: printable stand-in character -> byte value.

    Byte-level BPE (GPT-2, Qwen, Llama 3) writes every byte as one printable character:
    printable Latin-1 bytes as themselves, the others shifted to U+0100 onwards in order.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping = {chr(b): b for b in printable}
    shift = 0
    for b in range(256):
        if b not in printable:
            mapping[chr(256 + shift)] = b
            shift += 1
    return mapping


class TokenBytes:
    """Maps token ids to the exact bytes they decode to, for one tokenizer.

    For byte-level BPE tokenizers this is exact for every token, including those that hold
    half of a multi-byte UTF-8 character. For other tokenizers it falls back to decoding each
    token alone and checks that the pieces add up to the whole decoded text; when they do not
    (SentencePiece space handling), it says so instead of guessing.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.byte_level = _is_byte_level(tokenizer)
        self._added = {i: t.content.encode() for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()}
        self._cache: dict[int, bytes] = {}
        self._to_byte = _unicode_to_byte()

    def __call__(self, token_id: int) -> bytes:
        piece = self._cache.get(token_id)
        if piece is None:
            piece = self._compute(token_id)
            self._cache[token_id] = piece
        return piece

    def _compute(self, token_id: int) -> bytes:
        if token_id in self._added:
            return self._added[token_id]
        if self.byte_level:
            token = self.tokenizer.convert_ids_to_tokens(token_id)
            try:
                return bytes(self._to_byte[c] for c in token)
            except KeyError:
                pass  # not an alphabet token after all: decode it
        return self.tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False).encode()

    def check_sequence(self, ids: Sequence[int]) -> None:
        """Raise when per-token pieces do not rebuild the decoded text (non byte-level only)."""
        if self.byte_level or not ids:
            return
        joined = b"".join(self(i) for i in ids)
        whole = self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False).encode()
        if joined != whole:
            raise ValueError(
                f"{type(self.tokenizer).__name__} does not decode token by token, so decision tokens cannot be "
                "located by offsets; use a byte-level BPE tokenizer (Qwen, Llama 3, GPT-2 style)"
            )


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in repr(decoder)


_TOKEN_BYTES: dict[int, TokenBytes] = {}


def token_bytes_for(tokenizer) -> TokenBytes:
    """A cached ``TokenBytes`` per tokenizer object."""
    key = id(tokenizer)
    cached = _TOKEN_BYTES.get(key)
    if cached is None or cached.tokenizer is not tokenizer:
        cached = TokenBytes(tokenizer)
        _TOKEN_BYTES[key] = cached
    return cached


# --------------------------------------------------------------------------- masks


def _segments(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """Runs ``[start, end)`` of consecutive True values."""
    runs, start = [], None
    for i, flag in enumerate(flags):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(flags)))
    return runs


def sequence_decision_mask(
    token_bytes: TokenBytes, ids: Sequence[int], model_mask: Sequence[bool], tags: Sequence[str] = DEFAULT_DECISION_TAGS
) -> list[bool]:
    """Decision mask of one completion (``model_mask``: tokens the policy generated)."""
    out = [False] * len(ids)
    for start, end in _segments(model_mask):
        seg_ids = list(ids[start:end])
        token_bytes.check_sequence(seg_ids)
        pieces = [token_bytes(t) for t in seg_ids]
        text = b"".join(pieces)
        spans = decision_spans(text, tags)
        if not spans:
            continue
        offset = 0
        span_i = 0
        for k, piece in enumerate(pieces):
            tok_start, tok_end = offset, offset + len(piece)
            offset = tok_end
            while span_i < len(spans) and spans[span_i][1] <= tok_start:
                span_i += 1
            if span_i == len(spans):
                break
            s, e = spans[span_i]
            # a zero-length token (rare) belongs to a block when it sits strictly inside it
            if (tok_start < e and tok_end > s) or (tok_start == tok_end and s < tok_start < e):
                out[start + k] = True
    return out


def decision_token_mask(
    tokenizer,
    completion_ids: torch.Tensor,
    model_mask: torch.Tensor,
    tags: Sequence[str] = DEFAULT_DECISION_TAGS,
) -> torch.Tensor:
    """``(B, T)`` 0/1 mask of decision tokens, given ``(B, T)`` ids and the mask of tokens the
    policy generated (``completion_mask · tool_mask``: padding and tool responses are 0)."""
    token_bytes = token_bytes_for(tokenizer)
    rows = []
    ids_list = completion_ids.tolist()
    flags_list = model_mask.bool().tolist()
    for ids, flags in zip(ids_list, flags_list, strict=True):
        rows.append(sequence_decision_mask(token_bytes, ids, flags, tags))
    return torch.tensor(rows, dtype=torch.long, device=completion_ids.device).reshape(completion_ids.shape)


def select_top_fraction(scores: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per row, keep the ``ceil(fraction · n)`` masked positions with the largest score.

    ``n`` is the number of masked positions of the row; a row with ``n > 0`` keeps at least
    one. Ties are broken by position (earlier first), so the choice is deterministic.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"top-k fraction must be in (0, 1], got {fraction}")
    mask = mask.bool()
    counts = mask.sum(dim=1)
    keep = torch.ceil(counts.to(torch.float64) * fraction).to(torch.long)
    keep = torch.where(counts > 0, keep.clamp(min=1), keep)
    masked_scores = scores.detach().float().masked_fill(~mask, -math.inf)
    order = torch.sort(masked_scores, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.size(1), device=order.device).expand_as(order))
    return (ranks < keep.unsqueeze(1)) & mask


def reverse_kl_terms(
    student_logps: torch.Tensor,
    teacher_logps: torch.Tensor,
    *,
    old_logps: torch.Tensor | None = None,
    is_clip: float | None = 2.0,
    sampling_ratio: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token importance-weighted reverse-KL terms (value = estimate, gradient = its
    score-function gradient; see the module docstring).

    ``old_logps``: log-probs of the policy that sampled the tokens (None: the current one,
    weight 1). ``sampling_ratio``: an extra per-token (or per-sequence) correction, e.g. TRL's
    vLLM importance-sampling ratio.
    """
    log_ratio = (student_logps - teacher_logps.detach()).detach()
    if old_logps is None:
        weight = torch.ones_like(log_ratio)
    else:
        weight = torch.exp((student_logps.detach() - old_logps.detach()).clamp(-20.0, 20.0))
        if is_clip is not None:
            weight = weight.clamp(max=is_clip)
    if sampling_ratio is not None:
        weight = weight * sampling_ratio.detach()
    return weight * log_ratio * (1.0 + student_logps - student_logps.detach())


def masked_mean(values: torch.Tensor, mask: torch.Tensor, denominator: torch.Tensor | float | None = None) -> torch.Tensor:
    """Sum of ``values`` over ``mask`` divided by ``denominator`` (default: the mask count)."""
    mask = mask.to(values.dtype)
    total = (values * mask).sum()
    if denominator is None:
        denominator = mask.sum()
    if isinstance(denominator, torch.Tensor):
        denominator = denominator.to(values.dtype).clamp(min=1.0)
    else:
        denominator = max(float(denominator), 1.0)
    return total / denominator
