"""Typed access to ``AgentContext.options`` and the command-line helper for renderer flags."""

from __future__ import annotations

import pytest

from genevolve_graph.core.options import (
    OPTION_DOCS,
    get_bool,
    get_float,
    get_int,
    get_list,
    get_str,
    parse_option_pairs,
    renderer_options_from_cli,
)


def test_readers_convert_strings_and_apply_defaults():
    options = {"n": "12", "x": "1.5", "b": "yes", "s": "  text ", "empty": "", "urls": "http://a, http://b"}
    assert get_int(options, "n") == 12 and get_int(options, "missing", 7) == 7 and get_int(options, "empty", 3) == 3
    assert get_float(options, "x") == 1.5 and get_bool(options, "b") is True and get_str(options, "s") == "text"
    assert get_list(options, "urls") == ["http://a", "http://b"]
    assert get_list({"urls": '["http://a"]'}, "urls") == ["http://a"] and get_list({}, "urls") == []
    assert get_int({"n": 4.0}, "n") == 4


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: get_int({"n": "x"}, "n"), "option 'n' must be an integer"),
        (lambda: get_int({"n": 2.5}, "n"), "option 'n' must be an integer"),
        (lambda: get_int({"n": True}, "n"), "option 'n' must be an integer"),
        (lambda: get_int({"n": 0}, "n", minimum=1), "option 'n' must be at least 1"),
        (lambda: get_float({"x": "fast"}, "x"), "option 'x' must be a number"),
        (lambda: get_bool({"b": "maybe"}, "b"), "option 'b' must be true or false"),
        (lambda: get_list({"u": "[oops"}, "u"), "not a valid JSON list"),
        (lambda: get_list({"u": 5}, "u"), "must be a list of strings"),
        (lambda: parse_option_pairs(["novalue"]), "must look like KEY=VALUE"),
    ],
)
def test_readers_name_the_option_in_errors(call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call()


def test_cli_helper_keeps_only_given_flags():
    options = renderer_options_from_cli(
        service_urls=["http://gpu0:8001,http://gpu1:8001"],
        pipeline="/models/qwen-edit",
        dtype="bfloat16",
        extra=["num_inference_steps=8", "negative_prompt=blurry", "multi_reference=true", "dtype=float16"],
    )
    assert options == {
        "service_urls": ["http://gpu0:8001", "http://gpu1:8001"],
        "pipeline": "/models/qwen-edit",
        "dtype": "bfloat16",  # the explicit flag wins over --render-option
        "num_inference_steps": 8,
        "negative_prompt": "blurry",
        "multi_reference": True,
    }
    assert renderer_options_from_cli() == {}


def test_every_documented_option_is_read_somewhere():
    import inspect

    from genevolve_graph.generators import diffusers_backend, gemini, service_client

    sources = "".join(inspect.getsource(module) for module in (diffusers_backend, gemini, service_client))
    for group in OPTION_DOCS.values():
        for name in group:
            assert f'"{name}"' in sources, name
