"""GRPO rewards (DESIGN.md §5): R = 0.5 R_img + 0.5 R_text.

* ``image_reward`` (R_img): render the rollout's program with the configured backend, then
  judge the image with KScore against the row's ground truth (``gt_image``).
* ``program_reward`` (R_text): the program-sufficiency judge on {0, 0.25, 0.5, 0.75, 1}.

Both are async TRL reward functions (TRL gathers them concurrently) and the 0.5/0.5 mix is
TRL's ``reward_weights``. What each returns for a rollout:

* a score, when the rollout produced a program and every step worked;
* ``0.0`` when the policy produced no usable program (no answer, an answer that could not be
  parsed, or a trajectory that ran out of tokens): that is the policy's failure;
* ``None`` when something outside the policy failed (the generation backend, the renderer,
  the judge, an unreadable ground-truth image). TRL leaves ``None`` out of the group's
  baseline and gives the rollout no advantage; a failure never turns into a silent 0.
  A judge that rejects the key or the model (HTTP 401/403/404) stops training instead.

Failures are counted in the logs (``rewards/render_failures``, ``rewards/judge_failures``).

The rendered images are remembered (:class:`RenderLedger`, by request and program) so that
the visual guide distiller can show the best and worst renders of a group without
rendering them twice (``GenEvolveRewards.render_of``, passed to the trainer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genevolve_graph.core.state import Program
from genevolve_graph.training.rollout import request_of

if TYPE_CHECKING:
    from genevolve_graph.generators.base import Renderer

logger = logging.getLogger(__name__)


class RenderLedger:
    """Where the render of (request, program) was written, for the most recent ``capacity`` renders.

    Keyed by content, not by batch position: the trainer finds the render of a rollout from
    the request and program it holds, however TRL orders or shuffles its batches. Two
    rollouts with the same program render the same image (same seed), so sharing a key is right.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._paths: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def key(request: str, program: Any) -> str | None:
        if program is None:
            return None
        data = program.model_dump(mode="json") if isinstance(program, Program) else Program.model_validate(program).model_dump(mode="json")
        return json.dumps([request, data], sort_keys=True, ensure_ascii=False)

    def record(self, request: str, program: Any, path: str | Path) -> None:
        key = self.key(request, program)
        if key is None:
            return
        self._paths[key] = str(path)
        self._paths.move_to_end(key)
        while len(self._paths) > self.capacity:
            self._paths.popitem(last=False)

    def get(self, request: str, program: Any) -> str | None:
        try:
            key = self.key(request, program)
        except ValueError:  # not a program (a malformed row): nothing was rendered for it
            return None
        return self._paths.get(key) if key is not None else None

    def __len__(self) -> int:
        return len(self._paths)


class GenEvolveRewards:
    """Holds the renderer and the judge clients; ``reward_funcs()`` gives TRL the two functions.

    ``image_judge``/``text_judge``: ``evaluation.judge_client.JudgeClient`` (or anything with
    its ``complete``). ``image_dir``: where rendered images go (one folder per step).
    ``text_uses_ground_truth``: show the sufficiency judge the ground-truth image too.
    """

    def __init__(
        self,
        *,
        renderer: "Renderer",
        image_judge: Any,
        text_judge: Any,
        image_dir: str | Path,
        max_concurrency: int = 16,
        text_uses_ground_truth: bool = True,
        seed: int = 0,
    ) -> None:
        self.renderer = renderer
        self.image_judge = image_judge
        self.text_judge = text_judge
        self.image_dir = Path(image_dir)
        self.max_concurrency = max_concurrency
        self.text_uses_ground_truth = text_uses_ground_truth
        self.seed = seed
        self.renders = RenderLedger()

    def render_of(self, request: str, program: Any) -> str | None:
        """The image the last renders produced for this request and program (None: not rendered)."""
        return self.renders.get(request, program)

    def reward_funcs(self) -> list[Any]:
        """``[image_reward, program_reward]``: pass with ``reward_weights=[0.5, 0.5]``."""
        return [self.image_reward, self.program_reward]

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _column(kwargs: dict[str, Any], name: str, n: int, default: Any = None) -> list[Any]:
        values = kwargs.get(name)
        return list(values) if values is not None else [default] * n

    @staticmethod
    def _program(value: Any) -> Program | None:
        if value is None:
            return None
        return value if isinstance(value, Program) else Program.model_validate(value)

    @staticmethod
    def _ground_truth(value: Any) -> Path | None:
        if value is None or value == "":
            return None
        return Path(str(value))

    async def _bounded(self, jobs: list[Any]) -> list[Any]:
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def run(job):
            async with semaphore:
                return await job

        return await asyncio.gather(*(run(j) for j in jobs))

    # ------------------------------------------------------------------ R_img

    async def image_reward(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        """KScore of the rendered program against ``gt_image``."""
        from genevolve_graph.evaluation.images import ImageLoadError
        from genevolve_graph.evaluation.judge_client import JudgeError
        from genevolve_graph.evaluation.kscore import judge_kscore

        n = len(prompts)
        programs = self._column(kwargs, "program", n)
        failed = self._column(kwargs, "rollout_failed", n, False)
        truths = self._column(kwargs, "gt_image", n)
        state = kwargs.get("trainer_state")
        step_dir = self.image_dir / f"step-{getattr(state, 'global_step', 0):06d}"
        counts = {"render": 0, "judge": 0, "no_truth": 0}

        async def one(i: int) -> float | None:
            if failed[i]:
                return None
            program = self._program(programs[i])
            if program is None:
                return 0.0
            truth = self._ground_truth(truths[i])
            if truth is None:
                counts["no_truth"] += 1
                return None
            out = step_dir / f"{i:04d}-{uuid.uuid4().hex[:8]}.png"
            result = await self.renderer.render(program, out, seed=self.seed)
            if not result.success or not result.output_path:
                counts["render"] += 1
                logger.warning("render failed for rollout %d: %s", i, result.error)
                return None
            self.renders.record(request_of(prompts[i]), program, result.output_path)
            try:
                score = await judge_kscore(self.image_judge, prompt=request_of(prompts[i]), generated=Path(result.output_path), ground_truth=truth)
            except (JudgeError, ImageLoadError) as exc:
                _stop_on_configuration(exc)
                counts["judge"] += 1
                logger.warning("image judge failed for rollout %d: %s", i, exc)
                return None
            return float(score.overall)

        scores = await self._bounded([one(i) for i in range(n)])
        self._report(kwargs, "image", counts)
        return scores

    # ------------------------------------------------------------------ R_text

    async def program_reward(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        """The program-sufficiency judge's score."""
        from genevolve_graph.evaluation.images import ImageLoadError
        from genevolve_graph.evaluation.judge_client import JudgeError
        from genevolve_graph.evaluation.sufficiency import judge_program

        n = len(prompts)
        programs = self._column(kwargs, "program", n)
        failed = self._column(kwargs, "rollout_failed", n, False)
        truths = self._column(kwargs, "gt_image", n)
        counts = {"judge": 0}

        async def one(i: int) -> float | None:
            if failed[i]:
                return None
            program = self._program(programs[i])
            if program is None:
                return 0.0
            truth = self._ground_truth(truths[i]) if self.text_uses_ground_truth else None
            try:
                score = await judge_program(self.text_judge, prompt=request_of(prompts[i]), program=program, ground_truth=truth)
            except (JudgeError, ImageLoadError) as exc:
                _stop_on_configuration(exc)
                counts["judge"] += 1
                logger.warning("program judge failed for rollout %d: %s", i, exc)
                return None
            return float(score.score)

        scores = await self._bounded([one(i) for i in range(n)])
        self._report(kwargs, "program", counts)
        return scores

    @staticmethod
    def _report(kwargs: dict[str, Any], which: str, counts: dict[str, int]) -> None:
        log_metric = kwargs.get("log_metric")
        if log_metric is None:
            return
        for name, value in counts.items():
            log_metric(f"rewards/{which}_{name}_failures", float(value))


def _stop_on_configuration(exc: Exception) -> None:
    """A judge that rejects the key, the permission or the model fails every request: stop the
    run with the cause instead of training on no reward at all."""
    if getattr(exc, "is_configuration_error", False):
        raise RuntimeError(f"the judge endpoint rejects the configuration: {exc}; fix judges.* in the training config") from exc
