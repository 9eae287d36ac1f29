"""Command-line commands of the generators area: ``serve-renderer``.

``register(app)`` adds them to the project's Typer app. The module also runs alone
(``python -m genevolve_graph.cli.serve_renderer serve-renderer ...``), which the
benchmark uses to start service processes.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Optional

import typer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001


def _fail(message: str) -> None:
    """One line on stderr and exit code 2, the project's answer to bad input."""
    typer.echo("error: " + " ".join(str(message).split()), err=True)
    raise typer.Exit(code=2)


def serve_renderer(
    pipeline: Annotated[str, typer.Option("--pipeline", help="Local folder or hub id of the pipeline, e.g. Qwen/Qwen-Image-Edit-2511.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    pipeline_class: Annotated[str, typer.Option(help="diffusers pipeline class, 'module:Class', or 'auto'.")] = "QwenImageEditPlusPipeline",
    t2i_pipeline: Annotated[Optional[str], typer.Option(help="Text-to-image pipeline for requests without references, e.g. Qwen/Qwen-Image.")] = None,
    t2i_pipeline_class: Annotated[str, typer.Option(help="Class of --t2i-pipeline.")] = "QwenImagePipeline",
    dtype: Annotated[str, typer.Option(help="auto | bfloat16 | float16 | float32.")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cuda | cuda:N | mps | cpu. One process per GPU: use CUDA_VISIBLE_DEVICES.")] = "auto",
    processor: Annotated[str, typer.Option(help="auto | image-only | default (image-only: Qwen2-VL processor without torchvision).")] = "auto",
    offload: Annotated[str, typer.Option(help="none | model | sequential CPU offload.")] = "none",
    max_queue: Annotated[int, typer.Option(help="Requests that may wait behind the running one; more get 503.")] = 8,
    request_timeout: Annotated[float, typer.Option(help="Seconds a request may take, queueing included; then 504.")] = 1800.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds an admitted request's body may take to arrive; then 408 and its queue slot is free again.")] = 60.0,
    max_reference_images: Annotated[int, typer.Option(help="Most reference images per request.")] = 4,
    max_reference_mb: Annotated[float, typer.Option(help="Largest reference image, in MiB.")] = 12.0,
    max_prompt_chars: Annotated[int, typer.Option(help="Longest prompt, in characters.")] = 4000,
    max_steps: Annotated[int, typer.Option(help="Most denoising steps per request.")] = 100,
    default_long_side: Annotated[Optional[int], typer.Option(help="Output long side for requests without width/height (aspect of the first reference); default: the pipeline's own size.")] = None,
    vae_image_pixels: Annotated[Optional[int], typer.Option(help="Pixel area references are resized to for the VAE (Qwen edit pipelines).")] = None,
    condition_image_pixels: Annotated[Optional[int], typer.Option(help="Pixel area references are resized to for the VL condition (Qwen edit pipelines).")] = None,
    torch_threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: torch's choice).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    token: Annotated[Optional[str], typer.Option(envvar="GENEVOLVE_SERVICE_TOKEN", show_envvar=True, help="Bearer token POST /generate requires (clients send GENEVOLVE_SERVICE_TOKEN). Without it, bind to loopback only.")] = None,
    decode_concurrency: Annotated[int, typer.Option(help="Requests that may decode their references at once.")] = 2,
    max_total_reference_mp: Annotated[float, typer.Option(help="All references of one request together, in megapixels.")] = 48.0,
) -> None:
    """Serve one diffusers pipeline over HTTP (POST /generate, GET /health) for the 'service' renderer."""
    from genevolve_graph.generators.base import RenderError
    from genevolve_graph.generators.diffusers_backend import DiffusersConfig, DiffusersEngine
    from genevolve_graph.generators.service_app import ServiceLimits, ServiceSettings, create_app, exposure_warning
    from genevolve_graph.safety.redaction import RedactingFilter

    if not 0 < port < 65536:
        _fail(f"--port must be between 1 and 65535, not {port}")
    if max_queue < 1:
        _fail(f"--max-queue must be at least 1, not {max_queue}")
    if default_long_side is not None and default_long_side < 16:
        _fail(f"--default-long-side must be at least 16, not {default_long_side}")
    if decode_concurrency < 1:
        _fail(f"--decode-concurrency must be at least 1, not {decode_concurrency}")
    if max_total_reference_mp <= 0:
        _fail(f"--max-total-reference-mp must be positive, not {max_total_reference_mp}")
    if request_timeout <= 0:
        _fail(f"--request-timeout must be positive, not {request_timeout}")
    if body_timeout <= 0:
        _fail(f"--body-timeout must be positive, not {body_timeout}")
    options = {
        "pipeline": pipeline,
        "pipeline_class": pipeline_class,
        "t2i_pipeline": t2i_pipeline,
        "t2i_pipeline_class": t2i_pipeline_class,
        "dtype": dtype,
        "device": device,
        "processor": processor,
        "offload": offload,
        "vae_image_pixels": vae_image_pixels,
        "condition_image_pixels": condition_image_pixels,
    }
    try:
        config = DiffusersConfig.from_options(options)
        limits = ServiceLimits(
            max_reference_images=max_reference_images,
            max_reference_bytes=int(max_reference_mb * 1024 * 1024),
            max_prompt_chars=max_prompt_chars,
            max_steps=max_steps,
            max_total_reference_pixels=int(max_total_reference_mp * 1_000_000),
        )
    except (RenderError, ValueError) as exc:
        _fail(str(exc))
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    warning = exposure_warning(host, token)
    if warning:
        typer.echo(warning, err=True)
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    try:
        engine = DiffusersEngine.load(config)  # before binding the port: a bad --pipeline is one line, exit 2
    except RenderError as exc:
        _fail(str(exc))

    import uvicorn

    settings = ServiceSettings(max_queue=max_queue, request_timeout=request_timeout, limits=limits, default_long_side=default_long_side,
                               decode_concurrency=decode_concurrency, token=token or None, body_timeout=body_timeout)
    app = create_app(settings, engine=engine)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)


def register(app: typer.Typer) -> None:
    """Add the generators' commands to the project's Typer app."""
    app.command("serve-renderer")(serve_renderer)


def main(argv: list[str] | None = None) -> None:
    """Run these commands alone (no project CLI needed)."""
    app = typer.Typer(add_completion=False, no_args_is_help=True)

    @app.callback()
    def _group() -> None:
        """genevolve-graph generator commands."""

    register(app)
    app(args=argv if argv is not None else sys.argv[1:], prog_name="genevolve-graph")


if __name__ == "__main__":
    main()
