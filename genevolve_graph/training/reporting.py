"""``report_to`` checked before a run starts (``train grpo``, ``train sft``).

Transformers imports a logging integration only when the Trainer is built, after the model has
loaded, and a missing package then ends in a traceback. The check here runs first and ends with
one line naming the package and the ``logging`` extra that installs it.
"""

from __future__ import annotations

REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",), "comet_ml": ("comet_ml",),
             "trackio": ("trackio",)}
"""``report_to`` integrations and the packages that provide them (any one of them)."""


def missing_reporter(report_to: object) -> str | None:
    """A one-line error when ``report_to`` names an integration whose package is not installed."""
    import importlib.util

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    for name in names:
        packages = REPORTERS.get(str(name))
        if packages and not any(importlib.util.find_spec(p) for p in packages):
            return (f"report_to: {name} needs the {packages[0]} package, which is not installed: "
                    "pip install 'genevolve-graph[logging]' (or set report_to: none)")
    return None


__all__ = ["REPORTERS", "missing_reporter"]
