"""Evaluation of a model on a loader (on the training set it fits the linear mappings k, b of the
three heads, elsewhere it applies them), and the choice of the best epoch."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import create_supervised_evaluator

from linearityiqa.acceleration import Precision, batch_preparation, forward_fn
from linearityiqa.paper import IQAperformance

# What the paper's code printed and logged of each evaluation.
METRICS_PRINTED = ("SROCC", "PLCC", "RMSE", "SROCC1", "PLCC1", "RMSE1", "SROCC2", "PLCC2", "RMSE2")
IDENTITY_MAPPING = ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))


def val_criterion_for(val_criterion: str, beta: Sequence[float]) -> str:
    """The metric that selects the best model: that of the only head trained, if one is alone."""
    if beta[1] + beta[2] == 0:
        return "SROCC1"
    if beta[0] + beta[2] == 0:
        return "SROCC2"
    return val_criterion


class Evaluation:
    """An evaluator built once, with its IQAPerformance metric, run on any loader: `status` train
    fits the mapping k, b, val and test apply it; `logistic` adds the metrics after the 4-parameter
    logistic fit. The batches are channels_last with `channels_last`, as the model must be."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        status: str,
        device: torch.device,
        precision: Precision | None = None,
        channels_last: bool = False,
        logistic: bool = False,
    ):
        self.metric = IQAperformance.IQAPerformance(status=status, logistic=logistic)
        self.engine = create_supervised_evaluator(
            model,
            metrics={"IQA_performance": self.metric},
            device=device,
            non_blocking=True,
            prepare_batch=batch_preparation(channels_last),
            model_fn=forward_fn(precision or Precision("float32"), device),
        )

    def run(
        self, loader: Any, k: Sequence[float] = IDENTITY_MAPPING[0], b: Sequence[float] = IDENTITY_MAPPING[1]
    ) -> dict[str, Any]:
        """Metrics over `loader`; `k`, `b` are applied unless the status is train, which fits them."""
        self.metric.k, self.metric.b = list(k), list(b)
        return self.engine.run(loader).metrics["IQA_performance"]


def metric_lines(dataset: str, performance: Mapping[str, Any], names: Sequence[str] = METRICS_PRINTED) -> list[str]:
    """`<dataset>, SROCC: 0.937` lines, as the paper's code printed them; `n/a` for a metric that is
    not defined (too few images for it, or constant predictions)."""
    return [f"{dataset}, {name}: {_shown(performance[name])}" for name in names]


def _shown(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def criterion_score(performance: Mapping[str, Any], criterion: str) -> float:
    """Larger is better: |SROCC| or |PLCC| (a head may learn a reversed scale), or -RMSE; NaN
    (correlations of constant predictions) ranks below every number."""
    value = float(performance[criterion])
    if math.isnan(value):
        return -math.inf
    return -value if criterion.startswith("RMSE") else abs(value)


class Progress:
    """The best validation score so far and its epoch, kept in the resume state."""

    def __init__(self):
        self.best_score, self.best_epoch = -float("inf"), 0

    def state_dict(self) -> dict[str, float]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]

    def improved_by(self, score: float) -> bool:
        """Whether `score` beats the best so far; the first epoch does: a run of NaN scores still keeps a best model."""
        return score > self.best_score or self.best_epoch == 0
