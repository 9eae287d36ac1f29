"""Generation backends for training rollouts, one module per backend.

* :mod:`.base`: :class:`Generation`, :class:`TokenGenerator`, :class:`SamplingParams`,
  :class:`GenerationError`.
* :mod:`.local`: :class:`LocalGenerator` (``model.generate`` on the trained model).
* :mod:`.completions`: :class:`CompletionsGenerator` (``POST /v1/completions``, vLLM server mode).

Scripted backends for tests live in :mod:`genevolve_graph.testing.scripted_generation`.
"""

from genevolve_graph.training.generation.base import Generation, GenerationError, SamplingParams, TokenGenerator
from genevolve_graph.training.generation.completions import CompletionsGenerator
from genevolve_graph.training.generation.local import LocalGenerator

__all__ = ["CompletionsGenerator", "Generation", "GenerationError", "LocalGenerator", "SamplingParams", "TokenGenerator"]
