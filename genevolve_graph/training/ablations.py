"""Ablations and baselines of GRPO + SDL, selected from one configuration file.

A paper's comparison runs the same configuration several times with a few fields changed. The
config file names the variants under ``ablations:`` (``name: {field: value, ...}``, any field
``train grpo`` takes, TRL's ``GRPOConfig`` fields such as ``loss_type`` included), or says
``ablations: standard`` for :data:`STANDARD`; ``train grpo --config FILE --ablation NAME`` runs one,
writing to ``output_dir/NAME`` unless the variant sets its own ``output_dir``.

The standard set:

* ``grpo``: plain GRPO (``sdl_coef: 0``): no guides, no teacher.
* ``sdl``: the method as configured (top ``top_k_fraction`` of decision tokens, reverse KL).
* ``sdl_all_tokens``: SDL without the decision mask: every policy token is a candidate for the
  top fraction.
* ``sdl_top25``: SDL keeping the top 25% of decision tokens instead of 10%.
* ``full_sequence_sd``: a full-sequence self-distillation baseline in the style of TRL's
  experimental SDPO trainer: the same model as teacher with privileged context (here the
  retrieved guide in its system prompt) and reverse KL on *all* completion tokens of the policy
  (no decision mask, no top-K selection). Unlike SDPO it keeps the GRPO term and SDL's guide as
  the privileged context (SDPO's default context is a successful sibling's answer).
"""

from __future__ import annotations

from typing import Any

from genevolve_graph.training.config import ConfigError

STANDARD: dict[str, dict[str, Any]] = {
    "grpo": {"sdl_coef": 0.0},
    "sdl": {},
    "sdl_all_tokens": {"sdl_decision_mask": False},
    "sdl_top25": {"top_k_fraction": 0.25},
    "full_sequence_sd": {"sdl_decision_mask": False, "top_k_fraction": 1.0},
}
"""Name -> the fields it changes (on top of the configuration's own)."""


def ablation_table(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    """The ``ablations:`` value of a config file as ``{name: overrides}``."""
    if raw == "standard":
        return {name: dict(fields) for name, fields in STANDARD.items()}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, dict | None) for k, v in raw.items()):
        raise ConfigError(f"config {where}: 'ablations' must be 'standard' or a mapping of variant names to fields (e.g. grpo: {{sdl_coef: 0}})")
    table = {}
    for name, fields in raw.items():
        if name == "standard" or fields is None:
            if name in STANDARD:
                table[name] = dict(STANDARD[name])
                continue
            raise ConfigError(f"config {where}: ablation {name!r} has no fields")
        if "ablations" in fields:
            raise ConfigError(f"config {where}: ablation {name!r} cannot nest 'ablations'")
        table[name] = dict(fields)
    return table


def apply_ablation(flat: dict[str, Any], table: dict[str, dict[str, Any]], name: str, where: str) -> dict[str, Any]:
    """``flat`` with variant ``name``'s fields, writing to ``output_dir/name`` unless it sets one."""
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise ConfigError(f"--ablation {name}: no such variant in {where} (variants: {known})")
    out = {**flat, **table[name]}
    if "output_dir" not in table[name]:
        out["output_dir"] = f"{str(flat.get('output_dir') or 'runs/grpo').rstrip('/')}/{name}"
    return out


__all__ = ["STANDARD", "ablation_table", "apply_ablation"]
