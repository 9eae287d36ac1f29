"""Shared fixtures of the training tests: tiny models built locally, never downloaded."""

from __future__ import annotations

import os

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

import pytest

torch = pytest.importorskip("torch", reason="training tests need the 'train' extra (torch, trl, transformers)")
pytest.importorskip("trl", reason="training tests need the 'train' extra (torch, trl, transformers)")

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from genevolve_graph.testing.tiny_models import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    from genevolve_graph.testing.tiny_models import build_tiny_causal_lm

    return build_tiny_causal_lm(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_embedder():
    from genevolve_graph.testing.tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer("static")
