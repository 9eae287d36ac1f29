"""A first GRPO + SDL run on the CPU with nothing external (docs/training.md, "A first GRPO run").

``python -m genevolve_graph.testing.first_run setup DIR [--judge-port PORT]`` writes, under DIR, a
tiny random policy and tiny sentence embedder (built locally, never downloaded), two RL rows whose
ground truth is one of the package's sample images, and a flat ``grpo.yaml`` that names them and the
judge on ``127.0.0.1:PORT``. ``python -m genevolve_graph.testing.first_run judge --port PORT`` serves
the scripted judge (:mod:`genevolve_graph.testing.scripted_judge`) there until stopped. Then
``genevolve-graph train grpo --config DIR/grpo.yaml`` runs the real trainer end to end: the agent
graph's rollouts, the preview renderer, the judges over HTTP, the guide buffer, the JSON summary.

The tiny policy is random, so it rarely writes a valid answer: the run shows that everything is
wired, not that anything is learnt.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
from importlib import resources
from pathlib import Path

import yaml

DEFAULT_PORT = 8765
REQUESTS = ("A red fox sleeping in fresh snow", "The Eiffel Tower at dusk with its height written on it")


def setup(folder: Path, judge_port: int = DEFAULT_PORT) -> Path:
    """Write the tiny run into ``folder``; returns the config file."""
    from genevolve_graph.testing.tiny_models import build_tiny_sentence_transformer, save_tiny_policy

    folder.mkdir(parents=True, exist_ok=True)
    save_tiny_policy(folder / "policy")
    build_tiny_sentence_transformer("static", directory=folder / "embedder")
    data = folder / "rl"
    (data / "images").mkdir(parents=True, exist_ok=True)
    images = resources.files("genevolve_graph.data") / "images"
    for name in ("cat", "eiffel_tower_dusk"):
        with resources.as_file(images / f"{name}.png") as source:
            shutil.copy(source, data / "images" / f"{name}.png")
    rows = [{"id": "fox", "prompt": REQUESTS[0], "gt_image": "images/cat.png"},
            {"id": "tower", "prompt": REQUESTS[1], "gt_image": "images/eiffel_tower_dusk.png"}]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "model_name_or_path": "./policy", "dtype": "float32",
        "data_path": "rl/train.jsonl",
        "agent": {"max_rounds": 2, "top_k": 1},
        "renderer": "preview",
        "judges": {"image": {"base_url": f"http://127.0.0.1:{judge_port}/v1", "model": "scripted-judge", "max_retries": 0}},
        "sdl_coef": 0.1, "embedding_model": "./embedder",
        "kscore_eval_path": "rl/train.jsonl", "kscore_eval_steps": 2, "kscore_eval_limit": 1,
        "output_dir": "out", "num_generations": 2, "per_device_train_batch_size": 2, "max_completion_length": 64,
        "max_steps": 2, "learning_rate": 1e-3, "logging_steps": 1, "save_strategy": "no",
        "use_cpu": True, "bf16": False, "dataloader_num_workers": 0, "report_to": "none",
    }
    path = folder / "grpo.yaml"
    path.write_text("# A first GRPO + SDL run on the CPU (docs/training.md); paths are relative to this file.\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


def serve_judge(port: int = DEFAULT_PORT) -> None:
    """Serve the scripted judge on 127.0.0.1:``port`` until SIGINT or SIGTERM."""
    from genevolve_graph.testing.scripted_judge import JudgeScript, judge_server
    from genevolve_graph.testing.server_thread import ServerThread

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = ServerThread(judge_server(JudgeScript()).app, port=port).start()
    print(f"scripted judge on {server.url}/v1 (model scripted-judge); stop with Ctrl-C", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genevolve_graph.testing.first_run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("setup", help="write the tiny models, data and grpo.yaml into a folder")
    make.add_argument("folder", type=Path)
    make.add_argument("--judge-port", type=int, default=DEFAULT_PORT)
    judge = sub.add_parser("judge", help="serve the scripted judge on 127.0.0.1")
    judge.add_argument("--port", type=int, default=DEFAULT_PORT)
    opts = parser.parse_args(argv)
    if opts.command == "setup":
        print(f"wrote {setup(opts.folder, opts.judge_port)}")
    else:
        serve_judge(opts.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
