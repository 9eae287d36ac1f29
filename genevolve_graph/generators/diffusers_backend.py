"""The diffusers backend: run a reference-conditioned pipeline in this process.

The default is ``QwenImageEditPlusPipeline`` with ``Qwen/Qwen-Image-Edit-2511`` (the
generator GenEvolve reports with); any diffusers image-edit or image-to-image pipeline
works through the ``pipeline_class`` option. A program without references needs a
text-to-image pipeline (``t2i_pipeline``, e.g. ``Qwen/Qwen-Image``): the edit pipelines
cannot run without an image, and we say so instead of letting diffusers crash.

Loading is the expensive part (a 20B model takes minutes and most of a GPU), so loaded
pipelines are cached per process and shared by every renderer and by the render service;
a lock runs one generation at a time per pipeline, since a pipeline's scheduler is state.
:func:`load_pipeline` is the one loader: the CLI, the service, tests and the benchmark all
go through it.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genevolve_graph.generators.base import RenderError
from genevolve_graph.core.options import get_bool, get_float, get_int, get_str
from genevolve_graph.generators.references import DEFAULT_LONG_SIDE, SIZE_MULTIPLE, load_reference_images, output_size
from genevolve_graph.core.state import Program, RenderResult

if TYPE_CHECKING:
    from PIL import Image

    from genevolve_graph.core.context import AgentContext

log = logging.getLogger(__name__)

DEFAULT_PIPELINE = "Qwen/Qwen-Image-Edit-2511"
DEFAULT_PIPELINE_CLASS = "QwenImageEditPlusPipeline"
DEFAULT_T2I_PIPELINE_CLASS = "QwenImagePipeline"
MULTI_REFERENCE_CLASSES = frozenset({"QwenImageEditPlusPipeline"})
PROCESSOR_MODES = ("auto", "image-only", "default")
OFFLOAD_MODES = ("none", "model", "sequential")
DTYPES = ("auto", "bfloat16", "float16", "float32")


class RenderCancelled(RenderError):
    """A generation stopped early because its request timed out."""


class RenderOutOfMemory(RenderError):
    """The accelerator ran out of memory; memory was freed and the pipeline stays usable."""


class ConfigurationError(RenderError):
    """A backend option is missing or wrong; the message names the option."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class PipelineSpec:
    """What to load and where: everything that identifies one loaded pipeline."""

    source: str = DEFAULT_PIPELINE
    pipeline_class: str = DEFAULT_PIPELINE_CLASS
    dtype: str = "auto"
    device: str = "auto"
    processor: str = "auto"
    offload: str = "none"
    vae_image_pixels: int | None = None
    condition_image_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigurationError(f"option 'dtype' must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.processor not in PROCESSOR_MODES:
            raise ConfigurationError(f"option 'processor' must be one of {', '.join(PROCESSOR_MODES)}, not {self.processor!r}")
        if self.offload not in OFFLOAD_MODES:
            raise ConfigurationError(f"option 'offload' must be one of {', '.join(OFFLOAD_MODES)}, not {self.offload!r}")


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampling settings of a render (the released runtime's where one exists)."""

    num_inference_steps: int = 40
    true_cfg_scale: float = 4.0
    guidance_scale: float | None = 1.0
    negative_prompt: str = " "
    long_side: int = DEFAULT_LONG_SIDE
    width: int | None = None
    height: int | None = None

    def size_for(self, first_reference: tuple[int, int] | None) -> tuple[int, int]:
        """Output (width, height): fixed if configured, else from the first reference; both
        multiples of ``SIZE_MULTIPLE``, as the pipelines floor them anyway (see ``size_note``)."""
        if self.width and self.height:
            return _floor_to_multiple(self.width), _floor_to_multiple(self.height)
        return output_size(first_reference, long_side=self.long_side)

    @property
    def size_note(self) -> str | None:
        """What became of a configured size that is not a multiple of ``SIZE_MULTIPLE``
        (the pipeline would round it down silently); recorded in the render result."""
        if self.width and self.height:
            width, height = _floor_to_multiple(self.width), _floor_to_multiple(self.height)
            if (width, height) != (self.width, self.height):
                return (f"size {self.width}x{self.height} is not a multiple of {SIZE_MULTIPLE}: rendered at {width}x{height} "
                        f"(set width and height to multiples of {SIZE_MULTIPLE} to choose the size exactly)")
            return None
        if self.long_side != _floor_to_multiple(self.long_side):
            return (f"long_side {self.long_side} is not a multiple of {SIZE_MULTIPLE}: both sides are rounded to "
                    f"multiples of {SIZE_MULTIPLE}")
        return None

    def notes(self) -> list[str]:
        """Notes for a render result made with these settings."""
        return [self.size_note] if self.size_note else []


def _floor_to_multiple(value: int, multiple: int = SIZE_MULTIPLE) -> int:
    return max(multiple, value // multiple * multiple)


@dataclass(frozen=True)
class DiffusersConfig:
    """The diffusers backend's options, read from ``AgentContext.options``."""

    edit: PipelineSpec = field(default_factory=PipelineSpec)
    t2i: PipelineSpec | None = None
    multi_reference: bool | None = None
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "DiffusersConfig":
        """Parse the option names documented in ``options.OPTION_DOCS``."""
        try:
            common = {
                "dtype": get_str(options, "dtype", "auto"),
                "device": get_str(options, "device", "auto"),
                "processor": get_str(options, "processor", "auto"),
                "offload": get_str(options, "offload", "none"),
                "vae_image_pixels": get_int(options, "vae_image_pixels", minimum=64),
                "condition_image_pixels": get_int(options, "condition_image_pixels", minimum=64),
            }
            edit = PipelineSpec(
                source=get_str(options, "pipeline", DEFAULT_PIPELINE),
                pipeline_class=get_str(options, "pipeline_class", DEFAULT_PIPELINE_CLASS),
                **common,
            )
            t2i_source = get_str(options, "t2i_pipeline")
            t2i = (
                PipelineSpec(
                    source=t2i_source,
                    pipeline_class=get_str(options, "t2i_pipeline_class", DEFAULT_T2I_PIPELINE_CLASS),
                    **{**common, "vae_image_pixels": None, "condition_image_pixels": None},  # edit-only settings
                )
                if t2i_source
                else None
            )
            generation = generation_defaults_from_options(options)
            resolve_pipeline_class(edit.pipeline_class)  # a wrong class name fails now, not at first render
            if t2i is not None:
                resolve_pipeline_class(t2i.pipeline_class)
            return cls(edit=edit, t2i=t2i, multi_reference=get_bool(options, "multi_reference"), generation=generation)
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None


def generation_defaults_from_options(options: Mapping[str, Any]) -> GenerationDefaults:
    """The sampling options shared by the diffusers and service backends."""
    defaults = GenerationDefaults()
    width = get_int(options, "width", minimum=16)
    height = get_int(options, "height", minimum=16)
    if (width is None) != (height is None):
        raise ValueError("options 'width' and 'height' go together: set both or neither (or set 'long_side')")
    guidance = options.get("guidance_scale", defaults.guidance_scale)
    return GenerationDefaults(
        num_inference_steps=get_int(options, "num_inference_steps", defaults.num_inference_steps, minimum=1),
        true_cfg_scale=get_float(options, "true_cfg_scale", defaults.true_cfg_scale, minimum=0.0),
        guidance_scale=None if guidance is None else get_float(options, "guidance_scale", defaults.guidance_scale),
        negative_prompt=str(options.get("negative_prompt", defaults.negative_prompt)),
        long_side=get_int(options, "long_side", defaults.long_side, minimum=16),
        width=width,
        height=height,
    )


# --------------------------------------------------------------------------- loading


def resolve_pipeline_class(name: str) -> type:
    """A diffusers pipeline class from its name, or ``module:Class``; ``auto`` is DiffusionPipeline."""
    import diffusers

    if name == "auto":
        return diffusers.DiffusionPipeline
    if ":" in name:
        from genevolve_graph.core.registry import import_path

        try:
            return import_path(name)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"option 'pipeline_class': cannot import {name!r}: {exc}") from None
    try:
        cls = getattr(diffusers, name)
    except AttributeError:
        raise ConfigurationError(
            f"option 'pipeline_class': diffusers {diffusers.__version__} has no pipeline {name!r} "
            "(use a diffusers pipeline class name, 'module:Class', or 'auto')"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
        raise ConfigurationError(f"option 'pipeline_class': {name!r} is not a diffusers pipeline")
    return cls


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when available, else mps, else cpu."""
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(name: str, device: str) -> Any:
    """``auto`` -> bfloat16 on CUDA, float32 elsewhere (CPU bfloat16 is slow and MPS lacks parts)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def _processor_override(spec: PipelineSpec, cls: type) -> dict[str, Any]:
    """The component overrides the processor option asks for (possibly none)."""
    from genevolve_graph.generators.qwen_processor import (
        QWEN_VL_PROCESSOR_CLASSES,
        load_image_only_processor,
        torchvision_available,
    )

    if spec.processor == "default":
        return {}
    if spec.processor == "auto" and torchvision_available():
        return {}
    try:
        index = cls.load_config(spec.source)
    except Exception as exc:  # noqa: BLE001 - reported with the option to change
        raise ConfigurationError(f"option 'pipeline': cannot read model_index.json of {spec.source!r}: {exc}") from None
    entry = index.get("processor")
    if not entry or entry[-1] is None:  # this pipeline has no processor (text-to-image): nothing to replace
        return {}
    if not (isinstance(entry, (list, tuple)) and entry[-1] in QWEN_VL_PROCESSOR_CLASSES):
        if spec.processor == "image-only":
            raise ConfigurationError(f"option 'processor=image-only': {spec.source!r} has no Qwen2-VL processor to replace")
        return {}
    log.info("building the Qwen2-VL processor without torchvision (option processor=%s)", spec.processor)
    return {"processor": load_image_only_processor(spec.source)}


def apply_image_size_globals(pipeline: Any, spec: PipelineSpec) -> None:
    """Set the reference resize areas of Qwen edit pipelines (module globals read per call)."""
    module = sys.modules[type(pipeline).__module__]
    for option, name in (("vae_image_pixels", "VAE_IMAGE_SIZE"), ("condition_image_pixels", "CONDITION_IMAGE_SIZE")):
        value = getattr(spec, option)
        if value is None:
            continue
        if not hasattr(module, name):
            raise ConfigurationError(f"option {option!r} applies only to Qwen edit pipelines, not {type(pipeline).__name__}")
        setattr(module, name, value)


def load_pipeline(spec: PipelineSpec, components: Mapping[str, Any] | None = None) -> Any:
    """Load a pipeline from a local folder or hub id, as users, the service and tests do.

    ``components`` replaces loaded components (e.g. a processor); the ``processor``
    option adds the torchvision-free Qwen2-VL processor when needed. ``dtype=`` is passed
    (``torch_dtype=`` is deprecated).
    """
    cls = resolve_pipeline_class(spec.pipeline_class)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    overrides = {**_processor_override(spec, cls), **(components or {})}
    if Path(spec.source).expanduser().is_dir():
        source = str(Path(spec.source).expanduser())
    else:
        source = spec.source
    started = time.perf_counter()
    try:
        pipeline = cls.from_pretrained(source, dtype=dtype, **overrides)
    except ImportError as exc:
        hint = " (set the option processor=image-only to load without torchvision)" if "orchvision" in str(exc) else ""
        raise ConfigurationError(f"cannot load {spec.source!r}: {' '.join(str(exc).split())}{hint}") from None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"option 'pipeline': cannot load {spec.source!r} as {spec.pipeline_class}: {exc}") from None
    if spec.offload == "model":
        pipeline.enable_model_cpu_offload(device=device)
    elif spec.offload == "sequential":
        pipeline.enable_sequential_cpu_offload(device=device)
    else:
        pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    apply_image_size_globals(pipeline, spec)
    log.info("loaded %s from %s on %s (%s) in %.1f s", type(pipeline).__name__, spec.source, device, dtype, time.perf_counter() - started)
    return pipeline


# --------------------------------------------------------------------------- generation


@dataclass
class GenerationJob:
    """One image to make: the prompt, the decoded references and the sampling settings."""

    prompt: str
    images: list["Image.Image"] = field(default_factory=list)
    seed: int = 0
    width: int | None = None
    height: int | None = None
    num_inference_steps: int = 40
    true_cfg_scale: float = 4.0
    guidance_scale: float | None = 1.0
    negative_prompt: str | None = " "
    num_images_per_prompt: int = 1

    @classmethod
    def from_defaults(cls, prompt: str, images: list["Image.Image"], seed: int, defaults: GenerationDefaults) -> "GenerationJob":
        width, height = defaults.size_for(images[0].size if images else None)
        return cls(
            prompt=prompt,
            images=images,
            seed=seed,
            width=width,
            height=height,
            num_inference_steps=defaults.num_inference_steps,
            true_cfg_scale=defaults.true_cfg_scale,
            guidance_scale=defaults.guidance_scale,
            negative_prompt=defaults.negative_prompt,
        )


def free_accelerator_memory() -> None:
    """Drop unreachable tensors and return cached accelerator memory to the driver."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()


class DiffusersEngine:
    """A loaded edit pipeline (and, when configured, a text-to-image pipeline loaded on first use).

    ``generate`` is synchronous and holds a lock: call it from a worker thread.
    """

    def __init__(
        self,
        pipeline: Any,
        *,
        t2i_pipeline: Any = None,
        t2i_spec: PipelineSpec | None = None,
        multi_reference: bool | None = None,
    ) -> None:
        self.pipeline = pipeline
        self._t2i = t2i_pipeline
        self._t2i_spec = t2i_spec
        self._lock = threading.Lock()
        self._call_params = set(inspect.signature(pipeline.__call__).parameters)
        if "image" not in self._call_params:
            raise ConfigurationError(
                f"option 'pipeline_class': {type(pipeline).__name__} takes no reference image; "
                "use an image-edit or image-to-image pipeline (set a text-to-image one as 't2i_pipeline')"
            )
        name = type(pipeline).__name__
        self.multi_reference = name in MULTI_REFERENCE_CLASSES if multi_reference is None else multi_reference

    @classmethod
    def load(cls, config: DiffusersConfig) -> "DiffusersEngine":
        """Load the edit pipeline now; the text-to-image one waits until a program needs it."""
        return cls(load_pipeline(config.edit), t2i_spec=config.t2i, multi_reference=config.multi_reference)

    @property
    def description(self) -> str:
        return type(self.pipeline).__name__

    @property
    def has_text_to_image(self) -> bool:
        return self._t2i is not None or self._t2i_spec is not None

    def _text_to_image_pipeline(self) -> Any:
        if self._t2i is None:
            if self._t2i_spec is None:
                raise ConfigurationError(
                    "this program has no reference image and no text-to-image pipeline is configured: "
                    "set the option 't2i_pipeline' (for example Qwen/Qwen-Image; serve-renderer --t2i-pipeline), "
                    f"since {type(self.pipeline).__name__} needs at least one reference image"
                )
            self._t2i = load_pipeline(self._t2i_spec)
        return self._t2i

    def generate(self, job: GenerationJob, cancel: threading.Event | None = None) -> "Image.Image":
        """Run one generation; raises ``RenderError`` subclasses for failures worth reporting."""
        import torch

        with self._lock:
            if job.images:
                pipeline = self.pipeline
                if len(job.images) > 1 and not self.multi_reference:
                    raise ConfigurationError(
                        f"{type(pipeline).__name__} takes one reference image but the program has {len(job.images)}: "
                        "set n_max_reference_images=1, or option 'multi_reference=true' if the pipeline takes a list"
                    )
                image_arg: Any = list(job.images) if self.multi_reference else job.images[0]
            else:
                pipeline = self._text_to_image_pipeline()
                image_arg = None
            kwargs = self._call_kwargs(pipeline, job, image_arg, cancel)
            try:
                with torch.inference_mode():
                    output = pipeline(**kwargs)
            except torch.OutOfMemoryError as exc:
                message = f"out of accelerator memory while rendering ({(str(exc).splitlines() or [''])[0][:300]})"
            else:
                if cancel is not None and cancel.is_set():
                    raise RenderCancelled("the render was stopped because its request timed out")
                images = output.images
                if not images:
                    raise RenderError(f"{type(pipeline).__name__} returned no image")
                return images[0]
            # Past the except block, so the traceback's frames (and their tensors) are gone;
            # still under the lock, so the next render starts with the memory back.
            del kwargs
            free_accelerator_memory()
        raise RenderOutOfMemory(message + "; memory was freed, try a smaller size or fewer references")

    def _call_kwargs(self, pipeline: Any, job: GenerationJob, image: Any, cancel: threading.Event | None) -> dict[str, Any]:
        import torch

        params = set(inspect.signature(pipeline.__call__).parameters)
        device = getattr(pipeline, "_execution_device", None) or torch.device("cpu")
        generator = torch.Generator(device=device).manual_seed(int(job.seed))
        kwargs: dict[str, Any] = {
            "prompt": job.prompt,
            "num_inference_steps": job.num_inference_steps,
            "generator": generator,
            "num_images_per_prompt": job.num_images_per_prompt,
        }
        if image is not None:
            kwargs["image"] = image
        if job.width and job.height:
            kwargs["width"], kwargs["height"] = job.width, job.height
        uses_true_cfg = "true_cfg_scale" in params
        if uses_true_cfg:
            kwargs["true_cfg_scale"] = job.true_cfg_scale
        transformer_config = getattr(getattr(pipeline, "transformer", None), "config", None)
        if job.guidance_scale is not None and getattr(transformer_config, "guidance_embeds", None) is not False:
            kwargs["guidance_scale"] = job.guidance_scale  # only guidance-distilled transformers use it
        if job.negative_prompt is not None and (not uses_true_cfg or job.true_cfg_scale > 1):
            kwargs["negative_prompt"] = job.negative_prompt
        if cancel is not None and "callback_on_step_end" in params:

            def stop_when_cancelled(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
                if cancel.is_set():
                    pipe._interrupt = True  # diffusers' documented way to stop the denoising loop
                return {}

            kwargs["callback_on_step_end"] = stop_when_cancelled
        return {key: value for key, value in kwargs.items() if key in params}


# --------------------------------------------------------------------------- engine cache

_ENGINES: dict[DiffusersConfig, DiffusersEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(config: DiffusersConfig) -> DiffusersEngine:
    """The process-wide engine for a configuration, loaded on first use."""
    key = replace(config, generation=GenerationDefaults())
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = DiffusersEngine.load(key)
            _ENGINES[key] = engine
        return engine


# --------------------------------------------------------------------------- renderer


class DiffusersRenderer:
    """Renders programs with a pipeline in this process."""

    name = "diffusers"

    def __init__(self, config: DiffusersConfig, engine: DiffusersEngine | None = None) -> None:
        self.config = config
        self._engine = engine

    async def render(self, program: Program, out_path: Path, *, seed: int = 0) -> RenderResult:
        started = time.perf_counter()
        out_path = Path(out_path)
        try:
            images = await asyncio.to_thread(load_reference_images, program)
            job = GenerationJob.from_defaults(program.gen_prompt, images, seed, self.config.generation)
            engine = self._engine or await asyncio.to_thread(get_engine, self.config)
            image = await asyncio.to_thread(engine.generate, job)
            await asyncio.to_thread(_save_png, image, out_path)
        except RenderError as exc:
            return RenderResult(success=False, backend=self.name, error=str(exc), seconds=time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - a backend failure is a result, not a crash of the graph
            log.exception("diffusers render failed")
            return RenderResult(success=False, backend=self.name, error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - started)
        return RenderResult(success=True, output_path=str(out_path), backend=self.name, seconds=time.perf_counter() - started,
                            notes=self.config.generation.notes())


def _save_png(image: "Image.Image", out_path: Path) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    image.save(out_path, format="PNG")


def from_context(ctx: "AgentContext") -> DiffusersRenderer:
    """Registry factory: the diffusers renderer configured by ``ctx.options``."""
    return DiffusersRenderer(DiffusersConfig.from_options(ctx.options))
