"""``genevolve-graph serve-policy MODEL``: vLLM's OpenAI server with the protocol's settings.

The policy is served the same way for inference (``run``/``batch --base-url``) and for GRPO
rollouts (``vllm_mode: server``), so this command writes the ``vllm serve`` line once:

* ``--protocol genevolve`` (the released checkpoint's text protocol): **no tool parser**. The tool
  block lives in the system prompt and the graph parses ``<tool_call>`` blocks itself
  (``protocol.parse_reply``); a vLLM tool parser would turn them into ``tool_calls`` and take
  them out of the reply text. ``--protocol native``: ``--enable-auto-tool-choice
  --tool-call-parser hermes`` (OpenAI-style function calling).
* The chat template: the model's own, or ``--chat-template FILE``.
* ``--max-model-len`` (a whole trajectory with its tool responses must fit), data parallelism
  (``--data-parallel-size``) and tensor parallelism.
* ``--for-training``: what TRL's weight sync needs (``--weight-transfer-config`` over NCCL,
  processed log-probs, unlimited ``--max-logprobs``, ``VLLM_SERVER_DEV_MODE=1``), as
  ``trl vllm-serve`` sets them.

It prints the ``--base-url`` to use, then replaces itself with vLLM. ``--dry-run`` prints the
command and exits. vLLM runs on Linux with CUDA GPUs only (``pip install 'genevolve-graph[vllm]'``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass, field
from typing import Literal, Optional

import typer

INSTALL_HINT = "pip install 'genevolve-graph[vllm]' (Linux with CUDA GPUs only)"


@dataclass
class ServeSettings:
    """One ``vllm serve`` launch of the policy."""

    model: str
    host: str = "0.0.0.0"
    port: int = 8000
    served_model_name: str | None = None
    protocol: Literal["genevolve", "native"] = "genevolve"
    chat_template: str | None = None
    max_model_len: int = 32768
    data_parallel_size: int = 1
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    for_training: bool = False
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.protocol not in ("genevolve", "native"):
            raise ValueError(f"--protocol must be genevolve or native, got {self.protocol!r}")
        for name in ("port", "max_model_len", "data_parallel_size", "tensor_parallel_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.gpu_memory_utilization is not None and not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"--gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}")

    @property
    def name(self) -> str:
        """The model name clients send (``--model``)."""
        return self.served_model_name or self.model

    def command(self) -> list[str]:
        cmd = ["vllm", "serve", self.model, "--host", self.host, "--port", str(self.port), "--max-model-len", str(self.max_model_len)]
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        if self.data_parallel_size > 1:
            cmd += ["--data-parallel-size", str(self.data_parallel_size)]
        if self.tensor_parallel_size > 1:
            cmd += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.gpu_memory_utilization is not None:
            cmd += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.chat_template:
            cmd += ["--chat-template", self.chat_template]
        if self.protocol == "native":
            cmd += ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
        if self.for_training:
            cmd += ["--weight-transfer-config", json.dumps({"backend": "nccl"}), "--logprobs-mode", "processed_logprobs", "--max-logprobs", "-1"]
        return cmd + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        return {"VLLM_SERVER_DEV_MODE": "1"} if self.for_training else {}

    def client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    def base_url(self) -> str:
        return f"http://{self.client_host()}:{self.port}/v1"

    def usage(self) -> list[str]:
        """What to pass to the clients of this server."""
        lines = [f"policy endpoint: --base-url {self.base_url()} --model {self.name}"]
        if self.host in ("0.0.0.0", "::"):
            lines.append(f"from other machines: --base-url http://{socket.gethostname()}:{self.port}/v1")
        if self.for_training:
            lines.append(f"training (train grpo): use_vllm: true, vllm_mode: server, vllm_server_base_url: http://{self.client_host()}:{self.port}")
        return lines


def vllm_available() -> bool:
    return shutil.which("vllm") is not None or importlib.util.find_spec("vllm") is not None


def serve_policy(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Hub id or local folder of the policy (e.g. the GenEvolve checkpoint)."),
    host: str = typer.Option("0.0.0.0", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="Port."),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="Name clients send as --model (default: MODEL)."),
    protocol: str = typer.Option("genevolve", "--protocol", help="genevolve (text protocol, no tool parser) | native (OpenAI tool calling)."),
    chat_template: Optional[str] = typer.Option(None, "--chat-template", help="A chat template file (default: the model's own)."),
    max_model_len: int = typer.Option(32768, "--max-model-len", help="Longest prompt + trajectory in tokens."),
    data_parallel_size: int = typer.Option(1, "--data-parallel-size", "--dp", help="Model replicas (one per GPU group)."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", "--tp", help="GPUs per replica."),
    gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization", help="Share of GPU memory vLLM may take."),
    for_training: bool = typer.Option(False, "--for-training", help="Accept TRL's weight sync (train grpo with vllm_mode: server)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the vllm command and exit."),
) -> None:
    """Serve the policy with vLLM's OpenAI server, set up for the GenEvolve protocol.

    Further options after the known ones go to `vllm serve` as they are.
    """
    try:
        settings = ServeSettings(
            model=model, host=host, port=port, served_model_name=served_model_name, protocol=protocol,  # type: ignore[arg-type]
            chat_template=chat_template, max_model_len=max_model_len, data_parallel_size=data_parallel_size,
            tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization, for_training=for_training,
            extra_args=list(ctx.args),
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if chat_template and not os.path.isfile(os.path.expanduser(chat_template)):
        typer.echo(f"error: --chat-template {chat_template} is not a file; pass a Jinja chat template file", err=True)
        raise typer.Exit(2)
    env = settings.environment()
    line = " ".join(f"{k}={v}" for k, v in env.items()) + (" " if env else "") + shlex.join(settings.command())
    if dry_run:
        typer.echo(line)
        for usage in settings.usage():
            typer.echo(usage)
        return
    if not vllm_available():
        typer.echo(f"error: serve-policy needs vLLM, which is not installed: {INSTALL_HINT}; --dry-run prints the command", err=True)
        raise typer.Exit(2)
    for usage in settings.usage():
        typer.echo(usage)
    typer.echo(f"starting: {line}", err=True)
    command = settings.command()
    executable = shutil.which("vllm")
    if executable is None:  # the package without its console script: run the module's CLI
        command = [sys.executable, "-m", "vllm.entrypoints.cli.main", *command[1:]]
        executable = sys.executable
    os.execvpe(executable, command, {**os.environ, **env})


def register(app: typer.Typer) -> None:
    """Add ``serve-policy`` to the CLI."""
    app.command("serve-policy", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(serve_policy)


__all__ = ["INSTALL_HINT", "ServeSettings", "register", "serve_policy", "vllm_available"]
