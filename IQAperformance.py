"""How well predicted quality agrees with subjective scores: SROCC, KROCC, PLCC, RMSE.

`IQAPerformance` is an ignite metric over the model's three heads. Before PLCC and
RMSE, predictions are mapped linearly onto the subjective scale: on the training set
the mapping (k, b) is fitted by least squares; elsewhere the fitted mapping is applied.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import ignite.distributed as idist
import numpy as np
import torch
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced
from scipy import optimize, special, stats

from linearityiqa.choices import LEAST_FOR_CORRELATION, LEAST_FOR_LOGISTIC
from linearityiqa.data.info_files import SPLITS
from linearityiqa.errors import ConfigError

# Head i of the reported metrics (no suffix, 1, 2) and its index in the model's output.
HEADS = (("", 2), ("1", 0), ("2", 1))


def logistic_4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic of VQEG: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    # expit(z) = 1 / (1 + exp(-z)), without overflowing for large |z| while the fit explores
    return (b1 - b2) * special.expit((x - b3) / np.abs(b4)) + b2


def correlations(score: np.ndarray, mapped: np.ndarray) -> dict[str, float]:
    """SROCC, KROCC, PLCC and RMSE of mapped predictions against subjective scores."""
    rmse = float(np.sqrt(np.mean((score - mapped) ** 2)))
    # no correlation is defined with fewer than 2 values or with a constant side (a model whose
    # predictions collapsed, scores all alike): NaN, printed n/a, without SciPy's warning
    if len(score) < LEAST_FOR_CORRELATION or np.ptp(score) == 0 or np.ptp(mapped) == 0:
        return {"SROCC": math.nan, "KROCC": math.nan, "PLCC": math.nan, "RMSE": rmse}
    return {
        "SROCC": float(stats.spearmanr(score, mapped)[0]),
        "KROCC": float(stats.kendalltau(score, mapped)[0]),
        "PLCC": float(stats.pearsonr(score, mapped)[0]),
        "RMSE": rmse,
    }


class IQAPerformance(Metric):
    """Agreement of the model's three heads with subjective scores (docs/modules.md).

    `update` takes `(y_pred, (mos, mos_std))`: the model's three N x 1 outputs and the
    batch's scores. `compute` returns SROCC, KROCC, PLCC, RMSE of the fused head
    (y_pred[2]), the same with suffix 1 for y_pred[0] and 2 for y_pred[1]; the arrays
    `sq`, `sq_std`, `pq`, `pq1`, `pq2` (mapped) and `pq_before`, `pq1_before`,
    `pq2_before` (as predicted); and the mapping `k`, `b` (lists of 3, fused head first).
    `status` train fits k, b; `mapping=False` compares raw predictions; `logistic` adds
    PLCC and RMSE after VQEG's 4-parameter logistic fit (`PLCC_logistic`, ...).
    """

    def __init__(
        self,
        status: str = "train",
        k: Sequence[float] | None = None,
        b: Sequence[float] | None = None,
        mapping: bool = True,
        logistic: bool = False,
        output_transform=lambda output: output,
        device="cpu",
    ):
        if status not in SPLITS:
            raise ConfigError(f"unknown status {status!r}: use one of {', '.join(SPLITS)}")
        self.status = status
        self.k: list[float] = [1.0] * 3 if k is None else [float(v) for v in k]
        self.b: list[float] = [0.0] * 3 if b is None else [float(v) for v in b]
        if len(self.k) != 3 or len(self.b) != 3:
            raise ConfigError(f"k and b need one value per head (3 each); got k={self.k}, b={self.b}")
        self.mapping = mapping
        self.logistic = logistic
        # the output is a list of heads and a (mos, std) pair, not a list of samples to unroll
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=True)

    @reinit__is_reduced
    def reset(self) -> None:
        self._rows: list[torch.Tensor] = []

    @reinit__is_reduced
    def update(self, output) -> None:
        y_pred, (mos, mos_std) = output
        columns = [mos, mos_std] + [y_pred[index] for _, index in HEADS]
        batch = torch.stack([c.detach().reshape(-1).to(self._device, torch.float64) for c in columns], dim=1)
        self._rows.append(batch)

    def compute(self) -> dict:
        if not self._rows:
            raise ConfigError("IQAPerformance has no data: run it over at least one batch before compute()")
        rows = torch.cat(self._rows).cpu().numpy()
        if idist.get_world_size() > 1:  # the samples of every process, in rank order (shares may differ in size)
            rows = np.concatenate(idist.all_gather(rows))
        sq, sq_std, *predicted = rows.T
        results = {"sq": sq, "sq_std": sq_std}
        for head, (suffix, _) in enumerate(HEADS):
            results.update(self._head_results(head, suffix, predicted[head], sq))
        results.update(k=list(self.k), b=list(self.b))
        return results

    def _head_results(self, head: int, suffix: str, before: np.ndarray, sq: np.ndarray) -> dict:
        if self.mapping and self.status == "train":  # least squares: sq ~ k * before + b
            design = np.stack((before, np.ones_like(before)), axis=1)
            (k, b), *_ = np.linalg.lstsq(design, sq, rcond=None)
            self.k[head], self.b[head] = float(k), float(b)
        mapped = self.k[head] * before + self.b[head] if self.mapping else before
        results = {f"{name}{suffix}": value for name, value in correlations(sq, mapped).items()}
        results[f"pq{suffix}"] = mapped
        results[f"pq{suffix}_before"] = before.reshape(-1, 1)
        if self.logistic:
            results.update(self._logistic_results(suffix, before, sq))
        return results

    @staticmethod
    def _logistic_results(suffix: str, before: np.ndarray, sq: np.ndarray) -> dict:
        names = (f"PLCC{suffix}_logistic", f"RMSE{suffix}_logistic")
        if len(sq) < LEAST_FOR_LOGISTIC:  # said before the evaluation starts (test_dataset.py)
            return dict.fromkeys(names, math.nan)
        start = [sq.max(), sq.min(), np.mean(before), np.std(before) / 4 + 1e-12]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                parameters, _ = optimize.curve_fit(logistic_4, before, sq, p0=start, maxfev=100000)
        except RuntimeError:
            warnings.warn(
                f"the logistic fit of head '{suffix or 'fused'}' did not converge: {' and '.join(names)} are NaN",
                stacklevel=2,
            )
            return dict.fromkeys(names, math.nan)
        mapped = logistic_4(before, *parameters)
        plcc, rmse = stats.pearsonr(sq, mapped)[0], np.sqrt(np.mean((sq - mapped) ** 2))
        return dict(zip(names, (float(plcc), float(rmse))))
