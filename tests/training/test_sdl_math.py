"""The SDL term's pieces, checked against hand-made expectations."""

from __future__ import annotations

import math
import re

import pytest
import torch

from genevolve_graph.training.sdl import (
    decision_spans,
    decision_token_mask,
    masked_mean,
    reverse_kl_terms,
    select_top_fraction,
)


def _encode(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def _oracle_mask(tok, ids: list[int], model: list[bool]) -> list[bool]:
    """An independent, slow oracle: character offsets by incremental decoding, blocks found by
    a str regex per model turn, think blocks blanked as parse_reply drops them."""
    out = [False] * len(ids)
    i = 0
    while i < len(ids):
        if not model[i]:
            i += 1
            continue
        j = i
        while j < len(ids) and model[j]:
            j += 1
        seg = ids[i:j]
        text = tok.decode(seg, skip_special_tokens=False)
        ends = [len(tok.decode(seg[: k + 1], skip_special_tokens=False)) for k in range(len(seg))]
        starts = [0, *ends[:-1]]
        blanked = re.sub(r"<think>.*?</think>", lambda m: " " * len(m.group(0)), text, flags=re.S)
        spans = [m.span() for m in re.finditer(r"<(tool_call|answer)>.*?(?:</\1>|\Z)", blanked, flags=re.S)]
        for k in range(len(seg)):
            if any(starts[k] < e and ends[k] > s for s, e in spans):
                out[i + k] = True
        i = j
    return out


def test_decision_spans_ignore_think_and_run_unterminated_blocks_to_the_end():
    text = b'<think>maybe <answer>not this</answer></think>\n\n<tool_call>{"name": "search"}</tool_call> tail <answer>{"x'
    spans = decision_spans(text)
    assert [text[s:e] for s, e in spans] == [b'<tool_call>{"name": "search"}</tool_call>', b'<answer>{"x']


def test_mask_selects_exactly_the_tagged_block_tokens(tiny_tokenizer):
    tok = tiny_tokenizer
    think = "<think>\nI could write <answer> here but I will search first.\n</think>\n\n"
    call = '<tool_call>{"name": "image_search", "arguments": {"query": "red fox"}}</tool_call>'
    response = '\n<|im_start|>user\n<tool_response>\nIMG_001: title: a fox <tool_call> in a snippet\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
    answer = '<answer>{"gen_prompt": "a fox, café light", "reference_images": []}</answer>'

    parts = [(think, True, False), (call, True, True), ("<|im_end|>", True, False), (response, False, False),
             ("Here it is: ", True, False), (answer, True, True), ("<|im_end|>", True, False)]
    ids, model, expected = [], [], []
    for text, is_model, is_decision in parts:
        piece = _encode(tok, text)
        ids += piece
        model += [is_model] * len(piece)
        expected += [is_decision] * len(piece)

    mask = decision_token_mask(tok, torch.tensor([ids]), torch.tensor([model], dtype=torch.long))[0].bool().tolist()
    # the segments were tokenized separately, so every token belongs to exactly one part:
    assert mask == expected
    selected = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert selected == call + answer
    # the tool response mentions <tool_call> but is not the policy's: never selected
    assert not any(m for m, md in zip(mask, model, strict=True) if not md)


def test_mask_handles_tags_merged_with_neighbouring_bytes(tiny_tokenizer):
    """Tokenized as one text, BPE merges '>{"' and '}</' across the tag boundaries and splits
    'é' over two tokens; the mask must match the slow character-offset oracle."""
    tok = tiny_tokenizer
    text = 'Final: <answer>{"gen_prompt": "é fox"}</answer> done<|im_end|>'
    ids = _encode(tok, text)
    pieces = tok.convert_ids_to_tokens(ids)
    assert '>{"' in pieces and "}</" in pieces  # the case this test is about
    model = [True] * len(ids)
    mask = decision_token_mask(tok, torch.tensor([ids]), torch.tensor([model]))[0].bool().tolist()
    assert mask == _oracle_mask(tok, ids, model)
    chosen = [p for p, m in zip(pieces, mask, strict=True) if m]
    assert chosen[0] == "<" and chosen[-1] == ">" and "Ġdone" not in chosen and "Ġ" not in chosen[:1]


def test_mask_unterminated_block_and_padding(tiny_tokenizer):
    tok = tiny_tokenizer
    a = _encode(tok, 'ok <tool_call>{"name": "search", "arguments": {"queries": ["fox')
    b = _encode(tok, "<answer>{}</answer><|im_end|>")
    pad = tok.pad_token_id
    width = max(len(a), len(b))
    ids = torch.tensor([a + [pad] * (width - len(a)), b + [pad] * (width - len(b))])
    model = torch.tensor([[1] * len(a) + [0] * (width - len(a)), [1] * len(b) + [0] * (width - len(b))])
    mask = decision_token_mask(tok, ids, model)
    for row in range(2):
        expected = _oracle_mask(tok, ids[row].tolist(), model[row].bool().tolist())
        assert mask[row].bool().tolist() == expected
    assert mask[0, : len(a)].sum() == len(_encode(tok, '<tool_call>{"name": "search", "arguments": {"queries": ["fox'))
    assert mask[:, width:].sum() == 0 and mask[1, len(b):].sum() == 0


def test_top_fraction_keeps_ceil_of_the_largest_per_row():
    scores = torch.tensor([
        [0.1, -5.0, 0.3, 2.0, 0.0, 9.0],
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        [7.0, 7.0, 7.0, 7.0, 7.0, 7.0],
    ]).abs()
    mask = torch.tensor([
        [1, 1, 1, 1, 1, 0],  # 5 candidates; position 5 (9.0) is not a decision token
        [0, 1, 0, 1, 0, 1],  # 3 candidates, all tied
        [0, 0, 0, 0, 0, 0],  # none
    ])
    keep = select_top_fraction(scores, mask, 0.10)
    assert keep.tolist()[0] == [False, True, False, False, False, False]  # ceil(0.5)=1: |-5|
    assert keep.tolist()[1] == [False, True, False, False, False, False]  # tie: earliest
    assert not keep[2].any()
    keep40 = select_top_fraction(scores, mask, 0.4)  # ceil(2.0)=2 and ceil(1.2)=2
    assert keep40.tolist()[0] == [False, True, False, True, False, False]
    assert keep40[1].sum() == 2
    with pytest.raises(ValueError):
        select_top_fraction(scores, mask, 0.0)


def test_reverse_kl_value_and_gradient_by_hand():
    student = torch.tensor([[-1.0, -2.0, -0.5, -3.0]], requires_grad=True)
    teacher = torch.tensor([[-1.5, -1.0, -0.5, -0.1]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0]])

    terms = reverse_kl_terms(student, teacher)
    loss = masked_mean(terms, mask)
    # (s - t) on the three masked tokens: 0.5, -1.0, 0.0; mean = -0.5 / 3
    assert loss.item() == pytest.approx(-0.5 / 3)
    loss.backward()
    assert torch.allclose(student.grad, torch.tensor([[0.5, -1.0, 0.0, 0.0]]) / 3)
    assert teacher.grad is None  # the teacher branch gets no gradient


def test_reverse_kl_importance_weight_is_clipped_and_detached():
    student = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    old = torch.tensor([[-1.0 - math.log(1.5), -1.0 - math.log(4.0)]])  # ratios 1.5 and 4 (clipped to 2)
    teacher = torch.tensor([[-2.0, -3.0]])
    terms = reverse_kl_terms(student, teacher, old_logps=old, is_clip=2.0)
    assert terms.tolist()[0] == pytest.approx([1.5 * 1.0, 2.0 * 2.0])
    terms.sum().backward()
    assert student.grad.tolist()[0] == pytest.approx([1.5, 4.0])  # w·(s−t), the ratio itself not differentiated
    assert old.grad is None


def test_masked_mean_with_global_denominator():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[1, 0], [1, 1]])
    assert masked_mean(values, mask).item() == pytest.approx(8.0 / 3)
    assert masked_mean(values, mask, torch.tensor(4.0)).item() == pytest.approx(2.0)
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0
