"""A Qwen2-VL processor that works without torchvision.

Qwen-Image-Edit pipelines condition on reference images through a ``Qwen2VLProcessor``.
transformers' default image and video processors for it need torchvision, which is
missing on many CPU machines and on some accelerator stacks; loading the pipeline then
fails with "Qwen2VLVideoProcessor requires the Torchvision library". The pipeline never
uses video, so this module builds the processor from the pure-PIL image processor and
leaves the video part out. The diffusers backend passes it as a component override.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from transformers import AutoTokenizer, Qwen2VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

QWEN_VL_PROCESSOR_CLASSES = frozenset({"Qwen2VLProcessor", "Qwen2_5_VLProcessor"})


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without a video processor (and so without torchvision)."""

    def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
        # The stock check looks the missing video processor class up in a registry that
        # is only populated when torchvision is importable; an absent part is fine here.
        if argument is None:
            return None
        return super().check_argument_for_proper_class(argument_name, argument)


def torchvision_available() -> bool:
    """Whether torchvision can be imported (without importing it)."""
    return importlib.util.find_spec("torchvision") is not None


def load_image_only_processor(source: str, *, subfolder: str = "processor", **hub_kwargs: Any) -> ImageOnlyQwen2VLProcessor:
    """Build the processor from a pipeline's ``processor`` folder (local path or hub id).

    The folder holds the tokenizer files and ``preprocessor_config.json`` as released
    with Qwen-Image-Edit; both are read with their ordinary loaders.
    """
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(source, subfolder=subfolder, **hub_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, subfolder=subfolder, **hub_kwargs)
    return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer)
