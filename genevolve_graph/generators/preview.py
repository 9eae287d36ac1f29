"""The offline default renderer: a storyboard of the program, drawn with Pillow.

It shows each reference thumbnail with its ordinal and note, then the gen_prompt: what a
real generator would receive, made visible without a GPU.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

from genevolve_graph.core.state import Program, RenderResult
from genevolve_graph.util.file_modes import mkstemp

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
WIDTH, MARGIN, THUMB = 1024, 32, 280


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_storyboard(program: Program) -> Image.Image:
    """The storyboard image of a program."""
    body, small = _font(22), _font(18)
    note_width = (WIDTH - 2 * MARGIN - THUMB - MARGIN) // 10
    prompt_lines = textwrap.wrap(program.gen_prompt, width=(WIDTH - 2 * MARGIN) // 11) or [""]
    ref_height = len(program.reference_images) * (THUMB + MARGIN)
    height = MARGIN * 3 + 40 + ref_height + 40 + len(prompt_lines) * 28 + MARGIN
    canvas = Image.new("RGB", (WIDTH, height), (250, 248, 243))
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, MARGIN), "GenEvolve program preview", font=_font(30), fill=(30, 30, 30))
    y = MARGIN * 2 + 40
    for index, ref in enumerate(program.reference_images):
        box = (MARGIN, y, MARGIN + THUMB, y + THUMB)
        try:
            with Image.open(ref.local_path) as source:
                thumb = ImageOps.contain(ImageOps.exif_transpose(source).convert("RGB"), (THUMB, THUMB))
            canvas.paste(thumb, (box[0] + (THUMB - thumb.width) // 2, box[1] + (THUMB - thumb.height) // 2))
        except (OSError, ValueError):
            draw.rectangle(box, outline=(160, 60, 60), width=3)
            draw.text((box[0] + 12, box[1] + 12), "image unavailable", font=small, fill=(160, 60, 60))
        draw.rectangle(box, outline=(90, 90, 90), width=2)
        x = MARGIN * 2 + THUMB
        ordinal = ORDINALS[index] if index < len(ORDINALS) else f"#{index + 1}"
        draw.text((x, y), f"The {ordinal} reference image ({ref.img_id})", font=body, fill=(20, 60, 120))
        text_y = y + 34
        for line in textwrap.wrap(ref.title, width=note_width)[:2] + textwrap.wrap(ref.note, width=note_width)[:6]:
            draw.text((x, text_y), line, font=small, fill=(50, 50, 50))
            text_y += 24
        y += THUMB + MARGIN
    draw.text((MARGIN, y), "gen_prompt", font=body, fill=(20, 60, 120))
    y += 40
    for line in prompt_lines:
        draw.text((MARGIN, y), line, font=small, fill=(20, 20, 20))
        y += 28
    return canvas


def save_atomic(image: Image.Image, path: Path) -> None:
    """Write through a temporary file and rename, so a reader never sees half an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PreviewRenderer:
    name = "preview"

    async def render(self, program: Program, out_path: Path, *, seed: int = 0) -> RenderResult:
        start = time.perf_counter()

        def work() -> None:
            save_atomic(draw_storyboard(program), out_path)

        try:
            await asyncio.to_thread(work)
        except OSError as exc:
            return RenderResult(success=False, backend=self.name, error=f"cannot write {out_path}: {exc.strerror or exc}")
        return RenderResult(success=True, output_path=str(out_path), backend=self.name, seconds=time.perf_counter() - start)


def from_context(ctx: "AgentContext") -> PreviewRenderer:
    return PreviewRenderer()
