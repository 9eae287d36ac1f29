"""The diffusers backend on the tiny Qwen edit pipeline (2 steps on the CPU), loaded from a
folder through the same loader users run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genevolve_graph.core.context import AgentContext
from genevolve_graph.generators.base import RenderError
from genevolve_graph.generators.diffusers_backend import (
    ConfigurationError,
    DiffusersConfig,
    DiffusersEngine,
    DiffusersRenderer,
    GenerationJob,
    PipelineSpec,
    load_pipeline,
)
from genevolve_graph.generators.qwen_processor import ImageOnlyQwen2VLProcessor, torchvision_available
from genevolve_graph.generators.references import output_size
from genevolve_graph.generators.registry import make_renderer
from genevolve_graph.core.state import Program, Reference


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# --------------------------------------------------------------------------- loading


def test_saved_tiny_pipeline_has_the_released_layout(tiny):
    import json

    index = json.loads((tiny.edit_dir / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPlusPipeline"
    assert index["processor"] == ["transformers", "Qwen2VLProcessor"]
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "processor", "scheduler"):
        assert (tiny.edit_dir / part).is_dir(), part
    assert (tiny.edit_dir / "processor" / "preprocessor_config.json").is_file()


def test_loader_builds_the_processor_without_torchvision(engine):
    pipe = engine.pipeline
    assert type(pipe).__name__ == "QwenImageEditPlusPipeline"
    assert isinstance(pipe.processor, ImageOnlyQwen2VLProcessor)
    assert pipe.processor.tokenizer is not None and pipe.processor.image_processor is not None
    assert str(pipe.device) == "cpu"


@pytest.mark.skipif(torchvision_available(), reason="torchvision is installed here, so the stock processor loads")
def test_stock_processor_needs_torchvision_and_the_error_names_the_option(tiny):
    spec = PipelineSpec(source=str(tiny.edit_dir), processor="default", device="cpu", dtype="float32")
    with pytest.raises(ConfigurationError, match="processor=image-only"):
        load_pipeline(spec)


def test_component_override_replaces_a_loaded_component(tiny):
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=2.5)
    spec = PipelineSpec(source=str(tiny.edit_dir), device="cpu", dtype="float32")
    pipe = load_pipeline(spec, components={"scheduler": scheduler})
    assert pipe.scheduler is scheduler


def test_dtype_option_is_passed_as_dtype(tiny):
    import torch

    spec = PipelineSpec(source=str(tiny.edit_dir), device="cpu", dtype="bfloat16")
    pipe = load_pipeline(spec)
    assert pipe.transformer.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"dtype": "fp8"}, "option 'dtype'"),
        ({"pipeline_class": "NoSuchPipeline"}, "option 'pipeline_class'"),
        ({"processor": "magic"}, "option 'processor'"),
        ({"offload": "disk"}, "option 'offload'"),
        ({"width": 512}, "'width' and 'height' go together"),
        ({"num_inference_steps": "many"}, "option 'num_inference_steps' must be an integer"),
        ({"long_side": 4}, "option 'long_side' must be at least 16"),
    ],
)
def test_bad_options_name_the_option(tiny, options, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        DiffusersConfig.from_options({**tiny.options, **options})


def test_missing_pipeline_folder_names_the_option(tmp_path):
    spec = PipelineSpec(source=str(tmp_path / "nowhere"), device="cpu", dtype="float32", processor="default")
    with pytest.raises(ConfigurationError, match="option 'pipeline'"):
        load_pipeline(spec)


def test_text_to_image_class_is_refused_as_edit_pipeline(tiny):
    spec = PipelineSpec(source=str(tiny.t2i_dir), pipeline_class="QwenImagePipeline", device="cpu", dtype="float32")
    with pytest.raises(ConfigurationError, match="takes no reference image"):
        DiffusersEngine(load_pipeline(spec))


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("size", "long_side", "expected"),
    [
        ((1200, 800), 1024, (1024, 688)),
        ((800, 1200), 1024, (688, 1024)),
        ((1000, 1000), 1024, (1024, 1024)),
        ((48, 32), 64, (64, 48)),
        ((4000, 100), 1024, (1024, 32)),
        ((4000, 10), 1024, (1024, 16)),
        (None, 1024, (1024, 1024)),
    ],
)
def test_output_size_follows_the_first_reference(size, long_side, expected):
    width, height = output_size(size, long_side=long_side)
    assert (width, height) == expected
    assert width % 16 == 0 and height % 16 == 0


# --------------------------------------------------------------------------- rendering


async def test_render_two_references_on_cpu(tiny, engine, program, tmp_path):
    renderer = DiffusersRenderer(DiffusersConfig.from_options(tiny.options))
    result = await renderer.render(program, tmp_path / "out.png", seed=3)
    assert result.success, result.error
    assert result.backend == "diffusers" and result.seconds > 0
    image = Image.open(result.output_path)
    assert image.format == "PNG" and image.size == (64, 48)  # long side 64, aspect of the 48x32 first reference


async def test_seed_controls_the_image(tiny, engine, program, tmp_path):
    renderer = DiffusersRenderer(DiffusersConfig.from_options(tiny.options))
    paths = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        result = await renderer.render(program, tmp_path / f"{name}.png", seed=seed)
        assert result.success, result.error
        paths[name] = result.output_path
    assert np.array_equal(pixels(paths["a"]), pixels(paths["b"]))
    assert not np.array_equal(pixels(paths["a"]), pixels(paths["c"]))


async def test_fixed_width_and_height(tiny, engine, program, tmp_path):
    renderer = DiffusersRenderer(DiffusersConfig.from_options({**tiny.options, "width": 32, "height": 80}))
    result = await renderer.render(program, tmp_path / "fixed.png")
    assert result.success, result.error
    assert Image.open(result.output_path).size == (32, 80)


def test_true_cfg_path_runs(engine, reference_files):
    image = engine.generate(
        GenerationJob(
            prompt="a card",
            images=[Image.open(reference_files[0]).convert("RGB")],
            width=64,
            height=48,
            num_inference_steps=2,
            true_cfg_scale=4.0,
            negative_prompt=" ",
        )
    )
    assert image.size == (64, 48)


async def test_no_reference_without_text_to_image_pipeline_is_a_clear_error(tiny, engine, tmp_path):
    renderer = DiffusersRenderer(DiffusersConfig.from_options(tiny.options))
    result = await renderer.render(Program(gen_prompt="a lighthouse at dawn"), tmp_path / "none.png")
    assert not result.success
    assert "t2i_pipeline" in result.error and "no reference image" in result.error
    assert not (tmp_path / "none.png").exists()


async def test_no_reference_uses_the_text_to_image_pipeline(tiny, t2i_engine, tmp_path):
    renderer = DiffusersRenderer(DiffusersConfig.from_options(tiny.with_t2i()))
    result = await renderer.render(Program(gen_prompt="a lighthouse at dawn"), tmp_path / "t2i.png", seed=1)
    assert result.success, result.error
    assert Image.open(result.output_path).size == (64, 64)
    assert type(t2i_engine._t2i).__name__ == "QwenImagePipeline"


async def test_missing_reference_file_names_the_reference(tiny, engine, tmp_path):
    program = Program(gen_prompt="x", reference_images=[Reference(img_id="IMG_004", local_path=str(tmp_path / "gone.png"))])
    result = await DiffusersRenderer(DiffusersConfig.from_options(tiny.options)).render(program, tmp_path / "o.png")
    assert not result.success and "IMG_004" in result.error and "not found" in result.error
    program = Program(gen_prompt="x", reference_images=[Reference(img_id="IMG_005")])
    result = await DiffusersRenderer(DiffusersConfig.from_options(tiny.options)).render(program, tmp_path / "o.png")
    assert not result.success and "IMG_005" in result.error and "local_path is empty" in result.error


async def test_unsafe_reference_file_is_refused(tiny, engine, tmp_path):
    fake = tmp_path / "page.png"
    fake.write_text("<html>a web page saved as .png</html>")
    program = Program(gen_prompt="x", reference_images=[Reference(img_id="IMG_001", local_path=str(fake))])
    result = await DiffusersRenderer(DiffusersConfig.from_options(tiny.options)).render(program, tmp_path / "o.png")
    assert not result.success and "IMG_001" in result.error and "not an allowed image format (looks like HTML)" in result.error


async def test_single_reference_pipelines_refuse_two_references(tiny, engine, program, tmp_path):
    single = DiffusersEngine(engine.pipeline, multi_reference=False)
    result = await DiffusersRenderer(DiffusersConfig.from_options(tiny.options), engine=single).render(program, tmp_path / "o.png")
    assert not result.success and "n_max_reference_images=1" in result.error


def test_out_of_memory_frees_and_keeps_the_engine_usable(engine, reference_files):
    import torch

    from genevolve_graph.generators.diffusers_backend import RenderOutOfMemory

    def exhausted(module, args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    job = GenerationJob(prompt="x", images=[Image.open(reference_files[0]).convert("RGB")], width=64, height=48,
                        num_inference_steps=2, true_cfg_scale=1.0)
    handle = engine.pipeline.transformer.register_forward_pre_hook(exhausted)
    try:
        with pytest.raises(RenderOutOfMemory, match="out of accelerator memory"):
            engine.generate(job)
    finally:
        handle.remove()
    assert engine.generate(job).size == (64, 48)


def test_registry_builds_the_renderer_from_context_options(tiny, engine):
    renderer = make_renderer(AgentContext(renderer="diffusers", options=dict(tiny.options)))
    assert isinstance(renderer, DiffusersRenderer)
    assert renderer.config.edit.source == str(tiny.edit_dir)
    assert renderer.config.generation.num_inference_steps == 2
    with pytest.raises(RenderError, match="option 'dtype'"):
        make_renderer(AgentContext(renderer="diffusers", options={**tiny.options, "dtype": "int3"}))


def test_engines_are_cached_per_configuration(tiny, engine):
    from genevolve_graph.generators.diffusers_backend import get_engine

    other_steps = DiffusersConfig.from_options({**tiny.options, "num_inference_steps": 9})
    assert get_engine(other_steps) is engine  # sampling settings do not reload the model


def test_tiny_renders_are_fast(engine, reference_files):
    import time

    job = GenerationJob(prompt="x", images=[Image.open(p).convert("RGB") for p in reference_files], width=64, height=48,
                        num_inference_steps=2, true_cfg_scale=1.0)
    engine.generate(job)
    started = time.perf_counter()
    engine.generate(job)
    assert time.perf_counter() - started < 5  # a sanity bound, not a benchmark: stock sizes take a minute


def test_output_is_written_as_png_even_with_another_suffix(tiny, engine, program, tmp_path):
    import asyncio

    renderer = DiffusersRenderer(DiffusersConfig.from_options(tiny.options))
    result = asyncio.run(renderer.render(program, tmp_path / "nested" / "image.jpg"))
    assert result.success and Path(result.output_path).parent.name == "nested"
    assert Image.open(result.output_path).format == "PNG"
