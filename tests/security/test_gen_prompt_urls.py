"""The policy endpoint: a ``gen_prompt`` keeps no URL and no path a renderer could open.

Besides every ``scheme://`` URL, ``www.`` and the scheme-only forms, the emitter removes
scheme-relative URLs (``//host/path``) and UNC paths (``\\\\host\\share``, ``\\\\?\\C:\\...``),
and records the removal as a repair. Ordinary slashes in text are left alone.
"""

from __future__ import annotations

import pytest

from genevolve_graph.nodes.emitter import emit_program


@pytest.mark.parametrize("hostile", [
    "//evil.example/cat.png",
    "//169.254.169.254/latest/meta-data",
    "//[::1]:8080/x.png",
    "(//cdn.evil.example/a.png)",
    r"\\fileserver\share\cat.png",
    r"\\?\C:\secrets\key.png",
    r"\\.\pipe\x",
    r"\\192.168.0.2\c$\x.png",
])
def test_scheme_relative_urls_and_unc_paths_are_removed(hostile):
    program, repairs, error = emit_program({"gen_prompt": f"A red fox in the snow, styled like {hostile} at dawn."}, [], 2)
    assert error == "" and program is not None
    assert program.gen_prompt == "A red fox in the snow, styled like at dawn."
    assert "removed URLs from gen_prompt" in repairs
    assert "//" not in program.gen_prompt and "\\" not in program.gen_prompt


@pytest.mark.parametrize("text", ["A 16//9 frame", "either/or, 1/2 of the poster", "a // divider line", "path a/b//c"])
def test_ordinary_slashes_stay(text):
    program, repairs, _ = emit_program({"gen_prompt": text}, [], 2)
    assert program is not None and program.gen_prompt == text and repairs == []
