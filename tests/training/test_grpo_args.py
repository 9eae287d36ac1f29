"""``train grpo`` arguments in TRL's style: one flat YAML file read by TrlParser, any field
overridable on the command line (issue 13 item 9)."""

from __future__ import annotations

import pytest
import yaml

from genevolve_graph.training.config import ConfigError
from genevolve_graph.training.grpo_args import GRPO_DEFAULTS, is_nested, parse_grpo_args

BASE = {
    "model_name_or_path": "Qwen/Qwen3-VL-8B-Instruct",
    "data_path": "rl/train.jsonl",
    "agent": {"corpus": "agent/corpus.jsonl", "max_rounds": 3},
    "judges": {"image": {"base_url": "http://127.0.0.1:9/v1", "model": "judge", "api_key_env": "JUDGE_KEY"}},
    "use_cpu": True,
    "bf16": False,
    "learning_rate": 1e-5,
}


def _write(tmp_path, config: dict, name: str = "grpo.yaml"):
    path = tmp_path / "configs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_flat_file_fills_the_three_dataclasses_and_the_command_line_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, {**BASE, "use_peft": True, "lora_r": 64, "sdl_coef": 0.2, "gate": 0.8, "env": {"GG_TEST_FLAG": "on"}})
    run = parse_grpo_args(["--learning_rate", "1e-6", "--gate", "0.9", "--lora_alpha", "128", "--agent", '{"max_rounds": 5}',
                           "--output_dir", "runs/here"], path)
    args, model, ours = run.args, run.model_args, run.genevolve
    assert type(args).__name__ == "SDLConfig" and type(model).__name__ == "ModelConfig"
    assert args.learning_rate == 1e-6 and args.gate == 0.9 and args.sdl_coef == 0.2  # overrides, then the file
    assert model.model_name_or_path == "Qwen/Qwen3-VL-8B-Instruct"  # a hub id stays a hub id
    assert model.use_peft and model.lora_r == 64 and model.lora_alpha == 128
    assert ours.agent == {"max_rounds": 5}  # JSON on the command line replaces the mapping
    # paths in the file are relative to the file, those on the command line to the working directory
    assert ours.data_path == str(tmp_path / "configs" / "rl" / "train.jsonl")
    assert args.output_dir == "runs/here"
    # this project's defaults where TRL's differ (groups of 6, R = 0.5 R_img + 0.5 R_text)
    assert args.num_generations == GRPO_DEFAULTS["num_generations"] == 6 and args.reward_weights == [0.5, 0.5]
    import os

    assert os.environ.get("GG_TEST_FLAG") == "on"  # TRL's env: mapping


def test_unknown_fields_and_options_fail_with_one_line_naming_them(tmp_path):
    path = _write(tmp_path, {**BASE, "num_generation": 6})
    with pytest.raises(ConfigError, match=r"unknown field\(s\) num_generation; a flat config takes GRPOConfig"):
        parse_grpo_args([], path)
    path = _write(tmp_path, BASE)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) --lerning_rate 1e-6; .*--field_name VALUE"):
        parse_grpo_args(["--lerning_rate", "1e-6"], path)
    with pytest.raises(ConfigError, match="--agent: not a JSON object"):
        parse_grpo_args(["--agent", "max_rounds=3"], path)
    with pytest.raises(ConfigError, match="kscore_eval_path"):
        parse_grpo_args(["--kscore_eval_steps", "10"], path)
    missing = dict(BASE)
    del missing["judges"]
    with pytest.raises(ConfigError, match="no judges"):
        parse_grpo_args([], _write(tmp_path, missing, "nojudge.yaml"))
    with pytest.raises(ConfigError, match="readable YAML"):
        parse_grpo_args([], tmp_path / "nope.yaml")


def test_layouts_are_told_apart():
    assert not is_nested(BASE) and not is_nested({**BASE, "renderer": "preview"})
    assert is_nested({"model": {"name_or_path": "x"}, "judges": {}}) and is_nested({"grpo": {"max_steps": 1}})
