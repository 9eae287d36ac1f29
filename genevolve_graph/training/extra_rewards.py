"""Extra reward functions named in the configuration (``module:function``), beside GenEvolve's own.

A researcher adds a term (a length penalty, a format bonus) without touching the package: the
function takes TRL's ``reward_funcs`` signature, ``f(prompts=, completions=, completion_ids=,
**kwargs) -> list[float | None]`` (sync or ``async``; the rollout's extra fields such as
``program``, ``termination`` and the dataset columns arrive as keyword arguments), and gets its
weight in ``reward_weights`` after the two GenEvolve weights. ``None`` marks a rollout the
function could not score: as for GenEvolve's rewards, the whole row is then left out of the group
(never a silent 0). The operator names the modules; they are imported like any Python module.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from genevolve_graph.training.config import ConfigError


def load_reward_func(spec: str) -> Callable[..., Any]:
    """The function named ``package.module:function``; a one-line ``ConfigError`` otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"extra_reward_funcs: {spec!r} is not 'module:function' (e.g. my_rewards:length_penalty)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"extra_reward_funcs: cannot import {module_name!r} ({exc}); put it on PYTHONPATH") from None
    func = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise ConfigError(f"extra_reward_funcs: {module_name!r} has no {attr!r}")
    if not callable(func):
        raise ConfigError(f"extra_reward_funcs: {spec} is not callable")
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        params = []
    if params and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise ConfigError(
            f"extra_reward_funcs: {spec} must take TRL's reward signature f(prompts, completions, completion_ids, **kwargs) "
            "(add **kwargs: TRL passes the rollout's fields and the dataset columns as keywords)"
        )
    return func


def reward_setup(base_funcs: Sequence[Any], base_weights: Sequence[float] | None, specs: Sequence[str],
                 extra_weights: Sequence[float] | None) -> tuple[list[Any], list[float] | None]:
    """The reward functions and ``reward_weights`` of a run: GenEvolve's, then the extra ones.

    ``base_weights`` is TRL's ``reward_weights`` as configured: either one weight per GenEvolve
    function (the extra ones then take ``extra_weights``, default 1.0 each) or one per function
    of the whole list.
    """
    funcs = [load_reward_func(s) for s in specs]
    if not funcs:
        return list(base_funcs), list(base_weights) if base_weights is not None else None
    n_base, n_all = len(base_funcs), len(base_funcs) + len(funcs)
    weights = list(base_weights) if base_weights is not None else [1.0] * n_base
    if extra_weights is not None and len(extra_weights) != len(funcs):
        raise ConfigError(f"extra_reward_weights has {len(extra_weights)} values for {len(funcs)} extra_reward_funcs")
    if len(weights) == n_base:
        weights += list(extra_weights) if extra_weights is not None else [1.0] * len(funcs)
    elif len(weights) != n_all or extra_weights is not None:
        raise ConfigError(
            f"reward_weights has {len(weights)} values for {n_all} reward functions ({n_base} GenEvolve + {len(funcs)} extra); "
            "give the GenEvolve weights in reward_weights and the others in extra_reward_weights"
        )
    return list(base_funcs) + funcs, [float(w) for w in weights]


__all__ = ["load_reward_func", "reward_setup"]
