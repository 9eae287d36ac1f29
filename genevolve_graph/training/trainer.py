"""``SDLGRPOTrainer``: TRL's GRPO plus the SDL teacher branch (DESIGN.md §5).

GRPO stays as TRL computes it; SDL adds one term. Per generation batch, after the rewards:

1. *Distill* (main process): for each group of ``num_generations`` rollouts whose best and
   worst rewards differ by at least ``delta_min``, the distiller LLM writes a Decision Guide
   from the pair; guides go into the experience buffer (and its file) and are shipped, with
   their embeddings, to every other process, so all processes hold the same buffer.
2. *Retrieve* (every process): per rollout, the top-1 guide for its request if the cosine
   similarity reaches ``gate``. The buffer is updated before retrieval, so a group whose own
   best/worst pair just produced a guide is taught with it (hindsight), and later requests
   of the same kind reuse it.
3. *Teacher prompt*: the rollout's own system prompt with the guide appended, then the
   request, tokenized with the same chat template; the completion tokens are the student's.
4. *Loss* (per micro-batch): the student's log-probs come from TRL's own forward (captured,
   with their graph); one no-grad forward of the *same* model on teacher prompt + completion
   gives the teacher's. On decision tokens (inside ``<tool_call>``/``<answer>`` blocks of the
   policy's turns) with a guide, the top ``top_k_fraction`` per sequence by
   ``|log π_t − log π_s|`` enter the importance-weighted reverse KL (``sdl.reverse_kl_terms``),
   averaged over the kept tokens of all processes, times ``sdl_coef``, added to TRL's loss.
   When no process has an active token the teacher forward is skipped everywhere (the
   decision is collective, so sharded models never deadlock); a process without active rows
   runs a one-row dummy forward when others need theirs.

Rollouts that failed for infrastructure reasons (generation, render, judge) get no teacher term:
``sdl_active`` is 0 for them, counted as ``sdl/failed_rows_excluded``.

Logged: ``sdl/loss``, ``sdl/guide_hit_rate``, ``sdl/failed_rows_excluded``, ``sdl/masked_token_share`` (kept tokens over
the policy's tokens), ``sdl/decision_token_share``, ``sdl/active_rows``, ``sdl/guides_added``,
``sdl/distill_failures``, ``sdl/buffer_size``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, gather_object
from trl import GRPOConfig, GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad

from genevolve_graph.util import event_loop
from genevolve_graph.experience.buffer import ExperienceBuffer, Retrieval
from genevolve_graph.experience.embedders import DEFAULT_EMBEDDING_MODEL, SentenceEmbedder
from genevolve_graph.experience.guides import DecisionGuide
from genevolve_graph.training.distill import Attempt, GuideDistiller, GuideError, pick_pair
from genevolve_graph.training.rollout import request_of
from genevolve_graph.training.sdl import (
    DEFAULT_DECISION_TAGS,
    decision_token_mask,
    masked_mean,
    reverse_kl_terms,
    select_top_fraction,
)
from genevolve_graph.training.trl_compat import TRLCompatibilityError, batch_key_problems, check_grpo_trainer

logger = logging.getLogger(__name__)

SDL_KEYS = ("teacher_prompt_ids", "teacher_prompt_mask", "sdl_active", "decision_mask")
BUFFER_IN_CHECKPOINT = "experience_buffer"
"""The experience buffer's copy inside every ``checkpoint-N`` folder (restored on resume)."""


@dataclass
class SDLConfig(GRPOConfig):
    """``GRPOConfig`` plus the SDL options."""

    sdl_coef: float = field(default=0.1, metadata={"help": "Weight of the SDL reverse-KL term added to the GRPO loss (0 disables SDL)."})
    delta_min: float = field(default=0.2, metadata={"help": "Minimum best-worst reward gap in a group for the pair to be distilled into a guide."})
    gate: float = field(default=0.84, metadata={"help": "Minimum cosine similarity for a retrieved guide to reach the teacher."})
    top_k_fraction: float = field(default=0.10, metadata={"help": "Share of each sequence's decision tokens kept, by largest |log p_teacher - log p_student|."})
    buffer_capacity: int = field(default=500, metadata={"help": "Rolling capacity of the experience buffer."})
    sdl_decision_mask: bool = field(default=True, metadata={"help": "Restrict the SDL term to decision tokens (tool_call/answer blocks); false: every policy token is a candidate (ablation)."})
    decision_tags: list[str] = field(default_factory=lambda: list(DEFAULT_DECISION_TAGS), metadata={"help": "Tags whose blocks hold decision tokens."})
    sdl_is_clip: float = field(default=2.0, metadata={"help": "Upper clip of the importance weight pi_theta/pi_old of the SDL term."})
    embedding_model: str = field(default=DEFAULT_EMBEDDING_MODEL, metadata={"help": "sentence-transformers model (hub id or local path) indexing the guides."})
    buffer_dir: str | None = field(default=None, metadata={"help": "Where the experience buffer is persisted (default: OUTPUT_DIR/experience_buffer)."})
    sdl_inert_warning_steps: int = field(default=20, metadata={"help": "Warn when SDL has taught nothing after this many generation batches (no guide, or hit rate 0); 0 disables."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sdl_coef < 0:
            raise ValueError(f"sdl_coef must be >= 0, got {self.sdl_coef}")
        if not 0.0 < self.top_k_fraction <= 1.0:
            raise ValueError(f"top_k_fraction must be in (0, 1], got {self.top_k_fraction}")
        if not -1.0 <= self.gate <= 1.0:
            raise ValueError(f"gate is a cosine similarity in [-1, 1], got {self.gate}")
        if self.buffer_capacity < 1:
            raise ValueError(f"buffer_capacity must be >= 1, got {self.buffer_capacity}")
        if not self.decision_tags:
            raise ValueError("decision_tags must name at least one tag (e.g. tool_call, answer)")
        if self.delta_min < 0:
            raise ValueError(f"delta_min must be >= 0, got {self.delta_min}")


class SDLGRPOTrainer(GRPOTrainer):
    """GRPO with the SDL teacher branch. Takes ``GRPOTrainer``'s arguments plus:

    ``experience_buffer``: an :class:`ExperienceBuffer` (default: one over
    ``args.embedding_model``, persisted in ``args.buffer_dir``). ``distiller``: a
    :class:`GuideDistiller` (None: no new guides; a preloaded buffer still teaches).
    ``render_lookup``: ``(request, program) -> image path | None`` (``GenEvolveRewards.render_of``),
    so that a visual distiller sees the renders the image reward judged.
    """

    _tag_names = ["trl", "grpo", "sdl", "genevolve"]
    _name = "SDL-GRPO"

    def __init__(
        self,
        *args: Any,
        experience_buffer: ExperienceBuffer | None = None,
        distiller: GuideDistiller | None = None,
        render_lookup: Callable[[str, Any], str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        config = kwargs.get("args", args[2] if len(args) > 2 else None)
        if not isinstance(config, SDLConfig):
            raise TypeError("SDLGRPOTrainer needs args=SDLConfig(...) (TRL's GRPOConfig plus the SDL options)")
        rollout_func = kwargs.get("rollout_func")
        if rollout_func is not None:
            kwargs["rollout_func"] = _FieldCapture(rollout_func)
        super().__init__(*args, **kwargs)
        check_grpo_trainer(self)  # fail now, loudly, if this TRL changed an internal we rely on
        check_backend = getattr(self.rollout_func, "check_backend", None)
        if callable(check_backend):  # images with a backend that cannot take them: refused now, not per rollout
            check_backend(self)
        self.sdl_enabled = self.args.sdl_coef > 0
        self.distiller = distiller
        self.render_lookup = render_lookup
        if experience_buffer is None and self.sdl_enabled:
            buffer_dir = self.args.buffer_dir or str(Path(self.args.output_dir) / "experience_buffer")
            experience_buffer = ExperienceBuffer(
                SentenceEmbedder(self.args.embedding_model), capacity=self.args.buffer_capacity, gate=self.args.gate, path=buffer_dir
            )
        self.experience_buffer = experience_buffer
        self._capture_student = False
        self._captured_student_logps: torch.Tensor | None = None
        self._rollout_mm: dict[str, Any] = {}
        self._last_rewards_per_func: torch.Tensor | None = None
        self._buffer_synced = False
        self._batch_keys_checked = False
        self._sdl_batches, self._sdl_hits = 0, 0.0  # for the inert-SDL warning
        if self.sdl_enabled and distiller is None and not len(experience_buffer or []):
            logger.warning("SDL is on but there is no distiller and the experience buffer is empty: no guide will ever reach the teacher")

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint (model, optimizer, scheduler, RNG, trainer state) plus the experience
        buffer as it is at this step: the buffer is part of what training has learnt."""
        super()._save_checkpoint(model, trial)
        if self.experience_buffer is not None and self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if folder.is_dir():
                self.experience_buffer.save(folder / BUFFER_IN_CHECKPOINT)

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, **kwargs: Any):
        """``Trainer.train``; when resuming, the experience buffer is first restored from the
        checkpoint (the guides of step N, not the buffer folder's newest state)."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = get_last_checkpoint(self.args.output_dir) if Path(self.args.output_dir).is_dir() else None
        if checkpoint and self.experience_buffer is not None:
            saved = Path(checkpoint) / BUFFER_IN_CHECKPOINT
            if (saved / "guides.jsonl").is_file():
                self.experience_buffer.restore(saved, persist=self.accelerator.is_main_process)
                self._buffer_synced = False
                logger.info("experience buffer restored from %s (%d guides)", saved, len(self.experience_buffer))
            elif self.sdl_enabled:
                logger.warning(
                    "checkpoint %s holds no experience buffer (written before buffers were checkpointed): "
                    "SDL resumes with the buffer as loaded from %s", checkpoint, self.experience_buffer.path,
                )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)

    # ------------------------------------------------------------------ rewards

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards, with every *incomplete* row made wholly missing.

        TRL drops a rollout only when every reward function returned None; when one part fails
        (the render or the image judge) and the other scores, its weighted ``nansum`` counts the
        missing part as 0, an infrastructure failure turned into a penalty. Here a row with any
        missing part becomes all-NaN, so TRL leaves it out of the group baseline and gives it
        advantage 0, and SDL's pair selection skips it. The share is logged as
        ``reward/failed_share``.
        """
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        incomplete = torch.isnan(rewards_per_func).any(dim=1)
        rewards_per_func = rewards_per_func.masked_fill(incomplete.unsqueeze(1), float("nan"))
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["reward/failed_share"].append(incomplete.float().mean().item() if incomplete.numel() else 0.0)
        self._last_rewards_per_func = rewards_per_func.detach().cpu()
        return rewards_per_func

    def _total_rewards(self) -> list[float]:
        """R per rollout (weighted sum, NaN when every reward function returned None), global order."""
        rpf = self._last_rewards_per_func
        weights = self.reward_weights.to(rpf.device)
        total = (rpf * weights.unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(rpf).all(dim=1)] = float("nan")
        return total.tolist()

    # ------------------------------------------------------------------ generation batch

    # ------------------------------------------------------------------ images (vision-language policy)

    def _generate(self, prompts):
        """TRL's ``_generate`` (which calls the rollout), keeping the rollouts' images: TRL's
        ``rollout_func`` path carries no images, so their pixel values are built here, once,
        for every forward of this generation batch (``training/vision.py``)."""
        out = super()._generate(prompts)
        rows = out[5].get("rollout_images") if isinstance(out[5], dict) else None
        self._rollout_mm = {}
        if rows and any(rows):
            from genevolve_graph.training.vision import is_processor, multimodal_inputs

            if not is_processor(self.processing_class):
                raise ValueError("the rollouts hold images but the trainer's processing class has no image processor; pass the VLM's processor")
            self._rollout_mm = multimodal_inputs(self.processing_class, rows, device=self.accelerator.device)
        return out

    def _attach_images(self, output: dict[str, Any]) -> None:
        """Put the rollouts' pixel values (and image-token types) into the batch TRL trains on,
        so that its shuffling, splitting and student forward carry them per row."""
        from genevolve_graph.training.vision import check_image_tokens, mm_token_type_ids

        mm, self._rollout_mm = self._rollout_mm, {}
        if not mm:
            return
        sequence = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        check_image_tokens(sequence, self.processing_class, mm)
        output.update({k: v for k, v in mm.items()})
        if "image_grid_thw" in mm:
            output["mm_token_type_ids"] = mm_token_type_ids(sequence, self.processing_class)

    def _generate_and_score_completions(self, inputs):
        self._rollout_mm = {}
        output = super()._generate_and_score_completions(inputs)
        self._attach_images(output)
        if not self.sdl_enabled or not self.model.training:
            return output
        self._check_batch_keys_once(output)
        self._sync_buffer_once()
        self._distill(inputs)
        self._attach_teacher(inputs, output)
        return output

    def _check_batch_keys_once(self, output: dict[str, Any]) -> None:
        """At the first generation batch: every key the SDL term reads that TRL computes under
        these settings is there (a renamed key would silently set the importance weight to 1)."""
        if self._batch_keys_checked:
            return
        self._batch_keys_checked = True
        capture = self.rollout_func if isinstance(self.rollout_func, _FieldCapture) else None
        env_mask = capture.had_env_mask if capture is not None else False
        problems = batch_key_problems(self, output, env_mask=env_mask)
        if problems:
            raise TRLCompatibilityError(
                "the SDL trainer cannot run on this TRL: " + "; ".join(problems)
                + ". Install a tested TRL or update genevolve_graph/training/trainer.py"
            )

    def _rollout_rows(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each input row with the extra fields the rollout returned for it (``trajectory``,
        ``program``, ``policy_prompt``...), read from the ``rollout_func`` output itself rather than
        from TRL copying them into ``inputs``."""
        capture = self.rollout_func if isinstance(self.rollout_func, _FieldCapture) else None
        fields = capture.fields if capture is not None else {}
        rows = []
        for i, row in enumerate(inputs):
            merged = dict(row)
            for key, values in fields.items():
                if isinstance(values, list):
                    if len(values) != len(inputs):
                        raise RuntimeError(f"rollout_func returned {len(values)} values of {key!r} for {len(inputs)} prompts")
                    merged[key] = values[i]
            rows.append(merged)
        return rows

    def _sync_buffer_once(self) -> None:
        """Every process starts from the main process's buffer (e.g. one reloaded from disk)."""
        if self._buffer_synced:
            return
        self._buffer_synced = True
        if self.accelerator.num_processes == 1:
            return
        payload = [self.experience_buffer.export_entries(self.experience_buffer.guides) if self.accelerator.is_main_process else None]
        broadcast_object_list(payload, from_process=0)
        if not self.accelerator.is_main_process:
            self.experience_buffer.guides, self.experience_buffer.embeddings = [], None
            self.experience_buffer.import_entries(payload[0])

    def _distill(self, inputs: list[dict[str, Any]]) -> None:
        names = list(self.reward_func_names)
        rpf = self._last_rewards_per_func
        totals = self._total_rewards()
        local = [
            {
                "request": request_of(row["prompt"]),
                "trajectory": row.get("trajectory") or [],
                "program": row.get("program"),
                "termination": row.get("termination", ""),
                # paths on this process's file system; the main process reads them (one node)
                "image": self._render_path(row),
                "gt_image": row.get("gt_image") or None,
            }
            for row in self._rollout_rows(inputs)
        ]
        rows = gather_object(local)
        added: list[DecisionGuide] = []
        failures = 0
        error: BaseException | None = None
        try:
            if self.accelerator.is_main_process and self.distiller is not None:
                added, failures = self._distill_main(rows, rpf, totals, names)
        except Exception as exc:  # noqa: BLE001 - shipped to every process below, then raised everywhere
            error = exc
        cause = f"{type(error).__name__}: {error}" if error is not None else None
        payload = [self.experience_buffer.export_entries(added) if self.accelerator.is_main_process and error is None else None, failures, cause]
        if self.accelerator.num_processes > 1:
            # The other processes wait here for the main one: when it failed they get the cause
            # instead of a payload, and every process stops with it (none is left hanging).
            broadcast_object_list(payload, from_process=0)
        if payload[2] is not None:
            message = f"guide distillation failed on the main process: {payload[2]}"
            if error is not None:
                raise RuntimeError(message) from error
            raise RuntimeError(message)
        if not self.accelerator.is_main_process:
            self.experience_buffer.import_entries(payload[0])
        mode = "train"
        self._metrics[mode]["sdl/guides_added"].append(float(len(payload[0] or [])))
        self._metrics[mode]["sdl/distill_failures"].append(float(payload[1]))
        self._metrics[mode]["sdl/buffer_size"].append(float(len(self.experience_buffer)))

    def _render_path(self, row: dict[str, Any]) -> str | None:
        if self.render_lookup is None or row.get("program") is None:
            return None
        return self.render_lookup(request_of(row["prompt"]), row["program"])

    def _distill_main(self, rows: list[dict[str, Any]], rpf: torch.Tensor, totals: list[float], names: list[str]) -> tuple[list[DecisionGuide], int]:
        """Main process: distil a guide per group with a reward gap, add and persist them."""
        added: list[DecisionGuide] = []
        failures = 0
        g = self.num_generations
        jobs = []
        for start in range(0, len(rows) - g + 1, g):
            pair = pick_pair(totals[start : start + g], self.args.delta_min)
            if pair is None:
                continue
            attempts = []
            for i in pair:
                row = rows[start + i]
                comps = {n: float(rpf[start + i, j]) for j, n in enumerate(names)}
                attempts.append(Attempt(reward=totals[start + i], messages=row["trajectory"], components=comps,
                                        program=row["program"], termination=row["termination"], image=row["image"]))
            jobs.append((rows[start]["request"], attempts[0], attempts[1], rows[start]["gt_image"]))
        guides, failures = self._run_async(self._distill_all(jobs))
        if guides:
            added = self.experience_buffer.add(guides)
            if self.experience_buffer.path is not None:
                self.experience_buffer.save()
        return added, failures

    async def _distill_all(self, jobs: list[tuple[str, Attempt, Attempt, str | None]]) -> tuple[list[DecisionGuide], int]:
        step = self.state.global_step

        async def one(job: tuple[str, Attempt, Attempt, str | None]) -> DecisionGuide | None:
            request, best, worst, ground_truth = job
            try:
                return await self.distiller.distill(request, best, worst, step=step, ground_truth=ground_truth)
            except GuideError as exc:
                logger.warning("no guide for %r: %s", job[0][:80], exc)
                return None

        results = await asyncio.gather(*(one(j) for j in jobs))
        guides = [r for r in results if r is not None]
        return guides, len(results) - len(guides)

    def _run_async(self, coro):
        loop = getattr(self, "async_loop", None)
        if loop is not None and loop.is_running():
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
        return event_loop.run(coro)

    def _attach_teacher(self, inputs: list[dict[str, Any]], output: dict[str, Any]) -> None:
        device = self.accelerator.device
        requests = [request_of(row["prompt"]) for row in inputs]
        unique = list(dict.fromkeys(requests))
        found = dict(zip(unique, self.experience_buffer.retrieve(unique), strict=True))
        hits: list[Retrieval | None] = [found[r] for r in requests]

        rows = self._rollout_rows(inputs)
        failed = self._failed_rows(rows)
        teacher_ids = []
        for row, hit, bad, student_ids, student_mask in zip(rows, hits, failed, output["prompt_ids"], output["prompt_mask"], strict=True):
            if hit is None or bad:
                teacher_ids.append(student_ids[student_mask.bool()].cpu())
            else:
                teacher_ids.append(torch.tensor(self._teacher_prompt_ids(row, hit.guide.render())))
        teacher_prompt_ids = pad(teacher_ids, padding_value=self._tokenizer.pad_token_id, padding_side="left").to(device)
        teacher_prompt_mask = pad([torch.ones_like(t) for t in teacher_ids], padding_value=0, padding_side="left").to(device)
        model_mask = output["completion_mask"] * output["tool_mask"] if "tool_mask" in output else output["completion_mask"]
        if self.args.sdl_decision_mask:
            decision_mask = decision_token_mask(self._tokenizer, output["completion_ids"], model_mask, self.args.decision_tags).to(device)
        else:  # ablation / full-sequence baseline: every token the policy wrote is a candidate
            decision_mask = model_mask.to(device=device, dtype=torch.long)
        # an infrastructure failure (generation, render or judge) is never a learning signal: no teacher term either
        active = torch.tensor([hit is not None and not bad for hit, bad in zip(hits, failed, strict=True)], dtype=torch.long, device=device)
        output.update(teacher_prompt_ids=teacher_prompt_ids, teacher_prompt_mask=teacher_prompt_mask, sdl_active=active, decision_mask=decision_mask)

        hit_count = sum(hit is not None for hit in hits)
        stats = torch.tensor([float(hit_count), float(len(hits)), float(decision_mask.sum()), float(model_mask.sum()), float(sum(failed))], device=device)
        stats = self.accelerator.reduce(stats, reduction="sum")
        self._metrics["train"]["sdl/guide_hit_rate"].append((stats[0] / stats[1].clamp(min=1)).item())
        self._metrics["train"]["sdl/decision_token_share"].append((stats[2] / stats[3].clamp(min=1)).item())
        self._metrics["train"]["sdl/failed_rows_excluded"].append(stats[4].item())
        self._watch_inert(float(stats[0]))

    def _watch_inert(self, hits: float) -> None:
        """Warn once, during the run, when SDL has been inert for ``sdl_inert_warning_steps``
        generation batches: the run is then plain GRPO, which the logs alone would not say."""
        self._sdl_batches += 1
        self._sdl_hits += hits
        limit = self.args.sdl_inert_warning_steps
        if limit and self._sdl_batches == limit and self._sdl_hits == 0:
            if not len(self.experience_buffer):
                why = "no guide has been distilled (no group had a reward gap >= delta_min, or the distiller failed: see sdl/distill_failures)"
            else:
                why = f"the buffer holds {len(self.experience_buffer)} guide(s) but none reached the retrieval gate {self.args.gate}"
            logger.warning("SDL is inert after %d generation batches (guide hit rate 0): %s; training is plain GRPO so far", limit, why)
            self._metrics["train"]["sdl/inert_warning"].append(1.0)

    def _failed_rows(self, rows: list[dict[str, Any]]) -> list[bool]:
        """Per local row: the rollout failed (``rollout_failed``) or its reward is incomplete
        (a render or judge failure, made all-NaN by ``_calculate_rewards``)."""
        n = len(rows)
        start = self.accelerator.process_index * n  # TRL's process slice of the gathered rewards
        rpf = self._last_rewards_per_func
        incomplete = torch.isnan(rpf[start : start + n]).any(dim=1).tolist() if rpf is not None and rpf.size(0) >= start + n else [False] * n
        return [bool(row.get("rollout_failed")) or bool(bad) for row, bad in zip(rows, incomplete, strict=True)]

    def _teacher_prompt_ids(self, row: dict[str, Any], guide_text: str) -> list[int]:
        """The rollout's own prompt messages with the guide appended to the system prompt."""
        messages = teacher_messages(row.get("policy_prompt") or row["prompt"], guide_text)
        out = self.processing_class.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, **self.chat_template_kwargs
        )
        ids = out["input_ids"]
        return list(ids[0] if ids and isinstance(ids[0], list) else ids)

    # ------------------------------------------------------------------ loss

    def _get_per_token_logps_and_entropies(self, model, input_ids, *args, **kwargs):
        mm = getattr(self, "_rollout_mm", None)
        if mm and kwargs.get("pixel_values") is None and input_ids.size(0) == len(mm["num_images"]):
            # old / reference log-probs inside TRL's generation step: the whole local batch, in rollout order
            from genevolve_graph.training.vision import forward_kwargs

            kwargs.update(forward_kwargs(input_ids, self.processing_class, mm), num_images=mm["num_images"])
        out = super()._get_per_token_logps_and_entropies(model, input_ids, *args, **kwargs)
        if self._capture_student:
            self._captured_student_logps = out[0]
            self._capture_student = False  # only the student forward of _compute_loss
        return out

    def _compute_loss(self, model, inputs):
        if not self.sdl_enabled or not self.model.training or "decision_mask" not in inputs:
            return super()._compute_loss(model, inputs)
        self._capture_student, self._captured_student_logps = True, None
        loss = super()._compute_loss(model, inputs)
        student = self._captured_student_logps
        self._capture_student, self._captured_student_logps = False, None
        if student is None or not student.requires_grad:
            raise RuntimeError(
                "SDL could not capture the student's log-probs (with their gradient) from GRPOTrainer._compute_loss; "
                "this TRL version changed how the loss computes them (see docs/training.md, 'TRL upgrades')"
            )
        return loss + self._sdl_term(model, inputs, student)

    def _sdl_term(self, model, inputs: dict[str, Any], student: torch.Tensor) -> torch.Tensor:
        metrics = self._metrics["train"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        model_mask = completion_mask * inputs["tool_mask"] if "tool_mask" in inputs else completion_mask
        candidates = model_mask * inputs["decision_mask"] * inputs["sdl_active"].unsqueeze(1)
        rows = (candidates.sum(dim=1) > 0).nonzero(as_tuple=True)[0]
        n_active = torch.tensor([float(len(rows)), float(model_mask.sum())], device=student.device)
        totals = self.accelerator.reduce(n_active.clone(), reduction="sum")
        if totals[0].item() == 0:  # no process has a token to teach: skip the teacher everywhere
            metrics["sdl/loss"].append(0.0)
            metrics["sdl/masked_token_share"].append(0.0)
            metrics["sdl/active_rows"].append(0.0)
            return student.sum() * 0.0
        dummy = len(rows) == 0
        if dummy:  # others run their teacher forward: keep sharded forwards in step
            rows = torch.zeros(1, dtype=torch.long, device=student.device)
        cand_rows = candidates[rows] * (0 if dummy else 1)
        # the teacher only needs the completion up to the last decision token of these rows
        positions = cand_rows.nonzero(as_tuple=True)[1]
        width = int(positions.max().item()) + 1 if positions.numel() else 1
        images = None
        if inputs.get("pixel_values") is not None and "num_images" in inputs:
            from genevolve_graph.training.vision import select_rows

            images = select_rows(inputs, rows.tolist())
            width = completion_ids.size(1)  # never cut a completion inside an image
        cand_rows = cand_rows[:, :width]
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            teacher = self._teacher_logps(
                model,
                inputs["teacher_prompt_ids"][rows],
                inputs["teacher_prompt_mask"][rows],
                completion_ids[rows, :width],
                completion_mask[rows, :width],
                cand_rows,
                **({"images": images} if images else {}),
            )
        s_rows = student[rows, :width]
        keep = select_top_fraction((teacher - s_rows.detach()).abs(), cand_rows, self.args.top_k_fraction)
        old = inputs.get("old_per_token_logps")
        ratio = inputs.get("importance_sampling_ratio")
        terms = reverse_kl_terms(
            s_rows,
            teacher,
            old_logps=old[rows, :width] if old is not None else None,
            is_clip=self.args.sdl_is_clip,
            sampling_ratio=(ratio[rows, :width] if ratio.size(1) > 1 else ratio[rows]) if ratio is not None else None,
        )
        kept_local = keep.sum().to(torch.float32)
        kept_global = self.accelerator.reduce(kept_local.clone(), reduction="sum")
        denominator = kept_global / self.accelerator.num_processes
        sdl_loss = masked_mean(terms, keep, denominator)
        estimate = self.accelerator.reduce(torch.stack([(terms.detach() * keep).sum(), kept_local]), reduction="sum")
        metrics["sdl/loss"].append((estimate[0] / estimate[1].clamp(min=1)).item())
        metrics["sdl/masked_token_share"].append((kept_global / totals[1].clamp(min=1)).item())
        metrics["sdl/active_rows"].append(totals[0].item())
        return self.args.sdl_coef * sdl_loss / self.current_gradient_accumulation_steps

    def _teacher_logps(self, model, prompt_ids, prompt_mask, completion_ids, completion_mask, score_mask, images: dict[str, Any] | None = None) -> torch.Tensor:
        """Teacher log-probs of the completion tokens where ``score_mask`` is 1 (0 elsewhere).

        One forward of the same model on teacher prompt + completion, through TRL's fused LM
        head with labels only at the scored positions, so the vocabulary projection runs for
        decision tokens alone (on GPUs the fused head skips unlabelled positions).
        """
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        labels = torch.full_like(input_ids, -100)
        width = completion_ids.size(1)
        labels[:, -width:] = completion_ids.masked_fill(~score_mask.bool(), -100)
        extra: dict[str, Any] = {}
        if images:  # the teacher sees the student's images (the guide only adds system text)
            from genevolve_graph.training.vision import check_image_tokens, forward_kwargs

            check_image_tokens(input_ids, self.processing_class, images)
            extra = forward_kwargs(input_ids, self.processing_class, images)
        with self.accelerator.autocast():
            outputs = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True, **extra)
        return outputs.log_probs[:, -width:].float()


class _FieldCapture:
    """Wraps the ``rollout_func``: returns its output unchanged and keeps the extra fields of the
    latest call (the SDL branch reads the trajectories and policy prompts from them)."""

    _TRL_KEYS = ("prompt_ids", "completion_ids", "logprobs", "env_mask")

    def __init__(self, func: Any) -> None:
        self.func = func
        self.fields: dict[str, Any] = {}
        self.had_env_mask = False

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        output = self.func(prompts, trainer)
        self.fields = {k: v for k, v in output.items() if k not in self._TRL_KEYS}
        self.had_env_mask = output.get("env_mask") is not None
        return output

    def __getattr__(self, name: str) -> Any:  # the wrapped rollout's own attributes (close, last_results...)
        if name == "func":
            raise AttributeError(name)
        return getattr(self.func, name)


def teacher_messages(messages: Sequence[dict[str, Any]], guide_text: str) -> list[dict[str, Any]]:
    """The teacher's prompt: the student's messages with the guide appended to the system prompt
    (or, without a system prompt, as one)."""
    from genevolve_graph.experience.memory import guided_system_prompt  # the planner's guidance="retrieve" uses it too

    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
        out[0]["content"] = guided_system_prompt(out[0]["content"], guide_text)
    else:
        out.insert(0, {"role": "system", "content": guided_system_prompt("", guide_text)})
    return out


__all__ = ["SDLConfig", "SDLGRPOTrainer", "SDL_KEYS", "teacher_messages"]
