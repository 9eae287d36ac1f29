"""``genevolve-graph run`` (one request, end to end) and ``genevolve-graph draw`` (the graph)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Optional

import typer

from genevolve_graph.util import event_loop

from genevolve_graph.cli.common import (backend_options, builtin_help, check_checkpoint_url, check_credentials, check_option_keys, check_out_folder,
                                        check_run_outputs, fail, policy_context, sqlite_file)


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``draw`` to ``app``."""
    app.command()(run)
    app.command()(draw)


# --------------------------------------------------------------------------- run


def run(
    prompt: str = typer.Argument(..., help="The image request."),
    out: Path = typer.Option(Path("genevolve-out"), "--out", help="Output folder: program.json, the image, trace.sqlite."),
    policy: Optional[str] = typer.Option(None, help=builtin_help("policy", "Planner policy") + " Default: openai when an endpoint is configured, else rules."),
    base_url: Optional[str] = typer.Option(None, envvar=["GENEVOLVE_BASE_URL", "OPENAI_BASE_URL"], help="OpenAI-compatible endpoint of the policy."),
    model: Optional[str] = typer.Option(None, envvar="GENEVOLVE_MODEL", help="Model name at --base-url."),
    api_key: Optional[str] = typer.Option(None, help="API key for --base-url (default: OPENAI_API_KEY). Never recorded."),
    protocol: str = typer.Option("genevolve", help="genevolve (text protocol of the released checkpoint) | native (OpenAI tool calling)."),
    temperature: float = typer.Option(0.6, help="Policy sampling temperature."),
    top_p: float = typer.Option(0.9, help="Policy nucleus sampling."),
    max_tokens: int = typer.Option(4096, help="Maximum tokens per policy round."),
    max_rounds: int = typer.Option(11, help="Maximum policy rounds."),
    max_refs: int = typer.Option(2, help="Maximum reference images in the program."),
    max_tool_calls: int = typer.Option(10, help="Maximum tool calls."),
    search: str = typer.Option("local", help=builtin_help("search", "Text search backend")),
    corpus: Optional[Path] = typer.Option(None, help="JSONL corpus for --search local."),
    image_search: str = typer.Option("local", help=builtin_help("image_search", "Image search backend")),
    image_dir: Optional[Path] = typer.Option(None, help="Captioned image folder for --image-search local."),
    skills_dir: Optional[Path] = typer.Option(None, help="Folder of extra or overriding skill guides."),
    system_prompt_file: Optional[Path] = typer.Option(None, help="Another system prompt ({tools} marks the tool block)."),
    renderer: str = typer.Option("preview", help=builtin_help("renderer", "Generator backend")),
    checkpoint: Optional[str] = typer.Option(None, help="memory | sqlite:///PATH | postgresql://... (default: sqlite:///OUT/trace.sqlite)."),
    thread_id: Optional[str] = typer.Option(None, help="Thread id in the checkpointer (default: a new uuid)."),
    experiment: str = typer.Option("", help="Experiment tag recorded in checkpoint metadata."),
    seed: int = typer.Option(0, help="Render seed."),
    show_images: bool = typer.Option(False, "--show-images", help="Attach thumbnails of retrieved images to observations (vision policies)."),
    searxng_url: Optional[str] = typer.Option(None, envvar="SEARXNG_URL", help="SearXNG instance for --search/--image-search searxng."),
    langchain_search: Optional[str] = typer.Option(None, help="module:attr of a LangChain tool or retriever for --search langchain."),
    allow_host: Optional[list[str]] = typer.Option(None, help="host:port exempt from the public-address rule for image downloads (repeatable)."),
    image_download_dir: Optional[Path] = typer.Option(None, envvar="IMAGE_DOWNLOAD_DIR", help="Cache folder for downloaded images."),
    option: Optional[list[str]] = typer.Option(None, "--option", help="Backend option KEY=VALUE (repeatable), e.g. download_concurrency=8."),
    service_url: Optional[list[str]] = typer.Option(None, "--service-url", help="Render service URL for --renderer service (repeatable: round-robin)."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Local path or model id of the diffusers pipeline for --renderer diffusers."),
    guidance: str = typer.Option("off", help="off | retrieve: add the top Decision Guide for the request (from --guide-dir) to the system prompt."),
    guide_dir: Optional[Path] = typer.Option(None, help="Experience buffer folder (guides.jsonl) for --guidance retrieve."),
    embedding_model: Optional[str] = typer.Option(None, help="sentence-transformers model (hub id or local path) for --guide-dir (default: Qwen/Qwen3-Embedding-0.6B)."),
    guide_gate: float = typer.Option(0.84, help="Minimum cosine similarity for a guide to be used."),
    request_timeout: float = typer.Option(120.0, help="Seconds before one policy request times out."),
    max_retries: int = typer.Option(3, help="Retries of a failed policy request (429, 5xx, timeouts) before the run ends with termination 'error'."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print neither live progress nor the trajectory."),
) -> None:
    """Plan a program for PROMPT, render it, and record the trajectory.

    On a terminal, progress (rounds, tool calls, images found, rendering) is shown on stderr
    as it happens; stdout carries the trajectory and the summary lines as before."""
    if not prompt.strip():
        fail("the prompt is empty; pass the image request as the first argument, e.g. genevolve-graph run \"a red fox in snow\"")
    if api_key:
        os.environ["OPENAI_API_KEY"] = api_key
    out = out.expanduser()
    ctx = policy_context(
        policy=policy, base_url=base_url, model=model, protocol=protocol, temperature=temperature, top_p=top_p,
        max_tokens=max_tokens, max_rounds=max_rounds, max_refs=max_refs, max_tool_calls=max_tool_calls, search=search,
        corpus=corpus, image_search=image_search, image_dir=image_dir, skills_dir=skills_dir,
        system_prompt_file=system_prompt_file, renderer=renderer, output_dir=out, experiment=experiment, seed=seed,
        options={
            **backend_options(show_images=show_images, searxng_url=searxng_url, langchain_search=langchain_search,
                              allow_host=allow_host, image_download_dir=image_download_dir, option=option,
                              service_url=service_url, pipeline=pipeline),
            "output_name": "preview.png" if renderer == "preview" else "image.png",
        },
    )
    check_option_keys(ctx.options, search=search, image_search=image_search, renderer=renderer, policy=ctx.policy)
    check_credentials(search=search, image_search=image_search, renderer=renderer)
    if request_timeout <= 0 or max_retries < 0:
        fail("--request-timeout must be above 0 and --max-retries at least 0")
    ctx = ctx.with_updates(request_timeout=request_timeout, max_retries=max_retries)
    if guidance not in ("off", "retrieve"):
        fail(f"unknown guidance {guidance!r} (--guidance); choose off or retrieve")
    if guidance == "retrieve" and guide_dir is None:
        fail("--guidance retrieve needs --guide-dir: the experience buffer folder a training run wrote (guides.jsonl)")
    if guide_dir is not None and not (guide_dir.expanduser() / "guides.jsonl").is_file():
        fail(f"no experience buffer at {guide_dir} (--guide-dir); expected {guide_dir / 'guides.jsonl'}")
    if not -1.0 <= guide_gate <= 1.0:
        fail(f"--guide-gate is a cosine similarity in [-1, 1], got {guide_gate}")
    ctx = ctx.with_updates(guidance=guidance, guide_dir=str(guide_dir.expanduser().resolve()) if guide_dir else "", guide_gate=guide_gate,
                           **({"embedding_model": embedding_model} if embedding_model else {}))
    if guide_dir is not None:
        from genevolve_graph.experience.buffer import read_guides

        try:
            read_guides(guide_dir.expanduser())
        except ValueError as exc:
            fail(f"{exc} (--guide-dir); fix or delete that line, or pass another buffer")
    check_out_folder("--out", out)
    url = checkpoint or f"sqlite:///{(out / 'trace.sqlite').resolve()}"
    check_checkpoint_url(url)
    check_run_outputs(
        [("--out", out / "program.json"), ("--out", out / ctx.options["output_name"]), ("--checkpoint", sqlite_file(url))],
        [("--corpus", corpus), ("--system-prompt-file", system_prompt_file)],
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create output folder {out} (--out): {exc.strerror}")
    from genevolve_graph.agent.runner import run_one, write_program_json
    from genevolve_graph.core.trajectory import print_trajectory

    from genevolve_graph.cli.live import RunProgress, wants_progress

    thread = thread_id or str(uuid.uuid4())
    if wants_progress(quiet):
        with RunProgress() as progress:
            result = event_loop.run(run_one(prompt.strip(), ctx, checkpoint_url=url, thread_id=thread, on_event=progress.handle))
    else:
        result = event_loop.run(run_one(prompt.strip(), ctx, checkpoint_url=url, thread_id=thread))
    if not quiet:
        print_trajectory(result.messages)
    path = write_program_json(out / "program.json", result)
    typer.echo(f"termination: {result.termination}  rounds: {result.rounds}  tool calls: {result.tool_calls}")
    for repair in result.repairs:
        typer.echo(f"repaired: {repair}")
    typer.echo(f"program: {path}")
    for note in result.render.notes if result.render else []:
        typer.echo(f"note: {note}", err=True)
    if result.render and result.render.output_path:
        typer.echo(f"image: {result.render.output_path}")
    elif result.render and result.render.error:
        typer.echo(f"render failed: {result.render.error}", err=True)
    typer.echo(f"trace: {url} (thread {result.thread_id})")
    if result.termination != "answer":
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(1)
    if result.render is not None and not result.render.success:
        # The program is written, but the image the command was asked for is not: not a success (issue 24).
        typer.echo(f"error: rendering failed ({result.render.error or 'no image'}); the program is in {path}; "
                   "render it again with genevolve-graph render, or pass --renderer none to plan only", err=True)
        raise typer.Exit(1)


# --------------------------------------------------------------------------- draw


def draw(
    format: str = typer.Option("mermaid", "--format", help="mermaid | png | ascii"),
    out: Optional[Path] = typer.Option(None, "--out", help="File to write (png needs it; default for text: stdout)."),
    xray: bool = typer.Option(False, help="Expand subgraphs."),
) -> None:
    """Draw the agent graph."""
    from genevolve_graph.agent.graph import build_graph

    drawable = build_graph().get_graph(xray=xray)
    if format == "mermaid":
        text = drawable.draw_mermaid()
    elif format == "ascii":
        try:
            text = drawable.draw_ascii()
        except ImportError:
            fail("--format ascii needs grandalf: pip install grandalf")
    elif format == "png":
        if out is None:
            fail("--format png needs --out FILE.png")
        try:
            drawable.draw_png(str(out))
        except ImportError:
            fail("--format png needs graphviz and pygraphviz: apt-get install graphviz libgraphviz-dev && pip install pygraphviz (no online renderer is used)")
        typer.echo(str(out))
        return
    else:
        fail(f"unknown format {format!r} (--format); choose mermaid, png or ascii")
    if out:
        out.write_text(text, encoding="utf-8")
        typer.echo(str(out))
    else:
        typer.echo(text)


