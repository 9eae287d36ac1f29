#!/usr/bin/env python
"""Draw the small example reference images used by the offline image search.

Every image is drawn here with Pillow (no downloads), so the project owns them.
Each NAME.png gets a sidecar NAME.json with title, caption, url and page_url.

    python scripts/make_example_images.py [--out genevolve_graph/data/images]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont

SIZE = 256  # final image size in pixels
SS = 2  # supersampling factor for smoother edges
MAX_COLORS = 64  # palette size of the saved PNG (keeps files small)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "genevolve_graph" / "data" / "images"


class Canvas:
    """A drawing surface in 256-unit coordinates, rendered at SS times the size."""

    def __init__(self, bg=(255, 255, 255)):
        self.img = Image.new("RGB", (SIZE * SS, SIZE * SS), bg)
        self.d = ImageDraw.Draw(self.img)

    @staticmethod
    def _p(points):
        return [(x * SS, y * SS) for x, y in points]

    @staticmethod
    def _box(box):
        return [v * SS for v in box]

    def poly(self, points, fill=None, outline=None, width=1):
        self.d.polygon(self._p(points), fill=fill, outline=outline, width=width * SS)

    def rect(self, box, fill=None, outline=None, width=1, radius=0):
        if radius:
            self.d.rounded_rectangle(self._box(box), radius=radius * SS, fill=fill, outline=outline, width=width * SS)
        else:
            self.d.rectangle(self._box(box), fill=fill, outline=outline, width=width * SS)

    def ellipse(self, box, fill=None, outline=None, width=1):
        self.d.ellipse(self._box(box), fill=fill, outline=outline, width=width * SS)

    def circle(self, cx, cy, r, fill=None, outline=None, width=1):
        self.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)

    def line(self, points, fill, width=1):
        self.d.line(self._p(points), fill=fill, width=max(1, round(width * SS)), joint="curve")

    def arc(self, box, start, end, fill, width=1):
        self.d.arc(self._box(box), start, end, fill=fill, width=width * SS)

    def pieslice(self, box, start, end, fill):
        self.d.pieslice(self._box(box), start, end, fill=fill)

    def chord(self, box, start, end, fill):
        self.d.chord(self._box(box), start, end, fill=fill)

    def gradient(self, top, bottom, y0=0, y1=SIZE):
        for y in range(int(y0 * SS), int(y1 * SS)):
            t = (y - y0 * SS) / max(1, (y1 - y0) * SS - 1)
            col = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom))
            self.d.line([(0, y), (SIZE * SS, y)], fill=col)

    def text(self, xy, s, size, fill, anchor="la", bold_offset=0):
        font = _font(size * SS)
        x, y = xy
        for dx in range(bold_offset + 1):
            self.d.text(((x + dx * 0.5) * SS, y * SS), s, font=font, fill=fill, anchor=anchor)

    def finish(self):
        return self.img.resize((SIZE, SIZE), Image.LANCZOS)


def _font(px):
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # very old Pillow: fixed bitmap font
        return ImageFont.load_default()


def stars(c, n, seed, y_max=SIZE, color=(255, 255, 255)):
    rng = random.Random(seed)
    for _ in range(n):
        x, y = rng.uniform(0, SIZE), rng.uniform(0, y_max)
        r = rng.choice([0.6, 0.8, 1.0, 1.3])
        c.circle(x, y, r, fill=color)


# --------------------------------------------------------------------------- drawings


def eiffel_tower_dusk():
    c = Canvas()
    c.gradient((28, 30, 78), (240, 140, 90), 0, 200)
    c.gradient((240, 140, 90), (250, 190, 120), 200, 256)
    stars(c, 25, 1, y_max=90)
    dark = (30, 22, 40)
    cx = 128
    # legs and base arch
    c.poly([(cx - 70, 236), (cx - 42, 236), (cx - 18, 150), (cx - 30, 150)], fill=dark)
    c.poly([(cx + 70, 236), (cx + 42, 236), (cx + 18, 150), (cx + 30, 150)], fill=dark)
    c.rect((cx - 52, 176, cx + 52, 183), fill=dark)  # first platform
    c.chord((cx - 44, 190, cx + 44, 262), 180, 360, fill=dark)
    c.chord((cx - 36, 198, cx + 36, 262), 180, 360, fill=(250, 180, 115))
    # middle section
    c.poly([(cx - 30, 150), (cx + 30, 150), (cx + 12, 100), (cx - 12, 100)], fill=dark)
    c.rect((cx - 24, 146, cx + 24, 152), fill=dark)  # second platform
    # upper shaft
    c.poly([(cx - 12, 100), (cx + 12, 100), (cx + 4, 40), (cx - 4, 40)], fill=dark)
    c.rect((cx - 9, 96, cx + 9, 101), fill=dark)
    c.rect((cx - 5, 34, cx + 5, 42), fill=dark)  # top platform
    c.rect((cx - 1.2, 14, cx + 1.2, 36), fill=dark)  # antenna
    # lattice hints in lighter tone
    lat = (70, 55, 80)
    for y in range(110, 150, 8):
        c.line([(cx - 14 - (y - 100) * 0.36, y), (cx + 14 + (y - 100) * 0.36, y + 8)], fill=lat, width=0.8)
    for y in range(48, 98, 8):
        c.line([(cx - 4 - (y - 40) * 0.14, y), (cx + 4 + (y - 40) * 0.14, y + 8)], fill=lat, width=0.6)
    # golden lights along the tower
    for y in (40, 100, 150, 180):
        c.circle(cx, y, 1.8, fill=(255, 214, 120))
    # trees along the ground
    for x in range(0, 260, 16):
        c.ellipse((x - 14, 224, x + 14, 250), fill=(22, 30, 34))
    c.rect((0, 240, 256, 256), fill=(22, 30, 34))
    return c.finish()


def colosseum():
    c = Canvas()
    c.gradient((110, 170, 230), (200, 225, 245), 0, 180)
    c.rect((0, 200, 256, 256), fill=(170, 160, 140))
    stone, shadow, dark = (214, 190, 150), (176, 150, 112), (96, 78, 60)
    left, right = 14, 242
    tiers = [(200, 158), (158, 118), (118, 80)]
    # attic (top band) on the intact left part
    c.rect((left, 56, 150, 80), fill=stone)
    for x in range(left + 10, 150, 20):
        c.rect((x, 64, x + 6, 70), fill=dark)  # small attic windows
        c.rect((x + 12, 58, x + 14, 80), fill=shadow)  # pilasters
    for i, (yb, yt) in enumerate(tiers):
        x_end = right if i == 0 else (220 if i == 1 else 190)
        c.rect((left, yt, x_end, yb), fill=stone)
        c.rect((left, yt, x_end, yt + 4), fill=shadow)  # cornice
        w = 19
        for x in range(left + 4, x_end - 10, w):
            ax0, ax1 = x + 3, x + w - 3
            top = yt + 12
            c.rect((ax0, top, ax1, yb - 2), fill=dark)
            c.pieslice((ax0, top - (ax1 - ax0) / 2, ax1, top + (ax1 - ax0) / 2), 180, 360, fill=dark)
            c.rect((x - 1, yt + 4, x + 2, yb), fill=shadow)  # half-columns
    # stepped broken edge
    c.poly([(190, 80), (204, 96), (220, 118), (190, 118)], fill=stone)
    c.poly([(220, 118), (232, 140), (242, 158), (220, 158)], fill=stone)
    c.line([(150, 56), (168, 70), (190, 80)], fill=shadow, width=2)
    # visitors
    for x in range(30, 230, 23):
        c.rect((x, 206, x + 3, 216), fill=(60, 60, 70))
        c.circle(x + 1.5, 204, 2, fill=(60, 60, 70))
    return c.finish()


def red_double_decker_bus():
    c = Canvas()
    c.gradient((150, 200, 240), (225, 235, 245), 0, 190)
    c.rect((0, 190, 256, 256), fill=(110, 110, 115))
    c.rect((0, 226, 256, 230), fill=(230, 230, 230))
    red, win = (200, 25, 30), (170, 210, 230)
    c.rect((24, 62, 232, 196), fill=red, radius=16)
    c.rect((24, 122, 232, 128), fill=(235, 225, 200))  # cream band between decks
    # upper deck windows
    for x in range(36, 220, 38):
        c.rect((x, 74, x + 32, 110), fill=win, radius=4)
    # lower deck windows, with open rear platform on the left
    c.rect((30, 134, 52, 192), fill=(60, 20, 25))  # platform opening
    c.rect((38, 136, 42, 190), fill=(220, 200, 60))  # grab pole
    for x in range(60, 190, 38):
        c.rect((x, 136, x + 32, 166), fill=win, radius=4)
    c.rect((200, 136, 228, 170), fill=win, radius=4)  # driver's cab window
    c.rect((196, 66, 228, 76), fill=(20, 20, 20))  # destination blind
    c.text((212, 71), "15", 8, (255, 210, 60), anchor="mm")
    c.rect((226, 178, 234, 186), fill=(255, 240, 180))  # headlight
    # wheels
    for x in (70, 190):
        c.circle(x, 196, 18, fill=(25, 25, 25))
        c.circle(x, 196, 8, fill=(150, 150, 155))
    return c.finish()


def monarch_butterfly():
    c = Canvas((236, 244, 228))
    c.ellipse((20, 150, 240, 250), fill=(110, 160, 80))  # milkweed leaf
    c.line([(30, 200), (230, 200)], fill=(80, 125, 60), width=2)
    orange, black, white = (238, 122, 20), (25, 20, 20), (250, 250, 250)
    cx, cy = 128, 120

    def wing(points, dots):
        c.poly(points, fill=black)
        # inner orange panel: shrink polygon toward its centroid
        mx = sum(p[0] for p in points) / len(points)
        my = sum(p[1] for p in points) / len(points)
        inner = [(mx + (x - mx) * 0.78, my + (y - my) * 0.78) for x, y in points]
        c.poly(inner, fill=orange)
        for p in inner:  # black veins from the body side
            c.line([(points[0][0], points[0][1]), p], fill=black, width=1.4)
        for x, y in dots:
            c.circle(x, y, 2.2, fill=white)

    for s in (-1, 1):
        fw = [(cx, cy - 4), (cx + s * 30, cy - 60), (cx + s * 92, cy - 70),
              (cx + s * 104, cy - 40), (cx + s * 60, cy + 6)]
        hw = [(cx, cy + 4), (cx + s * 62, cy + 4), (cx + s * 86, cy + 40),
              (cx + s * 58, cy + 74), (cx + s * 20, cy + 60)]
        fw_dots = [(cx + s * d, cy - 66 + d * 0.25) for d in (50, 64, 78)]
        wing(fw, fw_dots + [(cx + s * 100, cy - 45), (cx + s * 92, cy - 30)])
        wing(hw, [(cx + s * 80, cy + 46), (cx + s * 70, cy + 62), (cx + s * 50, cy + 72)])
    c.ellipse((cx - 6, cy - 30, cx + 6, cy + 46), fill=black)  # body
    c.circle(cx, cy - 32, 6, fill=black)  # head
    for s in (-1, 1):
        c.line([(cx, cy - 36), (cx + s * 22, cy - 78)], fill=black, width=1.5)
        c.circle(cx + s * 22, cy - 79, 3, fill=black)
    return c.finish()


def emperor_penguin():
    c = Canvas()
    c.gradient((170, 205, 235), (225, 238, 248), 0, 190)
    c.rect((0, 190, 256, 256), fill=(240, 246, 252))
    c.ellipse((60, 230, 200, 250), fill=(205, 220, 235))  # shadow on the ice
    black, white, yel = (22, 26, 34), (248, 248, 245), (245, 160, 20)
    c.ellipse((72, 70, 184, 244), fill=black)  # body
    c.ellipse((92, 92, 168, 240), fill=white)  # belly
    c.ellipse((104, 94, 156, 122), fill=(252, 240, 190))  # pale yellow upper breast
    c.circle(128, 62, 30, fill=black)  # head
    c.poly([(140, 58), (180, 72), (140, 76)], fill=black)  # long bill
    c.poly([(144, 70), (172, 72), (144, 75)], fill=(240, 110, 60))  # orange stripe on the lower bill
    c.ellipse((104, 62, 120, 100), fill=yel)  # ear patch
    c.circle(138, 56, 3, fill=(240, 240, 240))
    c.circle(138, 56, 1.6, fill=black)
    # flippers
    c.poly([(78, 110), (62, 178), (72, 182), (90, 130)], fill=black)
    c.poly([(178, 110), (194, 178), (184, 182), (166, 130)], fill=black)
    # feet
    for x in (108, 148):
        c.ellipse((x - 14, 234, x + 14, 246), fill=(40, 40, 45))
    return c.finish()


def saturn():
    c = Canvas((8, 10, 24))
    stars(c, 70, 7)
    cx, cy = 128, 128

    def big(box):
        return [v * SS for v in box]

    def ring_box(rx, ry):
        return (cx - rx, cy - ry, cx + rx, cy + ry)

    # ring layer with transparent gaps: outer edge to inner edge
    rings = Image.new("RGBA", c.img.size, (0, 0, 0, 0))
    rd = ImageDraw.Draw(rings)
    for rx, ry, col in [(118, 34, (196, 176, 136, 255)), (108, 31, (232, 212, 162, 255)),
                        (92, 26, (0, 0, 0, 0)), (88, 25, (214, 194, 148, 255)), (70, 19, (0, 0, 0, 0))]:
        rd.ellipse(big(ring_box(rx, ry)), fill=col)
    # back half of the rings, then the planet, then the front half of the rings
    upper = Image.new("L", c.img.size, 0)
    ImageDraw.Draw(upper).rectangle([0, 0, SIZE * SS, cy * SS], fill=255)
    lower = Image.new("L", c.img.size, 0)
    ImageDraw.Draw(lower).rectangle([0, cy * SS, SIZE * SS, SIZE * SS], fill=255)
    alpha = rings.getchannel("A")
    c.img.paste(rings.convert("RGB"), (0, 0), ImageChops.multiply(alpha, upper))
    c.circle(cx, cy, 52, fill=(224, 196, 130))
    for dy, col in [(-40, (200, 170, 110)), (-22, (235, 212, 150)), (-6, (205, 175, 115)),
                    (14, (238, 216, 160)), (30, (196, 165, 108))]:
        half = math.sqrt(max(0, 52 ** 2 - dy ** 2))
        c.line([(cx - half + 3, cy + dy), (cx + half - 3, cy + dy)], fill=col, width=7)
    c.chord((cx - 52, cy - 52, cx + 52, cy + 52), 300, 60, fill=(170, 145, 95))  # night side
    c.img.paste(rings.convert("RGB"), (0, 0), ImageChops.multiply(alpha, lower))
    return c.finish()


def dna_helix():
    c = Canvas((14, 22, 44))
    pair_cols = [((230, 80, 80), (80, 190, 110)), ((240, 200, 70), (80, 140, 230))]
    amp, cx = 52, 128
    pts_a, pts_b = [], []
    for i in range(0, 241):
        y = 8 + i
        ph = i / 240 * 2 * math.pi * 2.2
        pts_a.append((cx + amp * math.sin(ph), y, math.cos(ph)))
        pts_b.append((cx - amp * math.sin(ph), y, -math.cos(ph)))
    # rungs (base pairs)
    for k, i in enumerate(range(6, 240, 11)):
        xa, y, _ = pts_a[i]
        xb, _, _ = pts_b[i]
        ca, cb = pair_cols[k % 2] if k % 3 else pair_cols[k % 2][::-1]
        mid = (xa + xb) / 2
        c.line([(xa, y), (mid, y)], fill=ca, width=3)
        c.line([(mid, y), (xb, y)], fill=cb, width=3)
    # backbones: draw the far side darker, then the near side brighter
    for pts, near, far in ((pts_a, (90, 170, 255), (40, 80, 130)), (pts_b, (255, 150, 60), (130, 75, 35))):
        for j in range(len(pts) - 1):
            x0, y0, z0 = pts[j]
            x1, y1, _ = pts[j + 1]
            c.line([(x0, y0), (x1, y1)], fill=near if z0 > 0 else far, width=6 if z0 > 0 else 4)
    return c.finish()


def paper_lantern():
    c = Canvas()
    c.gradient((18, 14, 34), (50, 24, 40), 0, 256)
    c.circle(128, 132, 100, fill=(70, 34, 40))  # glow halo
    c.circle(128, 132, 84, fill=(110, 44, 40))
    c.line([(128, 0), (128, 46)], fill=(40, 30, 25), width=2)  # hanging cord
    red, gold = (214, 36, 32), (232, 180, 60)
    c.ellipse((58, 62, 198, 202), fill=red)
    c.ellipse((84, 70, 172, 194), fill=(240, 90, 50))  # glowing centre
    c.ellipse((104, 80, 152, 184), fill=(250, 140, 70))
    for f in (0.0, 0.35, 0.62, 0.82, 0.95):  # vertical ribs
        for s in (-1, 1):
            rx = 70 * f
            if rx == 0 and s == 1:
                continue
            start, end = (90, 270) if s < 0 else (270, 450)
            c.arc((128 - rx, 64, 128 + rx, 200), start, end, fill=(150, 20, 20), width=2)
    c.rect((100, 46, 156, 66), fill=gold, radius=4)  # top cap
    c.rect((100, 198, 156, 216), fill=gold, radius=4)  # bottom cap
    c.poly([(128, 112), (148, 132), (128, 152), (108, 132)], outline=(240, 200, 80), width=3)  # gold motif
    for x in range(112, 146, 4):  # tassel
        c.line([(x, 216), (x + (x - 128) * 0.2, 248)], fill=(200, 30, 30), width=2)
    c.rect((118, 214, 138, 222), fill=gold)
    return c.finish()


def torii_mount_fuji():
    c = Canvas()
    c.gradient((120, 170, 225), (250, 215, 200), 0, 160)
    c.gradient((150, 190, 220), (90, 130, 170), 160, 256)  # lake
    # Mount Fuji with snow cap and its reflection
    c.poly([(10, 160), (104, 56), (150, 56), (246, 160)], fill=(80, 100, 140))
    snow = [(104, 56), (150, 56), (168, 76), (156, 72), (146, 82), (134, 72), (122, 84), (110, 72), (92, 78)]
    c.poly(snow, fill=(250, 250, 252))
    c.poly([(10, 160), (104, 236), (150, 236), (246, 160)], fill=(110, 140, 175))
    c.rect((0, 156, 256, 164), fill=(60, 90, 70))  # far shore trees
    # torii gate in front, vermilion with black caps
    verm, black = (220, 60, 30), (30, 25, 25)
    c.rect((58, 120, 70, 250), fill=verm)
    c.rect((186, 120, 198, 250), fill=verm)
    c.rect((56, 236, 72, 250), fill=black)
    c.rect((184, 236, 200, 250), fill=black)
    c.rect((44, 134, 212, 144), fill=verm)  # nuki
    c.rect((120, 110, 136, 134), fill=verm)  # central strut
    c.poly([(28, 96), (128, 104), (228, 96), (222, 112), (128, 114), (34, 112)], fill=verm)  # kasagi
    c.poly([(24, 90), (128, 98), (232, 90), (228, 98), (128, 104), (28, 98)], fill=black)
    return c.finish()


def vintage_magazine_cover():
    c = Canvas((242, 226, 190))
    c.rect((0, 0, 256, 256), fill=(236, 204, 120))
    c.rect((10, 10, 246, 246), outline=(30, 30, 40), width=2)
    c.text((128, 44), "ORBIT", 56, (170, 30, 40), anchor="mm", bold_offset=3)
    c.text((216, 74), "MAY 1994", 9, (30, 30, 40), anchor="rm")
    c.text((40, 74), "$2.95", 9, (30, 30, 40), anchor="lm")
    # cover star: head-and-shoulders portrait overlapping the masthead
    c.ellipse((70, 176, 186, 300), fill=(40, 70, 120))  # shoulders / jacket
    c.rect((118, 150, 138, 184), fill=(224, 172, 140))  # neck
    c.ellipse((98, 72, 158, 162), fill=(230, 180, 148))  # face
    c.chord((92, 56, 164, 130), 180, 360, fill=(60, 36, 26))  # hair
    c.rect((92, 92, 102, 150), fill=(60, 36, 26))
    c.rect((154, 92, 164, 150), fill=(60, 36, 26))
    for x in (116, 140):
        c.circle(x, 112, 3.2, fill=(40, 40, 50))
    c.arc((116, 124, 140, 144), 20, 160, fill=(180, 60, 70), width=3)
    # cover lines on the left and right
    c.text((20, 150), "SUMMER", 11, (30, 30, 40), bold_offset=1)
    c.text((20, 164), "STYLE", 11, (30, 30, 40), bold_offset=1)
    c.text((20, 180), "100 IDEAS", 8, (170, 30, 40))
    c.text((236, 110), "NEW", 11, (170, 30, 40), anchor="ra", bold_offset=1)
    c.text((236, 124), "MUSIC", 11, (30, 30, 40), anchor="ra", bold_offset=1)
    c.text((236, 140), "& FILM", 8, (30, 30, 40), anchor="ra")
    # barcode in the lower right corner
    c.rect((196, 206, 236, 236), fill=(255, 255, 255))
    rng = random.Random(3)
    x = 199
    while x < 233:
        w = rng.choice([0.6, 1.0, 1.6])
        c.rect((x, 209, x + w, 230), fill=(0, 0, 0))
        x += w + rng.choice([0.8, 1.2, 1.8])
    return c.finish()


def cat():
    c = Canvas((245, 235, 220))
    c.rect((0, 210, 256, 256), fill=(190, 150, 110))
    fur, dark, pink = (236, 150, 70), (190, 100, 40), (240, 160, 160)
    c.ellipse((70, 120, 190, 236), fill=fur)  # sitting body
    c.line([(176, 220), (214, 214), (226, 180), (214, 160)], fill=fur, width=14)  # curled tail
    c.circle(128, 96, 50, fill=fur)  # head
    for s in (-1, 1):
        c.poly([(128 + s * 46, 76), (128 + s * 42, 30), (128 + s * 14, 54)], fill=fur)  # ears
        c.poly([(128 + s * 40, 70), (128 + s * 38, 42), (128 + s * 22, 58)], fill=pink)
    for dx in (-18, 0, 18):  # tabby stripes
        c.line([(128 + dx, 48), (128 + dx * 0.8, 62)], fill=dark, width=4)
    for y in (150, 172, 194):
        c.line([(84, y), (100, y + 6)], fill=dark, width=5)
        c.line([(176, y), (160, y + 6)], fill=dark, width=5)
    for s in (-1, 1):  # eyes with vertical slit pupils
        c.ellipse((128 + s * 20 - 11, 84, 128 + s * 20 + 11, 104), fill=(120, 190, 80))
        c.ellipse((128 + s * 20 - 2.5, 85, 128 + s * 20 + 2.5, 103), fill=(20, 20, 20))
    c.poly([(121, 112), (135, 112), (128, 119)], fill=(220, 110, 120))  # nose
    c.arc((116, 114, 128, 126), 0, 180, fill=(90, 50, 30), width=2)
    c.arc((128, 114, 140, 126), 0, 180, fill=(90, 50, 30), width=2)
    for s in (-1, 1):  # whiskers
        for dy in (-4, 2, 8):
            c.line([(128 + s * 16, 118 + dy / 2), (128 + s * 62, 112 + dy)], fill=(250, 250, 250), width=1.2)
    for x in (108, 148):  # front paws
        c.ellipse((x - 14, 222, x + 14, 238), fill=(250, 200, 150))
    return c.finish()


def bicycle():
    c = Canvas((232, 240, 236))
    c.rect((0, 206, 256, 256), fill=(190, 196, 190))
    black, frame, grey = (30, 30, 34), (30, 110, 190), (150, 150, 158)
    rw, fw, r = (64, 160), (192, 160), 44
    for cx, cy in (rw, fw):
        c.circle(cx, cy, r, outline=black, width=6)
        for k in range(16):
            a = k * math.pi / 8
            c.line([(cx, cy), (cx + (r - 3) * math.cos(a), cy + (r - 3) * math.sin(a))], fill=grey, width=0.8)
        c.circle(cx, cy, 4, fill=grey)
    bb = (120, 164)  # bottom bracket
    seat_top = (106, 92)
    head_top, head_bot = (176, 96), (180, 112)
    c.line([rw, bb, seat_top, rw], fill=frame, width=5)  # rear triangle
    c.line([seat_top, head_top], fill=frame, width=5)  # top tube
    c.line([bb, head_bot], fill=frame, width=5)  # down tube
    c.line([head_top, head_bot, fw], fill=frame, width=5)  # head tube and fork
    c.line([seat_top, (102, 80)], fill=grey, width=3)  # seat post
    c.poly([(86, 76), (118, 78), (112, 84), (92, 84)], fill=black)  # saddle
    c.line([head_top, (174, 80), (188, 76), (196, 84)], fill=grey, width=3)  # stem and bars
    c.line([(190, 78), (198, 86)], fill=black, width=5)  # grip
    c.circle(bb[0], bb[1], 11, outline=grey, width=3)  # chainring
    c.line([(bb[0], bb[1] - 11), (rw[0], rw[1] - 5)], fill=(80, 80, 86), width=1.5)  # chain
    c.line([(bb[0], bb[1] + 11), (rw[0], rw[1] + 5)], fill=(80, 80, 86), width=1.5)
    c.line([bb, (130, 182)], fill=black, width=3)  # crank
    c.rect((124, 180, 140, 185), fill=black)  # pedal
    return c.finish()


def lighthouse():
    c = Canvas()
    c.gradient((40, 60, 120), (240, 170, 120), 0, 170)
    c.gradient((40, 80, 120), (20, 50, 90), 170, 256)  # sea
    c.poly([(136, 88), (256, 40), (256, 80)], fill=(255, 240, 170))  # beam
    c.poly([(120, 88), (0, 60), (0, 96)], fill=(250, 225, 160))
    for y in (212, 228, 244):  # wave lines
        for x in range(0, 256, 40):
            c.arc((x, y, x + 20, y + 8), 180, 360, fill=(120, 160, 200), width=1)
    c.poly([(40, 256), (70, 196), (120, 186), (180, 190), (214, 210), (236, 256)], fill=(70, 64, 60))  # rocks
    red, white = (200, 40, 40), (245, 245, 240)
    # tapered tower with red and white bands
    top_y, bot_y, top_w, bot_w = 96, 200, 16, 28
    bands = 6
    for i in range(bands):
        y0 = top_y + (bot_y - top_y) * i / bands
        y1 = top_y + (bot_y - top_y) * (i + 1) / bands
        w0 = top_w + (bot_w - top_w) * i / bands
        w1 = top_w + (bot_w - top_w) * (i + 1) / bands
        c.poly([(128 - w0, y0), (128 + w0, y0), (128 + w1, y1), (128 - w1, y1)], fill=red if i % 2 == 0 else white)
    c.rect((108, 90, 148, 97), fill=(40, 40, 44))  # gallery
    c.rect((116, 70, 140, 90), fill=(255, 230, 120))  # lantern room
    c.line([(128, 70), (128, 90)], fill=(40, 40, 44), width=1.5)
    c.poly([(112, 70), (144, 70), (128, 54)], fill=(40, 40, 44))  # roof
    c.rect((124, 170, 132, 186), fill=(60, 40, 30))  # door
    return c.finish()


def sunflower_field():
    c = Canvas()
    c.gradient((80, 150, 230), (190, 225, 250), 0, 130)
    c.rect((0, 120, 256, 256), fill=(70, 130, 50))
    c.ellipse((-40, 104, 140, 140), fill=(80, 140, 70))  # far hills
    c.ellipse((100, 100, 300, 140), fill=(90, 150, 75))

    def flower(x, y, r):
        c.line([(x, y), (x + r * 0.1, y + r * 4)], fill=(50, 110, 40), width=max(1, r / 4))
        c.ellipse((x - r * 1.2, y + r * 1.6, x, y + r * 2.2), fill=(60, 130, 45))  # leaf
        for k in range(14):
            a = k * 2 * math.pi / 14
            px, py = x + r * 1.05 * math.cos(a), y + r * 1.05 * math.sin(a)
            c.ellipse((px - r * 0.45, py - r * 0.45, px + r * 0.45, py + r * 0.45), fill=(250, 200, 30))
        c.circle(x, y, r * 0.7, fill=(100, 60, 25))
        c.circle(x, y, r * 0.4, fill=(80, 45, 20))

    rows = [(128, 5, 18), (150, 9, 14), (180, 13, 11), (222, 19, 8)]  # far to near
    for y, r, step in rows:
        for i, x in enumerate(range(-10, 270, int(r * 2.8))):
            flower(x + (i % 2) * r * 0.5, y, r)
    return c.finish()


def teapot():
    c = Canvas((244, 238, 226))
    c.rect((0, 190, 256, 256), fill=(150, 100, 60))  # wooden table
    for y in (204, 222, 240):
        c.line([(0, y), (256, y + 2)], fill=(130, 86, 50), width=1)
    body, dark, light = (40, 120, 140), (24, 84, 100), (120, 190, 200)
    c.ellipse((64, 184, 196, 200), fill=(120, 80, 46))  # shadow
    # spout (left) and handle (right)
    c.poly([(76, 140), (36, 96), (26, 92), (30, 102), (64, 166), (84, 170)], fill=body)
    c.arc((160, 104, 218, 170), 270, 90, fill=body, width=10)
    c.ellipse((60, 96, 196, 194), fill=body)  # round body
    c.ellipse((80, 108, 112, 140), fill=light)  # highlight
    c.rect((96, 90, 160, 104), fill=dark, radius=5)  # lid rim
    c.chord((100, 74, 156, 112), 180, 360, fill=body)  # lid
    c.circle(128, 72, 7, fill=dark)  # knob
    c.line([(72, 150), (184, 150)], fill=dark, width=2)  # band
    for x0 in (22, 34):  # steam from the spout
        c.arc((x0, 50, x0 + 14, 70), 90, 270, fill=(200, 200, 205), width=2)
        c.arc((x0, 34, x0 + 14, 54), 270, 90, fill=(200, 200, 205), width=2)
    return c.finish()


def robot():
    c = Canvas((226, 232, 240))
    c.rect((0, 220, 256, 256), fill=(180, 186, 196))
    metal, dark, glow = (160, 170, 185), (80, 88, 104), (60, 230, 240)
    c.line([(128, 38), (128, 18)], fill=dark, width=3)  # antenna
    c.circle(128, 16, 5, fill=(240, 70, 60))
    c.rect((92, 38, 164, 96), fill=metal, outline=dark, width=2, radius=8)  # head
    c.rect((100, 54, 156, 76), fill=(30, 36, 50), radius=6)  # visor
    c.circle(114, 65, 6, fill=glow)
    c.circle(142, 65, 6, fill=glow)
    c.rect((112, 82, 144, 88), fill=dark)  # mouth grille
    for x in range(116, 144, 6):
        c.line([(x, 82), (x, 88)], fill=metal, width=1)
    c.rect((120, 96, 136, 106), fill=dark)  # neck
    c.rect((80, 106, 176, 184), fill=metal, outline=dark, width=2, radius=10)  # torso
    c.rect((96, 120, 160, 152), fill=(50, 60, 80), radius=4)  # chest panel
    for i, col in enumerate(((240, 80, 60), (250, 200, 60), (80, 220, 120))):
        c.circle(108 + i * 16, 136, 5, fill=col)
    c.circle(128, 168, 8, outline=dark, width=2)
    for s in (-1, 1):
        c.rect((128 + s * 60 - 10, 112, 128 + s * 60 + 10, 168), fill=metal, outline=dark, width=2, radius=8)  # arms
        c.arc((128 + s * 60 - 12, 164, 128 + s * 60 + 12, 188), 200, 340, fill=dark, width=4)  # claw hands
        c.rect((128 + s * 22 - 11, 184, 128 + s * 22 + 11, 220), fill=metal, outline=dark, width=2)  # legs
        c.rect((128 + s * 22 - 17, 218, 128 + s * 22 + 17, 230), fill=dark, radius=4)  # feet
    return c.finish()


# --------------------------------------------------------------------------- catalogue

IMAGES = {
    "eiffel_tower_dusk": (
        eiffel_tower_dusk,
        "Eiffel Tower silhouette at dusk",
        "A dark silhouette of the Eiffel Tower in Paris against a dusk sky fading from deep blue to orange, "
        "with a few stars and golden lights on its platforms. Keywords: Eiffel Tower, Paris, landmark, "
        "wrought-iron lattice tower, sunset, twilight, silhouette.",
    ),
    "colosseum": (
        colosseum,
        "The Colosseum arches",
        "A flat illustration of the Colosseum in Rome with three tiers of arched openings, an attic storey "
        "and the broken stepped outer wall on one side, under a blue sky. Keywords: Colosseum, Rome, Roman "
        "amphitheatre, arches, travertine, ancient architecture, landmark.",
    ),
    "red_double_decker_bus": (
        red_double_decker_bus,
        "Red double-decker bus",
        "A side view of a red London double-decker bus with two rows of windows, a cream band between the "
        "decks and an open rear platform. Keywords: double-decker bus, Routemaster, London, red bus, public "
        "transport, vehicle.",
    ),
    "monarch_butterfly": (
        monarch_butterfly,
        "Monarch butterfly on a milkweed leaf",
        "A monarch butterfly seen from above with orange wings, black veins and black borders dotted with "
        "white spots, resting over a green milkweed leaf. Keywords: monarch butterfly, insect, wings, "
        "antennae, milkweed, nature.",
    ),
    "emperor_penguin": (
        emperor_penguin,
        "Emperor penguin on the ice",
        "An emperor penguin standing upright on Antarctic ice, with a black head and back, a white belly, "
        "yellow-orange ear patches and an orange stripe on the bill. Keywords: emperor penguin, Antarctica, "
        "bird, snow, ice, wildlife.",
    ),
    "saturn": (
        saturn,
        "Saturn with its rings",
        "The planet Saturn in pale gold with soft horizontal bands, encircled by tilted bright rings with a "
        "dark gap, against a black starry sky. Keywords: Saturn, planet, rings, Cassini Division, solar "
        "system, astronomy, space.",
    ),
    "dna_helix": (
        dna_helix,
        "DNA double helix",
        "A stylised DNA double helix with two twisting blue and orange backbones joined by coloured "
        "base-pair rungs, on a dark navy background. Keywords: DNA, double helix, base pairs, genetics, "
        "molecule, biology, science diagram.",
    ),
    "paper_lantern": (
        paper_lantern,
        "Red paper lantern glowing at night",
        "A round red Chinese paper lantern with gold caps, vertical ribs, a red tassel and a gold "
        "diamond motif, glowing warmly against a dark night sky. Keywords: paper lantern, Lunar New Year, Lantern "
        "Festival, red, gold, celebration, night.",
    ),
    "torii_mount_fuji": (
        torii_mount_fuji,
        "Torii gate with Mount Fuji",
        "A vermilion torii gate with black caps stands in front of a lake, with snow-capped Mount Fuji "
        "and its reflection behind it under a soft pink sky. Keywords: torii, Shinto shrine gate, Mount "
        "Fuji, Japan, lake, landscape.",
    ),
    "vintage_magazine_cover": (
        vintage_magazine_cover,
        "Vintage 1990s magazine cover layout",
        "A magazine cover layout with the large red masthead ORBIT across the top, a head-and-shoulders "
        "portrait of a cover star in the centre, cover lines on both sides, the date MAY 1994 and a barcode "
        "in the lower right corner. Keywords: magazine cover, 1990s, masthead, typography, layout, "
        "editorial design, portrait.",
    ),
    "cat": (
        cat,
        "Ginger tabby cat sitting",
        "A ginger tabby cat sitting and facing the viewer, with pointed ears, green eyes with vertical slit "
        "pupils, white whiskers and a curled tail. Keywords: cat, domestic cat, tabby, pet, animal, "
        "whiskers.",
    ),
    "bicycle": (
        bicycle,
        "Bicycle side view",
        "A side view of a blue diamond-frame bicycle with two spoked wheels, a saddle, handlebars and a "
        "chain drive from the chainring to the rear wheel. Keywords: bicycle, bike, diamond frame, wheels, "
        "spokes, chain, cycling.",
    ),
    "lighthouse": (
        lighthouse,
        "Red and white lighthouse at sunset",
        "A red and white striped lighthouse on dark coastal rocks, its lantern room shining beams across "
        "an evening sky over the sea. Keywords: lighthouse, coast, sea, beacon, light beam, sunset, "
        "maritime.",
    ),
    "sunflower_field": (
        sunflower_field,
        "Sunflower field under a blue sky",
        "Rows of sunflowers with yellow petals and brown centres fill a green field under a clear blue "
        "sky, larger in the foreground and smaller toward the hills. Keywords: sunflowers, field, summer, "
        "flowers, countryside, Helianthus.",
    ),
    "teapot": (
        teapot,
        "Teal teapot on a wooden table",
        "A round teal ceramic teapot with a curved spout, a loop handle and a lid with a knob stands on a "
        "wooden table, with steam curling from the spout. Keywords: teapot, tea, ceramic, kitchen, still "
        "life, steam.",
    ),
    "robot": (
        robot,
        "Friendly retro robot",
        "A friendly retro toy robot with a boxy grey metal head, a red-tipped antenna, glowing cyan eyes "
        "and a chest panel with coloured lights. Keywords: robot, retro, toy, machine, metal, humanoid, "
        "science fiction.",
    ),
}


def save_png(img: Image.Image, path: Path) -> int:
    pal = img.quantize(colors=MAX_COLORS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal.save(path, format="PNG", optimize=True)
    return path.stat().st_size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    ap.add_argument("--only", nargs="*", default=None, help="names to draw (default: all)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (fn, title, caption) in IMAGES.items():
        if args.only and name not in args.only:
            continue
        size = save_png(fn(), args.out / f"{name}.png")
        meta = {
            "title": title,
            "caption": caption,
            "url": f"https://example.org/images/{name}.png",
            "page_url": f"https://example.org/gallery/{name}",
        }
        (args.out / f"{name}.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{name}.png  {size / 1024:.1f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
