"""Threat-model row "Studio / dev-server caller": the values a caller sends are checked for
their JSON type where they enter, with an error naming the field, instead of failing deep
inside a node with a traceback.

- A run's context: ``"max_rounds": "11"`` or ``"options": [1]`` is refused when the context
  is built, naming the field, the expected kind and the value.
- ``update_state`` with plain JSON values (what the LangGraph API and Studio's state editor
  send): a program, a render result or registry entries given as JSON objects are stored as
  the models the nodes write; a malformed one is refused naming the field.
"""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from genevolve_graph import build_graph
from genevolve_graph.agent.graph import graph as served_graph
from genevolve_graph.core.state import Program, Reference, RenderResult


@pytest.mark.parametrize("context, message", [
    ({"max_rounds": "11"}, "context field 'max_rounds' must be a whole number, not '11' (str)"),
    ({"temperature": "hot"}, "context field 'temperature' must be a number, not 'hot' (str)"),
    ({"max_tool_calls": True}, "context field 'max_tool_calls' must be a whole number, not True (bool)"),
    ({"options": [1]}, "context field 'options' must be a JSON object, not [1] (list)"),
    ({"review_before_render": "yes"}, "context field 'review_before_render' must be true or false, not 'yes' (str)"),
    ({"base_url": 8000}, "context field 'base_url' must be a string, not 8000 (int)"),
])
def test_a_context_value_of_the_wrong_type_is_refused_naming_the_field(context, message):
    with pytest.raises(ValueError) as caught:
        served_graph.invoke({"request": "a red fox"}, context={"renderer": "none", **context})
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_update_state_with_plain_json_stores_the_models():
    graph = build_graph(InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"request": "a red fox in snow"}, config, context={"renderer": "none"})
    graph.update_state(config, {
        "program": {"gen_prompt": "a red fox, like the first reference image", "reference_images": []},
        "render": {"success": False, "error": "edited by hand"},
        "images": {"IMG_009": {"img_id": "IMG_009", "title": "fox", "url": "https://example.org/fox.jpg"}},
    })
    values = graph.get_state(config).values
    assert isinstance(values["program"], Program) and values["program"].gen_prompt.startswith("a red fox")
    assert isinstance(values["render"], RenderResult) and values["render"].error == "edited by hand"
    assert isinstance(values["images"]["IMG_009"], Reference) and "IMG_001" in values["images"]  # merged, as before


@pytest.mark.parametrize("update, message", [
    ({"program": {"gen_prompt": 5}}, "state field program.gen_prompt: Input should be a valid string; send a Program as JSON"),
    ({"program": "draw a fox"}, "state field program: Input should be a valid dictionary or instance of Program"),
    ({"images": {"IMG_009": {"title": "no id"}}}, "state field images.IMG_009.img_id: Field required"),
    ({"images": ["IMG_009"]}, "state field 'images' must be an object of IMG_### id -> reference, not list"),
])
def test_update_state_with_malformed_json_is_refused_naming_the_field(update, message):
    graph = build_graph(InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"request": "a red fox in snow"}, config, context={"renderer": "none"})
    with pytest.raises(ValueError) as caught:
        graph.update_state(config, update)
    assert str(caught.value).startswith(message)


def test_the_request_guard_refuses_a_run_whose_context_has_a_wrong_type_before_it_exists():
    """Over the server the check comes first: 422 naming the field, and the run is never created."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from genevolve_graph.serving.request_guard import RequestGuard

    created: list[dict] = []

    async def create_run(request):
        created.append(await request.json())  # the body reaches the route whole after the guard read it
        return JSONResponse({"run_id": "r"})

    app = Starlette(routes=[Route("/threads/{tid}/runs/wait", create_run, methods=["POST"]),
                            Route("/runs/batch", create_run, methods=["POST"])],
                    middleware=[Middleware(RequestGuard)])
    with TestClient(app) as client:
        bad = client.post("/threads/t/runs/wait", json={"assistant_id": "genevolve", "context": {"max_rounds": "11"}})
        assert bad.status_code == 422 and created == []
        assert bad.json()["detail"].startswith("context field 'max_rounds' must be a whole number, not '11' (str)")
        unknown = client.post("/runs/batch", json=[{"context": {"renderer": "none"}}, {"context": {"search": "no-such-backend"}}])
        assert unknown.status_code == 422 and "no-such-backend" in unknown.json()["detail"] and created == []
        good = {"assistant_id": "genevolve", "input": {"request": "a fox"}, "context": {"max_rounds": 5, "extra_key": 1}}
        assert client.post("/threads/t/runs/wait", json=good).status_code == 200
        assert created == [good]  # unknown keys are the server's to drop; the body arrives unchanged


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_wrong_context_type_over_langgraph_dev_is_a_422(served_project):
    import httpx

    url = served_project.url
    before = httpx.post(f"{url}/runs/search", json={"limit": 1000}, timeout=30).json()
    reply = httpx.post(f"{url}/runs/wait", json={"assistant_id": "genevolve", "input": {"request": "a red fox"},
                                                 "context": {"renderer": "none", "max_rounds": "11"}}, timeout=60)
    assert reply.status_code == 422, reply.text[:300]
    assert "context field 'max_rounds' must be a whole number" in reply.json()["detail"]
    assert httpx.post(f"{url}/runs/search", json={"limit": 1000}, timeout=30).json() == before  # no run was created
