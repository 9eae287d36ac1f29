"""Helpers every subcommand shares: the one-line error, the policy and backend options of
``run`` and ``batch``, checkpoint URL checks, and the output-overwrites-input check.

They sit below the command modules (``cli.run``, ``cli.batch``, ``cli.data``, ...), which
import them; the top-level app (``cli.app``) only assembles those modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

from genevolve_graph.core.context import AgentContext
from genevolve_graph.core.registry import GENERATORS, IMAGE_SEARCH, POLICIES, SEARCH


def fail(message: str, code: int = 2) -> NoReturn:
    """A one-line error naming the input and the fix."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


# --------------------------------------------------------------------------- options shared by run and batch


def policy_context(
    *,
    policy: Optional[str],
    base_url: Optional[str],
    model: Optional[str],
    protocol: str,
    temperature: float,
    top_p: float,
    max_tokens: int,
    max_rounds: int,
    max_refs: int,
    max_tool_calls: int,
    search: str,
    corpus: Optional[Path],
    image_search: str,
    image_dir: Optional[Path],
    skills_dir: Optional[Path],
    system_prompt_file: Optional[Path],
    renderer: str,
    output_dir: Path,
    experiment: str,
    seed: int,
    options: dict[str, Any] | None = None,
) -> AgentContext:
    """Build and check an ``AgentContext`` from command-line values (errors exit 2)."""
    from genevolve_graph.generators.registry import RENDERERS
    from genevolve_graph.policies import POLICY_NAMES
    from genevolve_graph.tools.registry import IMAGE_SEARCH_BACKENDS, SEARCH_BACKENDS

    ctx = AgentContext(base_url=base_url or "", model=model or "")
    if policy is None:
        policy = "openai" if ctx.base_url else "rules"
        if policy == "rules":
            typer.echo(
                "note: no policy endpoint configured (GENEVOLVE_BASE_URL / --base-url); using the offline rule-based planner. "
                "Use --policy openai --base-url URL --model NAME for a served policy.",
                err=True,
            )
    if policy not in POLICY_NAMES:
        fail(f"unknown policy {policy!r} (--policy); choose one of {', '.join(POLICY_NAMES)}")
    if protocol not in ("genevolve", "native"):
        fail(f"unknown protocol {protocol!r} (--protocol); choose genevolve or native")
    if policy == "openai" and not ctx.base_url:
        fail("--policy openai needs an endpoint: pass --base-url URL or set GENEVOLVE_BASE_URL")
    if policy == "openai" and not ctx.model:
        fail("--policy openai needs a model: pass --model NAME or set GENEVOLVE_MODEL")
    if search not in SEARCH_BACKENDS:
        fail(f"unknown search backend {search!r} (--search); choose one of {', '.join(sorted(SEARCH_BACKENDS))}")
    if image_search not in IMAGE_SEARCH_BACKENDS:
        fail(f"unknown image search backend {image_search!r} (--image-search); choose one of {', '.join(sorted(IMAGE_SEARCH_BACKENDS))}")
    if renderer != "none" and renderer not in RENDERERS:
        fail(f"unknown renderer {renderer!r} (--renderer); choose one of {', '.join(sorted(RENDERERS) + ['none'])}")
    check_plugins(((POLICIES, policy, "--policy"), (SEARCH, search, "--search"), (IMAGE_SEARCH, image_search, "--image-search"),
                   (GENERATORS, renderer, "--renderer")))
    for value, ranges in ((max_rounds, "--max-rounds"), (max_refs, "--max-refs"), (max_tool_calls, "--max-tool-calls"), (max_tokens, "--max-tokens")):
        if value < (2 if ranges == "--max-rounds" else 0 if ranges == "--max-tool-calls" else 1):
            fail(f"{ranges} {value} is too small; pass a positive number")
    if search == "local" and corpus is not None:
        from genevolve_graph.tools.local_search import CorpusError, read_corpus

        try:
            read_corpus(corpus.expanduser())
        except CorpusError as exc:
            fail(str(exc))
    if image_search == "local" and image_dir is not None:
        from genevolve_graph.tools.local_images import ImageFolderError, read_folder

        try:
            read_folder(image_dir.expanduser())
        except ImageFolderError as exc:
            fail(str(exc))
    if skills_dir is not None:
        from genevolve_graph.skills import SkillError, SkillLibrary

        try:
            SkillLibrary(skills_dir)
        except SkillError as exc:
            fail(f"{exc} (--skills-dir)")
    if system_prompt_file is not None:
        from genevolve_graph.prompts import PromptFileError, system_prompt

        try:
            system_prompt(protocol=protocol, template_file=str(system_prompt_file))
        except PromptFileError as exc:
            fail(f"{exc} (--system-prompt-file)")
    return ctx.with_updates(
        policy=policy,
        protocol=protocol,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        max_rounds=max_rounds,
        n_max_reference_images=max_refs,
        max_tool_calls=max_tool_calls,
        search=search,
        corpus=str(corpus.expanduser().resolve()) if corpus else "",
        image_search=image_search,
        image_dir=str(image_dir.expanduser().resolve()) if image_dir else "",
        skills_dir=str(skills_dir.expanduser().resolve()) if skills_dir else "",
        system_prompt_file=str(system_prompt_file.expanduser().resolve()) if system_prompt_file else "",
        renderer=renderer,
        output_dir=str(output_dir.expanduser().resolve()),
        experiment=experiment,
        seed=seed,
        options=dict(options or {}),
    )


def check_plugins(choices: Any) -> None:
    """Import each chosen backend that an installed package provides, before anything runs:
    a plugin that raises or calls ``sys.exit`` on import is a one-line error (exit 2) naming
    it and the flag, not a traceback or a silent exit. Built-ins are imported when used."""
    from genevolve_graph.core.registry import PluginLoadError

    for registry, name, flag in choices:
        if name and registry.is_plugin(name):
            try:
                registry.factory(name)
            except PluginLoadError as exc:
                fail(f"{exc} ({flag})")


def parse_option_pairs(pairs: list[str] | None) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs; VALUE is read as JSON when it parses (numbers, lists, true)."""
    from genevolve_graph.core.options import parse_option_pairs as parse

    for pair in pairs or []:
        if not pair.partition("=")[0].strip() or "=" not in pair:
            fail(f"--option {pair!r} is not KEY=VALUE (for example --option download_concurrency=8)")
    return parse(pairs or [])


def backend_options(
    *,
    show_images: bool = False,
    searxng_url: Optional[str] = None,
    langchain_search: Optional[str] = None,
    allow_host: list[str] | None = None,
    image_download_dir: Optional[Path] = None,
    option: list[str] | None = None,
    service_url: list[str] | None = None,
    pipeline: Optional[str] = None,
) -> dict[str, Any]:
    """``AgentContext.options`` from the backend flags shared by run and batch."""
    from genevolve_graph.core.options import renderer_options_from_cli

    options = parse_option_pairs(option)
    options.update(renderer_options_from_cli(service_urls=service_url or (), pipeline=pipeline))
    if show_images:
        options["show_images"] = True
    if searxng_url:
        options["searxng_url"] = searxng_url
    if langchain_search:
        options["langchain_search"] = langchain_search
    if allow_host:
        options["allow_hosts"] = list(allow_host)
    if image_download_dir:
        options["image_download_dir"] = str(image_download_dir.expanduser().resolve())
    return options


def check_checkpoint_url(url: str) -> None:
    """The URL's form, and for ``sqlite:///`` that the file, if it exists, is a sound database."""
    from genevolve_graph.persistence import CheckpointFileError, CheckpointURLError, check_checkpoint

    try:
        check_checkpoint(url)
    except CheckpointFileError as exc:
        fail(str(exc))
    except CheckpointURLError as exc:
        fail(f"{exc} (--checkpoint)")
    if url.startswith(("postgresql://", "postgres://")):
        check_postgres_reachable(url)


def check_postgres_reachable(url: str) -> None:
    """Connect once (5 s at most) before anything runs: an unreachable database is one line
    naming it (credentials masked), not a driver traceback after the run started."""
    from genevolve_graph.safety.redaction import redact_url

    try:
        import psycopg
    except ImportError:
        fail("a postgresql:// checkpoint needs psycopg: pip install 'genevolve-graph[postgres]'")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())[:300]
        fail(f"cannot reach the PostgreSQL checkpoint database {redact_url(url)} (--checkpoint): {reason}; "
             "start the database or fix the URL")


def check_server_reachable(server: str, flag: str = "--server") -> None:
    """Fail fast (one line, exit 2) when a LangGraph Server answers nothing at all; any
    HTTP status passes (the server may require a key for ``/ok``)."""
    import httpx

    from genevolve_graph.safety.redaction import redact_text

    from genevolve_graph.net.limits import probe
    from genevolve_graph.util import event_loop

    try:
        event_loop.run(probe(server.rstrip("/") + "/ok"))
    except httpx.HTTPError as exc:
        fail(redact_text(f"cannot reach the LangGraph Server {server} ({flag}): {type(exc).__name__}: {exc}; "
                         "start it (langgraph dev, or make studio) or fix the URL"))


def check_out_folder(flag: str, folder: Path) -> None:
    """The folder a command writes into: not an existing file, and writable (probed with a
    temporary file in it, or in its nearest existing parent), before any work is done."""
    from genevolve_graph.util.file_modes import mkstemp

    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        fail(f"{flag} {folder} is a file; pass a folder (it is created if missing)")
    probe_in = folder
    while not probe_in.exists() and probe_in.parent != probe_in:
        probe_in = probe_in.parent
    try:
        handle, probe = mkstemp(dir=probe_in, prefix=".genevolve-write-check-")
    except OSError as exc:
        fail(f"cannot write in {probe_in} ({flag} {folder}): {exc.strerror or exc}; pass a folder you can write to")
    import os

    os.close(handle)
    Path(probe).unlink(missing_ok=True)


def sqlite_file(url: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` checkpoint URL (None for other kinds, and for
    URLs ``check_checkpoint_url`` refuses)."""
    from genevolve_graph.persistence import CheckpointURLError, parse_url

    try:
        kind, target = parse_url(url)
    except CheckpointURLError:
        return None
    return Path(target).expanduser() if kind == "sqlite" else None


def trace_database_inputs() -> list[tuple[str, Path]]:
    """The user's trace databases (default and ``$GENEVOLVE_TRACE_DB``), as inputs that no
    command's output may be, whatever the command reads."""
    from genevolve_graph.util.paths import trace_databases

    return [("the trace database", path) for path in trace_databases()]


def check_run_outputs(outputs: list[tuple[str, Any]], inputs: list[tuple[str, Any]]) -> None:
    """Exit 2 when a file the command will write is one it reads, or a trace database (or
    its ``-wal``/``-shm`` file) that the command does not record into (see ``file_guard``)."""
    from genevolve_graph.safety.file_guard import OutputOverwritesInput, check_outputs

    try:
        check_outputs(outputs, inputs)
        check_outputs([item for item in outputs if item[0] != "--checkpoint"], trace_database_inputs())
    except OutputOverwritesInput as exc:
        fail(str(exc))


__all__ = ["backend_options", "check_checkpoint_url", "check_run_outputs", "fail", "trace_database_inputs", "parse_option_pairs", "policy_context", "sqlite_file"]


# --------------------------------------------------------------------------- credentials preflight


def required_credentials() -> dict[tuple[str, str], tuple[str, ...]]:
    """(flag, backend name) -> environment variables, any one of which the backend needs.

    The names come from the backends' own modules, so the preflight and the backend cannot
    disagree about which variable is read."""
    from genevolve_graph.generators.gemini import API_KEY_VARIABLES
    from genevolve_graph.tools import serper, tavily

    return {
        ("--search", "serper"): (serper.KEY_ENV,),
        ("--search", "tavily"): (tavily.KEY_ENV,),
        ("--image-search", "serper"): (serper.KEY_ENV,),
        ("--image-search", "tavily"): (tavily.KEY_ENV,),
        ("--renderer", "gemini"): API_KEY_VARIABLES,
    }


def check_credentials(*, search: str | None = None, image_search: str | None = None, renderer: str | None = None) -> None:
    """Refuse (exit 2, one line naming the variable) a run whose backend would find no key.

    Without it, every search of the run answered "search unavailable" and the command still
    exited 0 (issue 24): a missing credential is a configuration error, caught before any row."""
    import os

    needed = required_credentials()
    for flag, name in (("--search", search), ("--image-search", image_search), ("--renderer", renderer)):
        variables = needed.get((flag, name or ""))
        if variables and not any(os.environ.get(v, "").strip() for v in variables):
            fail(f"{flag} {name} needs {' or '.join(variables)} in the environment; set it (or choose another {flag.lstrip('-')} backend)")


# --------------------------------------------------------------------------- option keys


OTHER_OPTION_KEYS = (
    "chat_client",  # policies.openai_chat
    "output_name",  # nodes.render
    "serper_base_url", "tavily_base_url", "tavily_search_depth",
    "searxng_url", "searxng_language", "searxng_safesearch",
    "ddgs_backend", "ddgs_region", "ddgs_safesearch",
    "langchain_search",
)
"""Option keys the built-in backends read besides the generators' (``core.options.OPTION_DOCS``)
and the web tools' (``tools.web_options.WebOptions``)."""


def declared_option_keys(registry: Any, name: str) -> tuple[str, ...]:
    """The option keys an installed backend declares: an ``options`` attribute (names, or a
    dict name -> description) on the factory its entry point names (docs/extending.md).
    A built-in name, an unknown name or a factory that cannot be imported declares nothing
    here; building the backend reports those."""
    if not name or name in registry.builtins or name not in registry:
        return ()
    try:
        factory = registry.factory(name)
    except ValueError:
        return ()
    declared = getattr(factory, "options", ())
    return tuple(str(k) for k in (declared.keys() if isinstance(declared, dict) else declared or ()))


def known_option_keys(*, search: str = "", image_search: str = "", renderer: str = "", policy: str = "") -> list[str]:
    """Every option key a backend of the run may read: the built-ins' and the chosen plugins' own."""
    import dataclasses

    from genevolve_graph.core.options import OPTION_DOCS
    from genevolve_graph.core.registry import GENERATORS, IMAGE_SEARCH, POLICIES, SEARCH
    from genevolve_graph.tools.web_options import WebOptions

    keys = {k for group in OPTION_DOCS.values() for k in group}
    keys.update(f.name for f in dataclasses.fields(WebOptions))
    keys.update(OTHER_OPTION_KEYS)
    for registry, name in ((SEARCH, search), (IMAGE_SEARCH, image_search), (GENERATORS, renderer), (POLICIES, policy)):
        keys.update(declared_option_keys(registry, name))
    return sorted(keys)


FLAG_FOR_OPTION = {"request_timeout": "--request-timeout", "max_retries": "--max-retries", "retry_delay": "--retry-delay",
                   "seed": "--seed", "max_rounds": "--max-rounds", "temperature": "--temperature"}
"""Context fields people try as options: the error points at their flag."""


def check_option_keys(options: dict[str, Any], **backends: str) -> None:
    """Exit 2 on an ``--option KEY=VALUE`` that no backend reads (a silently ignored typo ran
    with the default before, issue 24), naming the known keys."""
    known = known_option_keys(**backends)
    unknown = [k for k in options if k not in known]
    if not unknown:
        return
    key = unknown[0]
    hint = f"; use {FLAG_FOR_OPTION[key]} instead" if key in FLAG_FOR_OPTION else ""
    fail(f"--option {key}: no backend of this run reads it{hint}. Known keys: {', '.join(known)} "
         "(an installed backend declares its own with an 'options' attribute on its factory)")


def builtin_help(field: str, what: str) -> str:
    """Help text of a backend flag: the built-in names (read without scanning entry points,
    so ``--help`` stays quick) and where the installed ones are listed."""
    from genevolve_graph.core.registry import REGISTRIES

    registry = REGISTRIES[field]
    names = " | ".join([*registry.builtins, *registry.extra])
    return f"{what}: {names}, or an installed one (genevolve-graph backends lists all, with their packages)."
