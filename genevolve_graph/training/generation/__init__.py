"""Generation backends for training rollouts, one module per backend.

* :mod:`.base`: :class:`Generation`, :class:`TokenGenerator`, :class:`SamplingParams`,
  :class:`GenerationError`.
* :mod:`.local`: :class:`LocalGenerator` (``model.generate`` on the trained model).
* :mod:`.completions`: :class:`CompletionsGenerator` (``POST /v1/completions``, vLLM server mode).
* :mod:`.colocate`: ``ColocatedVLLMGenerator`` (TRL's in-process ``vllm.LLM``, colocate mode;
  imported on demand, vLLM is optional).
* :mod:`.batching`: :class:`MicroBatchingGenerator`, the request batching of in-process backends.

Scripted backends for tests live in :mod:`genevolve_graph.testing.scripted_generation`.
"""

from genevolve_graph.training.generation.base import Generation, GenerationError, SamplingParams, TokenGenerator
from genevolve_graph.training.generation.completions import CompletionsGenerator
from genevolve_graph.training.generation.local import LocalGenerator

__all__ = ["CompletionsGenerator", "Generation", "GenerationError", "LocalGenerator", "SamplingParams", "TokenGenerator"]
