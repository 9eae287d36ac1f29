"""The Gemini backend through the real google-genai SDK against a Gemini-compatible server on 127.0.0.1."""

from __future__ import annotations

import base64

import pytest
from PIL import Image

from genevolve_graph.core.context import AgentContext
from genevolve_graph.generators.base import RenderError
from genevolve_graph.generators.gemini import GeminiConfig, GeminiRenderer, nearest_aspect_ratio
from genevolve_graph.generators.registry import make_renderer
from genevolve_graph.core.state import Program
from genevolve_graph.testing.scripted_gemini import ScriptedGeminiServer

KEY = "test-key-123"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)


def renderer_for(server: ScriptedGeminiServer, **options) -> GeminiRenderer:
    settings = {"gemini_base_url": server.url, "gemini_retry_delay": 0.01, "gemini_timeout": 20, **options}
    return make_renderer(AgentContext(renderer="gemini", options=settings))


def mime_type(part: dict) -> str:
    inline = part["inlineData"]
    return inline.get("mimeType") or inline.get("mime_type")  # the SDK writes the inner key in snake case


async def test_references_go_inline_after_ordinal_labels(program, tmp_path):
    with ScriptedGeminiServer(["image"]) as server:
        result = await renderer_for(server).render(program, tmp_path / "g.png", seed=4)
    assert result.success, result.error
    assert result.backend == "gemini"
    assert Image.open(result.output_path).format == "PNG"
    (request,) = server.requests
    assert request.model == "gemini-3-pro-image-preview" and request.api_key == KEY
    (turn,) = request.body["contents"]
    assert turn["role"] == "user"
    parts = turn["parts"]
    assert parts[0] == {"text": "The first reference image (note: the red card):"}
    assert mime_type(parts[1]) == "image/png"
    assert parts[2] == {"text": "The second reference image (note: the green cloth):"}
    assert mime_type(parts[3]) == "image/jpeg"
    with open(program.reference_images[1].local_path, "rb") as handle:
        # The SDK sends URL-safe base64; the small JPEG travels as it is.
        assert base64.urlsafe_b64decode(parts[3]["inlineData"]["data"]) == handle.read()
    assert parts[4] == {"text": program.gen_prompt}
    config = request.body["generationConfig"]
    assert config["responseModalities"] == ["TEXT", "IMAGE"]
    assert config["imageConfig"] == {"aspectRatio": "3:2", "imageSize": "1K"}  # from the 48x32 first reference
    assert config["seed"] == 4


async def test_rate_limit_then_success_is_retried_by_the_sdk(program, tmp_path):
    with ScriptedGeminiServer([{"status": 429}, "image"]) as server:
        result = await renderer_for(server).render(program, tmp_path / "g.png")
    assert result.success, result.error
    assert len(server.requests) == 2


async def test_persistent_rate_limit_is_a_clear_error(program, tmp_path):
    with ScriptedGeminiServer([{"status": 429, "message": "Quota exceeded for images per minute"}]) as server:
        result = await renderer_for(server, gemini_retries=3).render(program, tmp_path / "g.png")
    assert not result.success
    assert "429" in result.error and "RESOURCE_EXHAUSTED" in result.error and "Quota exceeded" in result.error
    assert len(server.requests) == 3


async def test_image_safety_is_a_render_error_and_not_retried(program, tmp_path):
    reply = {"finish_reason": "IMAGE_SAFETY", "text": "I can't create that image.", "finish_message": "Unable to show the generated image."}
    with ScriptedGeminiServer([reply, "image"]) as server:
        result = await renderer_for(server).render(program, tmp_path / "g.png")
    assert not result.success
    assert "IMAGE_SAFETY" in result.error and "I can't create that image." in result.error
    assert len(server.requests) == 1
    assert not (tmp_path / "g.png").exists()


async def test_blocked_prompt_is_a_render_error(program, tmp_path):
    with ScriptedGeminiServer([{"block_reason": "PROHIBITED_CONTENT", "message": "blocked by policy"}]) as server:
        result = await renderer_for(server).render(program, tmp_path / "g.png")
    assert not result.success and "blocked the request (PROHIBITED_CONTENT): blocked by policy" in result.error


async def test_client_error_is_not_retried(program, tmp_path):
    with ScriptedGeminiServer([{"status": 400, "message": "Image input too large"}, "image"]) as server:
        result = await renderer_for(server).render(program, tmp_path / "g.png")
    assert not result.success and "400" in result.error and "Image input too large" in result.error
    assert len(server.requests) == 1


async def test_text_only_program_and_options(tmp_path):
    with ScriptedGeminiServer(["image"]) as server:
        renderer = renderer_for(server, gemini_model="gemini-2.5-flash-image", gemini_image_size="2k", gemini_aspect_ratio="16:9")
        result = await renderer.render(Program(gen_prompt="A lighthouse at dawn."), tmp_path / "t.png")
    assert result.success, result.error
    (request,) = server.requests
    assert request.model == "gemini-2.5-flash-image"
    assert request.body["contents"][0]["parts"] == [{"text": "A lighthouse at dawn."}]
    assert request.body["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert Image.open(result.output_path).size == (64, 36)


def test_missing_api_key_names_the_variables(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(RenderError, match="GOOGLE_API_KEY or GEMINI_API_KEY"):
        make_renderer(AgentContext(renderer="gemini"))


def test_google_api_key_wins_and_is_kept_out_of_repr(monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    config = GeminiConfig.from_options({})
    assert config.api_key == "google-key" and "google-key" not in repr(config)


@pytest.mark.parametrize(("options", "fragment"), [({"gemini_image_size": "8K"}, "gemini_image_size"),
                                                   ({"gemini_aspect_ratio": "7:3"}, "gemini_aspect_ratio"),
                                                   ({"gemini_retries": 0}, "gemini_retries")])
def test_bad_options(options, fragment):
    with pytest.raises(RenderError, match=fragment):
        GeminiConfig.from_options(options)


@pytest.mark.parametrize(("size", "ratio"), [((48, 32), "3:2"), ((1920, 1080), "16:9"), ((1000, 1000), "1:1"),
                                             ((640, 960), "2:3"), ((600, 1000), "9:16"), ((3000, 1200), "21:9"), (None, "1:1")])
def test_nearest_aspect_ratio(size, ratio):
    assert nearest_aspect_ratio(size) == ratio
