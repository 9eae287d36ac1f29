"""Held-out evaluation during GRPO training: KScore of the policy's programs every N steps.

The training reward says how the policy does on the prompts it is trained on; this callback
says how it does on prompts it never trains on, with the same measuring stick as the released
evaluation (KScore of the rendered program against the ground truth). Every ``every`` optimizer
steps it rolls out each held-out prompt once through the same agent graph and generation backend
as training (``GenEvolveRollout``), renders and judges the programs through the reward path
(``GenEvolveRewards.image_reward``), and logs:

* ``eval/kscore``: the mean KScore overall of the rollouts that were scored (a rollout without a
  program scores 0, as in training);
* ``eval/kscore_failed_share``: the share that could not be scored (generation, render or judge
  failure): excluded from the mean, never counted as 0;
* ``eval/kscore_rollouts``: how many held-out rollouts ran (all processes together).

Each process rolls out its share of the prompts; the scores are gathered, so every process logs
the same figures. The policy samples with the training settings (temperature etc.).

By default it also evaluates before the first step (step 0: the baseline) and after the last one
(unless that step was just evaluated). ``metric_for_best_model: eval/kscore`` (or ``kscore``) makes
the score choose the best checkpoint, as ``eval_loss`` does for SFT: each evaluation goes through
the Trainer's own ``_determine_best_metric`` (``greater_is_better`` defaults to true for it), so
``state.best_metric`` / ``best_model_checkpoint`` name the checkpoint with the highest KScore.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback


class KScoreEvalCallback(TrainerCallback):
    """Evaluate on held-out rows (``prompt`` + ``gt_image``) every ``every`` optimizer steps."""

    KSCORE_METRICS = ("eval/kscore", "kscore", "eval_kscore", "eval_eval/kscore")

    def __init__(self, dataset: Any, *, rollout: Any, rewards: Any, every: int, at_start: bool = False, at_end: bool = False) -> None:
        if every < 1:
            raise ValueError(f"evaluate every N >= 1 steps, got {every}")
        self.rows = [dict(row) for row in dataset]
        if not self.rows:
            raise ValueError("the held-out evaluation set is empty")
        self.rollout = rollout
        self.rewards = rewards
        self.every = every
        self.at_start = at_start
        self.at_end = at_end
        self.trainer: Any = None
        self.history: list[dict[str, float]] = []

    def bind(self, trainer: Any) -> None:
        """The trainer to evaluate (callbacks receive the model, not the trainer). Held-out rows with
        request images on a backend that cannot take them are refused here, before training."""
        check_backend = getattr(self.rollout, "check_backend", None)
        if callable(check_backend):
            check_backend(trainer, self.rows)
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer is not None and self.at_start and state.global_step == 0:
            self.evaluate()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer is not None and state.global_step > 0 and state.global_step % self.every == 0:
            should_log = control.should_log
            self.evaluate()
            control.should_log = should_log  # logging the figures must not cancel this step's training log
        return control

    def on_train_end(self, args, state, control, **kwargs):
        done = {int(h["step"]) for h in self.history}
        if self.trainer is not None and self.at_end and state.global_step not in done:
            self.evaluate()
        return control

    def _track_best(self, kscore: float) -> None:
        """``metric_for_best_model: eval/kscore``: the Trainer's own best-checkpoint bookkeeping."""
        trainer = self.trainer
        name = getattr(trainer.args, "metric_for_best_model", None)
        if name not in self.KSCORE_METRICS or math.isnan(kscore) or trainer.state.global_step == 0:
            return
        key = name if name.startswith("eval_") else f"eval_{name}"
        trainer._determine_best_metric({key: kscore}, trial=None)

    def evaluate(self) -> dict[str, float]:
        """Roll out, score and log once; returns the logged figures."""
        from accelerate.utils import gather_object

        trainer = self.trainer
        if trainer is None:
            raise RuntimeError("KScoreEvalCallback.bind(trainer) was not called")
        accelerator = trainer.accelerator
        rows = self.rows[accelerator.process_index :: accelerator.num_processes]
        prompts = [row["prompt"] for row in rows]
        was_training = trainer.model.training
        trainer.model.eval()
        try:
            output = self.rollout(prompts, trainer)  # every process calls it: the rollout synchronises them
            scores = self._score(prompts, rows, output) if prompts else []
        finally:
            if was_training:
                trainer.model.train()
        everything = gather_object([None if s is None or math.isnan(s) else float(s) for s in scores])
        scored = [s for s in everything if s is not None]
        figures = {
            "eval/kscore": sum(scored) / len(scored) if scored else float("nan"),
            "eval/kscore_failed_share": (len(everything) - len(scored)) / len(everything) if everything else 0.0,
            "eval/kscore_rollouts": float(len(everything)),
        }
        self.history.append({"step": float(trainer.state.global_step), **figures})
        self._track_best(figures["eval/kscore"])
        trainer.model.eval()  # TRL's log files the rollout metrics of this pass under eval_*
        try:
            trainer.log(dict(figures))
        finally:
            if was_training:
                trainer.model.train()
        return figures

    def _score(self, prompts: list[Any], rows: list[dict[str, Any]], output: dict[str, Any]) -> list[float | None]:
        extra = {k: v for k, v in output.items() if k not in ("prompt_ids", "completion_ids", "logprobs", "env_mask")}
        columns = {key: [row.get(key) for row in rows] for key in rows[0] if key != "prompt"}
        completions = [[{"role": "assistant", "content": ""}] for _ in prompts]
        coro = self.rewards.image_reward(prompts=prompts, completions=completions, trainer_state=self.trainer.state, **columns, **extra)
        return list(self.trainer._run_async(coro))


__all__ = ["KScoreEvalCallback"]
