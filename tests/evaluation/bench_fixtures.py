"""Tiny KnowGen and FactIP fixtures in each benchmark's own format, and scripted judge answers.

Every number the tests expect is worked out by hand in the test files from these answers.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.evaluation.conftest import kscore_reply, make_image
from tests.evaluation.judge_server import ScriptedJudge, ok

# id: (category, text applicable?, judge answer F, V, T, A) -- None: the judge never answers readably.
KNOWGEN_ITEMS: dict[str, tuple[str, bool, tuple[float, float, float, float] | None]] = {
    "k1": ("History", True, (1, 0.5, 1, 0.5)),
    "k2": ("biology", False, (0.5, 1, 0.5, 1)),  # no text requirement
    "k3": ("anime", True, (1, 1, 0, 0.5)),
    "k4": ("film", True, (0, 0.5, 0.5, 0)),  # the only film item
    "k5": ("anime", True, None),  # judge fails
    "k6": ("physics", True, (1, 1, 1, 1)),  # render failed: never judged
    "k7": ("cooking", True, (1, 1, 1, 1)),  # in neither group
}


def build_knowgen(root: Path, *, better: bool = False) -> tuple[Path, Path]:
    """KnowGen-Bench.json (with images/) under ROOT/data and our stage-2 results under ROOT/run.
    Returns (data file, results file)."""
    data_dir, run = root / "data", root / "run"
    items = []
    for sid, (category, _, _) in KNOWGEN_ITEMS.items():
        make_image(data_dir / "images" / f"{sid}.png", color=(40, 200, 40))
        items.append({"id": sid, "prompt": f"case-{sid}: draw the subject", "meta": {"category": category, "difficulty": "hard"},
                      "gt_image": f"images/{sid}.png", "source": "web", "lang": "en"})
    data = data_dir / "KnowGen-Bench.json"
    data.write_text(json.dumps(items), encoding="utf-8")
    rows = []
    for item in items:
        sid = item["id"]
        failed = sid == "k6"
        if not failed:
            make_image(run / "images" / f"{sid}.png", color=(10, 10, 250) if better else (200, 40, 40))
        rows.append({**item, "output_path": None if failed else f"images/{sid}.png", "success": not failed,
                     "render_error": "CUDA out of memory" if failed else None, "gen_prompt": "...", "backend": "preview"})
    results = run / "results.jsonl"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return data, results


def script_knowgen(judge: ScriptedJudge, answers: dict[str, tuple[float, float, float, float] | None] | None = None) -> None:
    for sid, (_, text, scores) in KNOWGEN_ITEMS.items():
        scores = (answers or {}).get(sid, scores)
        judge.on(f"case-{sid}:", ok("Lovely picture, 9/10." if scores is None else kscore_reply(*scores, na=not text)))


# id: (category, answer clarity, content_quality, aesthetics, text_relevance_ip, overall_score) -- None: unreadable.
FACTIP_ITEMS: dict[str, tuple[str, tuple[int, int, int, int, int] | None]] = {
    "f1": ("Animation", (8, 6, 7, 9, 8)),
    "f2": ("Animation", (10, 10, 10, 4, 6)),
    "f3": ("Animation", None),  # judge fails
    "f4": ("Landmark", (6, 8, 5, 10, 9)),  # the only Landmark item
    "f5": ("Celebrity", (9, 9, 9, 9, 9)),  # its second ground-truth image is missing
}
GT1_SIZE, GT2_SIZE, GEN_SIZE = (40, 30), (50, 30), (64, 48)


def factip_reply(c: int, q: int, a: int, ip: int, o: int) -> str:
    return json.dumps({"clarity": c, "content_quality": q, "aesthetics": a, "text_relevance_ip": ip, "overall_score": o,
                       "rationale": "the hair matches; the emblem is right"})


def build_factip(root: Path, *, better: bool = False) -> tuple[Path, Path, Path]:
    """FactIP's test.json, its ground truth (GT/<category>/<id>/seed1.png, seed2.jpg) and our
    stage-2 results. Returns (data file, GT root, results file)."""
    data_dir, run = root / "factip", root / "run"
    gt = data_dir / "GT"
    items = {}
    for index, (sid, (category, _)) in enumerate(FACTIP_ITEMS.items()):
        items[sid] = {"index": index, "ip_name": f"Subject {sid}", "image_prompt": f"case-{sid}: the subject at dawn",
                      "source_category": category, "country": "JP", "language": "ja"}
        make_image(gt / category / sid / "seed1.png", size=GT1_SIZE)
        if sid != "f5":
            make_image(gt / category / sid / "seed2.jpg", size=GT2_SIZE)
        make_image(run / "images" / f"{sid}.png", size=GEN_SIZE, color=(10, 10, 250) if better else (200, 40, 40))
    data = data_dir / "test.json"
    data.write_text(json.dumps(items), encoding="utf-8")
    rows = [{"id": sid, "prompt": item["image_prompt"], "output_path": f"images/{sid}.png", "success": True} for sid, item in items.items()]
    results = run / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return data, gt, results


def script_factip(judge: ScriptedJudge, answers: dict[str, tuple[int, int, int, int, int] | None] | None = None) -> None:
    for sid, (_, scores) in FACTIP_ITEMS.items():
        scores = (answers or {}).get(sid, scores)
        judge.on(f"case-{sid}:", ok("Great likeness!" if scores is None else factip_reply(*scores)))
