"""``init_chat_model`` strings (issue 24, item 3): the factory accepts "openai:..." and so does
the context's ``model`` field; a served caller may use one only for a provider the operator
allows (``GENEVOLVE_ALLOWED_MODEL_PROVIDERS``)."""

from __future__ import annotations

import pytest
from langchain_openai import ChatOpenAI

from genevolve_graph import AgentContext, build_graph, create_genevolve_agent
from genevolve_graph.core.guard import ContextRefused, OperatorSettings, check_caller_context
from genevolve_graph.core.model_string import split_model_string
from genevolve_graph.policies import make_policy
from genevolve_graph.policies.chat_model import ChatModelPolicy, load_chat_model

from .test_sync_keepalive import GENEVOLVE_SCRIPT, REQUEST, ROUNDS


def test_model_strings_need_a_known_provider():
    assert split_model_string("openai:gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert split_model_string("llama3:8b") is None and split_model_string("genevolve-8b") is None


def test_the_factory_takes_an_init_chat_model_string(scripted_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server = scripted_server({REQUEST: GENEVOLVE_SCRIPT})
    agent = create_genevolve_agent("openai:m", base_url=server.base_url, renderer="none")
    out = agent.invoke({"request": REQUEST})
    assert out["termination"] == "answer" and out["rounds"] == ROUNDS, out.get("error")
    assert {r.body["model"] for r in server.requests} == {"m"}


async def test_the_context_model_field_takes_a_model_string(scripted_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server = scripted_server({REQUEST: GENEVOLVE_SCRIPT})
    ctx = AgentContext(policy="openai", model="openai:m", base_url=server.base_url, renderer="none")
    policy = make_policy(ctx)
    assert isinstance(policy, ChatModelPolicy) and isinstance(policy.chat, ChatOpenAI)
    out = await build_graph().ainvoke({"request": REQUEST}, context=ctx)
    assert out["termination"] == "answer" and out["rounds"] == ROUNDS, out.get("error")


def test_a_provider_without_langchain_names_the_install():
    pytest.importorskip("langchain_openai")
    try:
        import langchain  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="pip install langchain langchain-anthropic"):
            load_chat_model("anthropic:claude-x")
    else:
        pytest.skip("langchain is installed: init_chat_model builds every provider (this checks the fallback without it)")


def test_a_served_caller_gets_a_model_string_only_for_an_allowed_provider(tmp_path):
    ctx = AgentContext(policy="openai", model="openai:gpt-4o-mini", output_dir=str(tmp_path))
    closed = OperatorSettings(endpoints=(), roots=(tmp_path,), renders=tmp_path)
    with pytest.raises(ContextRefused, match="GENEVOLVE_ALLOWED_MODEL_PROVIDERS"):
        check_caller_context(ctx, closed)
    check_caller_context(ctx, OperatorSettings(endpoints=(), roots=(tmp_path,), renders=tmp_path, providers=frozenset({"openai"})))
    settings = OperatorSettings.from_env({"GENEVOLVE_ALLOWED_MODEL_PROVIDERS": "openai, Anthropic", "GENEVOLVE_ALLOWED_ROOTS": str(tmp_path),
                                          "GENEVOLVE_RENDERS_DIR": str(tmp_path)})
    assert settings.providers == {"openai", "anthropic"}
    # the base URL rule still applies to a model string
    with pytest.raises(ContextRefused, match="base_url"):
        check_caller_context(ctx.with_updates(base_url="http://attacker.example/v1"), settings)
