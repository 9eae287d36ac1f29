"""Recovering judge output: JSON in its many disguises, flat text, snapping, and refusals."""

from __future__ import annotations

import pytest

from genevolve_graph.evaluation.kscore import parse_kscore
from genevolve_graph.evaluation.parsing import coerce_bool, coerce_score, recover_object
from genevolve_graph.evaluation.sufficiency import parse_sufficiency
from genevolve_graph.evaluation.wise import parse_wise

KEYS = ("rationale", "faithfulness", "visual_correctness", "text_accuracy", "aesthetics", "text_accuracy_na")

WELL_FORMED = ('{"rationale": "Constraints: a red bus.", "faithfulness": 1, "visual_correctness": 0.5, '
               '"text_accuracy": 0, "aesthetics": 0.5, "text_accuracy_na": false}')


@pytest.mark.parametrize(
    "text",
    [
        WELL_FORMED,
        "```json\n" + WELL_FORMED + "\n```",
        "Here is my verdict:\n```\n" + WELL_FORMED + "\n```\nThanks.",
        WELL_FORMED.replace('"text_accuracy_na": false}', '"text_accuracy_na": false,}'),
        "Sure. " + WELL_FORMED + " Done.",
        "{'rationale': 'Constraints: a red bus.', 'faithfulness': 1, 'visual_correctness': 0.5, "
        "'text_accuracy': 0, 'aesthetics': 0.5, 'text_accuracy_na': False}",
        'rationale: "Constraints: a red bus."\nfaithfulness: 1\nvisual_correctness: 0.5\ntext_accuracy: 0\n'
        "aesthetics: 0.5\ntext_accuracy_na: false",
        "**Faithfulness**: 1\n**Visual correctness**: 0.5\n**Text accuracy**: 0\n**Aesthetics**: 0.5\n"
        "**text_accuracy_na**: false",
    ],
    ids=["plain", "fenced", "fenced-in-prose", "trailing-comma", "prose", "python-dict", "flat", "flat-markdown"],
)
def test_kscore_recovered_from_every_disguise(text: str) -> None:
    score = parse_kscore(text)
    assert (score.faithfulness, score.visual_correctness, score.text_accuracy, score.aesthetics) == (1.0, 0.5, 0.0, 0.5)
    assert score.text_accuracy_na is False
    assert score.raw == text
    assert score.overall == pytest.approx(0.1 * 1 + 0.4 * 0.5 + 0.4 * 0 + 0.1 * 0.5)


def test_text_not_applicable_forces_half_and_overall_uses_half() -> None:
    score = parse_kscore('{"faithfulness": 1, "visual_correctness": 1, "text_accuracy": 0, "aesthetics": 1, "text_accuracy_na": "true"}')
    assert score.text_accuracy_na is True
    assert score.text_accuracy == 0.5
    assert score.overall == pytest.approx(0.1 + 0.4 + 0.4 * 0.5 + 0.1)


def test_text_not_applicable_may_omit_text_score() -> None:
    score = parse_kscore('{"faithfulness": 0, "visual_correctness": 0, "aesthetics": 0, "text_accuracy_na": true}')
    assert score.text_accuracy == 0.5 and score.overall == pytest.approx(0.2)


def test_off_grid_values_snap_and_numeric_strings_parse() -> None:
    score = parse_kscore('{"faithfulness": "0.9", "visual_correctness": 0.3, "text_accuracy": 0.25, "aesthetics": 0.74}')
    assert (score.faithfulness, score.visual_correctness, score.text_accuracy, score.aesthetics) == (1.0, 0.5, 0.0, 0.5)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("I cannot evaluate these images.", "no JSON object"),
        ('{"faithfulness": 1, "visual_correctness": 1, "aesthetics": 1}', "text_accuracy"),
        ('{"faithfulness": 7, "visual_correctness": 1, "text_accuracy": 1, "aesthetics": 1}', "outside"),
        ('{"faithfulness": "high", "visual_correctness": 1, "text_accuracy": 1, "aesthetics": 1}', "must be a number"),
        ("", "no text"),
    ],
)
def test_unrecoverable_output_raises_value_error_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_kscore(text)


def test_recover_object_flat_rationale_keeps_quoted_text() -> None:
    obj = recover_object('rationale: "Constraints: a, b, c. The sign reads \\"OPEN\\"."\nfaithfulness: 0.5', KEYS)
    assert obj["rationale"] == 'Constraints: a, b, c. The sign reads "OPEN".'
    assert obj["faithfulness"] == "0.5"


def test_coercions() -> None:
    assert coerce_score(0.5, (0, 0.5, 1), name="x") == 0.5
    assert coerce_score(0.25, (0, 0.5, 1), name="x") == 0.0  # a tie goes to the stricter value
    assert coerce_score("1.", (0, 0.5, 1), name="x") == 1.0
    with pytest.raises(ValueError, match="x must be a number"):
        coerce_score(True, (0, 1), name="x")
    assert coerce_bool("N/A", name="na") is True and coerce_bool(0, name="na") is False
    with pytest.raises(ValueError, match="true or false"):
        coerce_bool("maybe", name="na")


def test_sufficiency_parse_and_grid() -> None:
    s = parse_sufficiency('```json\n{"rationale": "Constraints first.", "score": 0.75,}\n```')
    assert s.score == 0.75 and s.rationale == "Constraints first."
    assert parse_sufficiency("score: 0.6").score == 0.5
    with pytest.raises(ValueError, match="score"):
        parse_sufficiency('{"rationale": "no number here"}')


@pytest.mark.parametrize(
    "text",
    [
        "Consistency: 2\nRealism: 1\nAesthetic Quality: 0",
        "**Consistency:** 2\n**Realism:** 1\n**Aesthetic Quality:** 0",
        "The image mostly works.\nConsistency: 1\n\nFinal scores:\nConsistency: 2\nRealism: 1\nAesthetic quality: 0",
        '{"consistency": 2, "realism": 1, "aesthetic_quality": 0}',
    ],
    ids=["lines", "bold", "reasoning-then-lines", "json"],
)
def test_wise_scores_recovered(text: str) -> None:
    score = parse_wise(text)
    assert (score.consistency, score.realism, score.aesthetic_quality) == (2, 1, 0)
    assert score.wiscore == pytest.approx((0.7 * 2 + 0.2 * 1 + 0.1 * 0) / 2)


@pytest.mark.parametrize("text, problem", [("Consistency: 2\nRealism: 1", "aesthetic"), ("Consistency: 3\nRealism: 1\nAesthetic Quality: 1", "0, 1 or 2")])
def test_wise_unreadable(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_wise(text)
