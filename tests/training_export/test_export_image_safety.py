"""Only real images are registered, copied or exported (issue 12, item 2).

An image folder may hold a symlink to a secret (``id_rsa.png`` -> ``~/.ssh/id_rsa``) or a
file that only pretends to be an image; a trace database may name any path at all. None of
these reach the registry, the export's ``images/`` or an exported record.
"""

from __future__ import annotations

import os

from genevolve_graph import build_graph
from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.agent.runner import run_with_saver
from genevolve_graph.core.state import Reference
from genevolve_graph.tools.local_images import read_folder
from genevolve_graph.training.export import ExportReport, export_threads

import pytest

from ..scripts import answer, tool

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
FOX = "a red fox in fresh snow"


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "home" / ".ssh" / "id_rsa"
    path.parent.mkdir(parents=True)
    path.write_bytes(SECRET)
    return path


def test_the_image_folder_registers_only_real_images_inside_it(image_dir, secret, tmp_path):
    (image_dir / "red_fox_secret.png").symlink_to(secret)
    (image_dir / "red_fox_fake.jpg").write_bytes(SECRET)
    outside_png = tmp_path / "outside.png"
    outside_png.write_bytes(next(image_dir.glob("*.png")).read_bytes())
    (image_dir / "red_fox_outside.png").symlink_to(outside_png)  # a real image, but outside the folder
    os.mkfifo(image_dir / "red_fox_pipe.png")
    from genevolve_graph.safety.imaging import UnsafeImageError, read_image_file

    registered = {item["local_path"] for item in read_folder(image_dir)}
    assert registered and not any("red_fox_" in path for path in registered)
    assert str(secret) not in registered and str(outside_png) not in registered
    with pytest.raises(UnsafeImageError, match="not a regular file"):
        read_image_file(image_dir / "red_fox_pipe.png")
    with pytest.raises(UnsafeImageError, match="leads outside"):
        read_image_file(image_dir / "red_fox_outside.png", root=image_dir)


async def test_a_trace_database_naming_a_secret_exports_nothing_of_it(scripted_server, make_ctx, secret, tmp_path):
    script = [tool("image_search", "Find a fox.", query="red fox", top_k=1), answer("A red fox as in the first reference image.", [("IMG_001", "fur")])]
    server = scripted_server({FOX: script})
    async with open_checkpointer("memory") as saver:
        result = await run_with_saver(FOX, make_ctx(server), saver, thread_id="crafted")
        assert result.termination == "answer", result.error
        # the database now names the secret as an image (as a crafted trace file would)
        graph = build_graph(saver)
        config = {"configurable": {"thread_id": "crafted"}}
        await graph.aupdate_state(config, {"images": {"IMG_002": Reference(img_id="IMG_002", title="x", url="", local_path=str(secret))}}, as_node="render")
        for images_dir in (tmp_path / "data" / "images", None):
            report = ExportReport()
            records = list(export_threads(saver, thread_ids=["crafted"], images_dir=images_dir, report=report))
            assert records == [] and report.exported == 0
            assert "IMG_002" in str(report.problems) and "refused" in str(report.problems)
    copied = list((tmp_path / "data" / "images").iterdir())
    assert all(path.read_bytes() != SECRET for path in copied)
