"""``LocalGenerator``: samples with ``model.generate`` on the model being trained (small runs)."""

from __future__ import annotations

from typing import Any

from genevolve_graph.training.generation.base import Generation, SamplingParams
from genevolve_graph.training.generation.batching import MicroBatchingGenerator, Pending


class LocalGenerator(MicroBatchingGenerator):
    """Samples with ``model.generate`` on the model being trained, micro-batched across
    concurrent trajectories (see :class:`MicroBatchingGenerator`)."""

    backend = "local"

    def __init__(
        self, model: Any, tokenizer: Any, sampling: SamplingParams | None = None, *, max_batch_size: int = 64, processor: Any = None
    ) -> None:
        super().__init__(max_batch_size=max_batch_size)
        self.model = model
        self.tokenizer = tokenizer
        self.processor = processor
        """A VLM's processor: prompts with images get their pixel values from it."""
        self.sampling = sampling or SamplingParams()

    def accepts_images(self) -> bool:
        return self.processor is not None

    def _generate_batch(self, batch: list[Pending]) -> list[Generation]:
        import torch
        from transformers import GenerationConfig

        self.calls += 1
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        width = max(len(p.prompt_ids) for p in batch)
        device = next(self.model.parameters()).device
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            n = len(item.prompt_ids)
            input_ids[row, width - n :] = torch.tensor(item.prompt_ids)
            attention[row, width - n :] = 1
        s = self.sampling
        config = GenerationConfig(
            max_new_tokens=max(p.max_new_tokens for p in batch),
            do_sample=True,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,  # 0 disables top-k explicitly (a model's generation_config.json may set one)
            min_p=s.min_p,
            repetition_penalty=s.repetition_penalty,
            eos_token_id=eos,
            pad_token_id=pad,
            bos_token_id=None,
        )
        extra: dict[str, Any] = {}
        if self.processor is not None and any(item.images for item in batch):
            from genevolve_graph.training.vision import check_image_tokens, forward_kwargs, multimodal_inputs

            mm = multimodal_inputs(self.processor, [item.images or [] for item in batch], device=device)
            check_image_tokens(input_ids, self.processor, mm)
            extra = forward_kwargs(input_ids.to(device), self.processor, mm)
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config, **extra)
        new = out[:, width:].tolist()
        results = []
        for item, ids in zip(batch, new, strict=True):
            ids = ids[: item.max_new_tokens]
            if eos in ids:
                ids = ids[: ids.index(eos) + 1]
            results.append(Generation(ids, None))
        return results
