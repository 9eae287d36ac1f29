"""vLLM serving and rollout configuration (issue 13 item 10). vLLM needs Linux with CUDA GPUs and
is not installed on CI: these tests cover the command line and the configuration; the real
vLLM-backed rollout runs in benchmarks/gpu_check.sh on a GPU machine."""

from __future__ import annotations

import shlex
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from genevolve_graph.cli.serve_policy import ServeSettings, register, vllm_available
from genevolve_graph.training.generation import CompletionsGenerator, LocalGenerator, SamplingParams
from genevolve_graph.training.generation.colocate import ColocatedVLLMGenerator, generation_from_vllm, vllm_sampling_kwargs
from genevolve_graph.training.rollout import GenEvolveRollout
from genevolve_graph.core.context import AgentContext


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def version() -> None:  # a second command keeps serve-policy a subcommand
        typer.echo("0")

    register(app)
    return app


def _dry(*args: str) -> tuple[list[str], str]:
    result = CliRunner().invoke(_app(), ["serve-policy", *args, "--dry-run"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    return shlex.split(first), result.output


def test_genevolve_mode_serves_without_a_tool_parser_and_prints_the_base_url():
    cmd, output = _dry("/models/GenEvolve-8B", "--port", "8100", "--max-model-len", "16384", "--dp", "4",
                       "--served-model-name", "GenEvolve-8B")
    assert cmd[:3] == ["vllm", "serve", "/models/GenEvolve-8B"]
    assert "--tool-call-parser" not in cmd and "--enable-auto-tool-choice" not in cmd
    assert cmd[cmd.index("--max-model-len") + 1] == "16384" and cmd[cmd.index("--data-parallel-size") + 1] == "4"
    assert "policy endpoint: --base-url http://127.0.0.1:8100/v1 --model GenEvolve-8B" in output


def test_native_mode_training_mode_chat_template_and_passthrough(tmp_path):
    template = tmp_path / "chat.jinja"
    template.write_text("{{ messages }}")
    cmd, output = _dry("Qwen/Qwen3-VL-8B-Instruct", "--protocol", "native", "--chat-template", str(template), "--for-training",
                       "--tp", "2", "--enforce-eager")
    assert cmd[0].startswith("VLLM_SERVER_DEV_MODE=1")  # TRL's weight-sync endpoints
    assert cmd[cmd.index("--tool-call-parser") + 1] == "hermes" and "--enable-auto-tool-choice" in cmd
    assert cmd[cmd.index("--chat-template") + 1] == str(template)
    assert cmd[cmd.index("--weight-transfer-config") + 1] == '{"backend": "nccl"}'
    assert cmd[cmd.index("--logprobs-mode") + 1] == "processed_logprobs" and cmd[cmd.index("--max-logprobs") + 1] == "-1"
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2" and cmd[-1] == "--enforce-eager"  # unknown options go to vLLM
    assert "vllm_mode: server, vllm_server_base_url: http://127.0.0.1:8000" in output


def test_bad_options_fail_with_one_line(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(_app(), ["serve-policy", "m", "--protocol", "xml", "--dry-run"])
    assert bad.exit_code == 2 and "--protocol must be genevolve or native" in bad.output
    missing = runner.invoke(_app(), ["serve-policy", "m", "--chat-template", str(tmp_path / "none.jinja"), "--dry-run"])
    assert missing.exit_code == 2 and "is not a file" in missing.output
    with pytest.raises(ValueError, match="--data-parallel-size must be >= 1"):
        ServeSettings(model="m", data_parallel_size=0)


@pytest.mark.skipif(vllm_available(), reason="vLLM is installed here; this checks the message shown without it (CI has no vLLM)")
def test_without_the_extra_the_command_says_how_to_install_it():
    result = CliRunner().invoke(_app(), ["serve-policy", "/models/GenEvolve-8B"])
    assert result.exit_code == 2
    assert "pip install 'genevolve-graph[vllm]' (Linux with CUDA GPUs only)" in result.output and "--dry-run" in result.output


def _trainer(**args) -> SimpleNamespace:
    base = dict(temperature=0.7, top_p=0.9, top_k=0, min_p=None, repetition_penalty=1.0, generation_kwargs={"seed": 1},
                vllm_mode="server", vllm_server_base_url=None, vllm_server_host="10.0.0.5", vllm_server_port=8123)
    return SimpleNamespace(args=SimpleNamespace(**{**base, **args}), use_vllm=True, model=object(),
                           vllm_generation=SimpleNamespace(tensor_parallel_size=1, enable_sleep_mode=True, llm=None))


def test_the_rollout_picks_the_backend_from_trl_settings(tiny_tokenizer):
    ctx = AgentContext(renderer="none")
    server, _ = GenEvolveRollout(ctx)._generator_for(_trainer(), tiny_tokenizer)
    assert isinstance(server, CompletionsGenerator) and server.base_url == "http://10.0.0.5:8123" and server.extra_body == {"seed": 1}
    colocated, model = GenEvolveRollout(ctx)._generator_for(_trainer(vllm_mode="colocate"), tiny_tokenizer)
    assert isinstance(colocated, ColocatedVLLMGenerator) and model is None and colocated.extra == {"seed": 1}
    assert colocated.sampling == SamplingParams(temperature=0.7, top_p=0.9, top_k=0, min_p=None, repetition_penalty=1.0)
    local, model = GenEvolveRollout(ctx)._generator_for(SimpleNamespace(**{**vars(_trainer()), "use_vllm": False}), tiny_tokenizer)
    assert isinstance(local, LocalGenerator) and model is not None
    tp = _trainer(vllm_mode="colocate")
    tp.vllm_generation.tensor_parallel_size = 2
    with pytest.raises(ValueError, match="vllm_tensor_parallel_size: 1"):
        GenEvolveRollout(ctx)._generator_for(tp, tiny_tokenizer)


def test_colocated_sampling_settings_and_outputs():
    kwargs = vllm_sampling_kwargs(SamplingParams(temperature=0.6, top_p=0.95, top_k=0, min_p=None), 37, {"seed": 3})
    assert kwargs == {"n": 1, "temperature": 0.6, "top_p": 0.95, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0,
                      "max_tokens": 37, "logprobs": 0, "skip_special_tokens": False, "seed": 3}
    # a vllm.RequestOutput's first completion: sampled ids and, per position, {token id: Logprob}
    lp = lambda v: SimpleNamespace(logprob=v, rank=1)  # noqa: E731
    output = SimpleNamespace(outputs=[SimpleNamespace(token_ids=[5, 9, 2], logprobs=[{5: lp(-0.1)}, {9: lp(-2.0), 4: lp(-0.5)}, {2: lp(-0.3)}])])
    generation = generation_from_vllm(output)
    assert generation.token_ids == [5, 9, 2] and generation.logprobs == [-0.1, -2.0, -0.3]
    no_lp = generation_from_vllm(SimpleNamespace(outputs=[SimpleNamespace(token_ids=[1], logprobs=None)]))
    assert no_lp.token_ids == [1] and no_lp.logprobs is None
