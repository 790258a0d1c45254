"""The norm-in-norm loss of the paper, the losses it was compared with, and the
monotonicity regularizer.

Every batch loss takes predictions `y_pred` and subjective scores `y` as N x 1 tensors
(other shapes with N elements are read as columns). A batch of one sample has no
batch statistics: the losses return 0, still attached to the graph, so that a
training step on it neither crashes nor produces NaN.

`alpha` weighs the two terms of each normalized loss: alpha[0] the plain distance
between the normalized vectors (l in the paper), alpha[1] the distance after the
optimal linear rescaling by rho (the variant l').
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from linearityiqa.choices import LOSS_TYPE_ALIASES, LOSS_TYPES
from linearityiqa.errors import ConfigError

eps = 1e-8


def _as_columns(y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as N x 1, so that no N x 1 against N comparison broadcasts to N x N."""
    if y_pred.numel() != y.numel():
        raise ConfigError(f"predictions ({y_pred.numel()} values) and scores ({y.numel()} values) differ in number")
    return y_pred.reshape(-1, 1), y.reshape(-1, 1).to(y_pred.dtype)


def _zero_with_grad(y_pred: torch.Tensor) -> torch.Tensor:
    """0, attached to the graph with zero gradients."""
    return F.l1_loss(y_pred, y_pred.detach())


def _statistics_input(y_pred: torch.Tensor, detach: bool) -> torch.Tensor:
    """What the statistics of y_pred are taken from: with `detach` they are constants."""
    return y_pred.detach() if detach else y_pred


def _batch_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two columns over the whole batch: one value, shape (1,)."""
    return F.cosine_similarity(a.t(), b.t())


def _weighted_terms(
    alpha: Sequence[float], plain: Callable[[], torch.Tensor], rescaled: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """(alpha0 * l + alpha1 * l') / (alpha0 + alpha1), computing only the terms weighted above 0."""
    total = 0
    if alpha[0] > 0:
        total = total + alpha[0] * plain()
    if alpha[1] > 0:
        total = total + alpha[1] * rescaled()
    return total / (alpha[0] + alpha[1])


def normalized(v: torch.Tensor, q: float, detach: bool = False) -> torch.Tensor:
    """The paper's first two steps for one vector: centre it by its mean a, then divide it by its
    q-norm ||v - a||_q (plus eps): the normalized scores v'' = (v - a) / ||v - a||_q.

    With `detach` the mean and the norm are taken as constants in the backward pass.
    """
    centred = v - _statistics_input(v, detach).mean()
    return centred / (eps + torch.linalg.vector_norm(_statistics_input(centred, detach), ord=q))


def norm_in_norm_bound(N: int, p: float, q: float) -> float:
    """The largest ||yhat'' - y''||_p of two normalized vectors of N values: 2^max(1, 1/q) N^max(0, 1/p - 1/q).

    Dividing by it puts the loss in [0, 1] whatever N, p and q are.
    """
    return 2 ** max(1, 1 / q) * N ** max(0, 1 / p - 1 / q)


def lp_distance(err: torch.Tensor, p: float, bound: float, exponent: bool = True) -> torch.Tensor:
    """The paper's third step: l = (||err||_p / bound)^p (without `exponent`, ||err||_p / bound)."""
    if p < 1:  # |x|^p has an unbounded gradient at 0 when p < 1
        err = err + eps
    loss = torch.linalg.vector_norm(err, ord=p) / bound
    return loss**p if exponent else loss


def norm_loss_with_normalization(
    y_pred: torch.Tensor,
    y: torch.Tensor,
    alpha: Sequence[float] = (1, 1),
    p: float = 2,
    q: float = 2,
    detach: bool = False,
    exponent: bool = True,
) -> torch.Tensor:
    """The norm-in-norm loss (paper, Sec. 3.1, Eqs. 4-8), in its three steps: statistics and
    normalization of both vectors (`normalized`), then the p-norm of their difference divided by
    its upper bound (`norm_in_norm_bound`) and raised to the power p (`lp_distance`).

    Args:
        y_pred: predicted scores, N x 1.
        y: subjective scores, N x 1.
        alpha: weights of l and of the variant l' (with rho * yhat'' in place of yhat'', rho the
            cosine of yhat'' and y'', which is their PLCC).
        p: order of the norm of the error.
        q: order of the norm used for normalization.
        detach: take the mean and norm of y_pred as constants.
        exponent: raise the normalized norm to the power p (the paper's loss).
    """
    y_pred, y = _as_columns(y_pred, y)
    N = y_pred.size(0)
    if N < 2:
        return _zero_with_grad(y_pred)
    y_pred = normalized(y_pred, q, detach)
    y = normalized(y, q)
    bound = norm_in_norm_bound(N, p, q)
    return _weighted_terms(
        alpha,
        lambda: lp_distance(y_pred - y, p, bound, exponent),
        lambda: lp_distance(_batch_cosine(y_pred, y) * y_pred - y, p, bound, exponent),
    )


def linearity_induced_loss(
    y_pred: torch.Tensor, y: torch.Tensor, alpha: Sequence[float] = (1, 1), detach: bool = False
) -> torch.Tensor:
    """MSE between z-scores, divided by 4; l' rescales by rho = mean(zhat * z), the PLCC.

    With population standard deviations, mse(zhat, z) / 4 = (1 - PLCC) / 2 and the variant
    mse(rho * zhat, z) / 4 = (1 - PLCC^2) / 4.
    """
    y_pred, y = _as_columns(y_pred, y)
    if y_pred.size(0) < 2:
        return _zero_with_grad(y_pred)
    sigma_hat, m_hat = torch.std_mean(_statistics_input(y_pred, detach), unbiased=False)
    y_pred = (y_pred - m_hat) / (sigma_hat + eps)
    sigma, m = torch.std_mean(y, unbiased=False)
    y = (y - m) / (sigma + eps)
    return _weighted_terms(
        alpha, lambda: F.mse_loss(y_pred, y) / 4, lambda: F.mse_loss(torch.mean(y_pred * y) * y_pred, y) / 4
    )


def _normalized_mse(y_pred: torch.Tensor, y: torch.Tensor, alpha: Sequence[float], divisor: float) -> torch.Tensor:
    """MSE of already normalized vectors, and of the batch-cosine-rescaled variant."""
    return _weighted_terms(
        alpha,
        lambda: F.mse_loss(y_pred, y) / divisor,
        lambda: F.mse_loss(_batch_cosine(y_pred, y) * y_pred, y) / divisor,
    )


def norm_loss_with_min_max_normalization(
    y_pred: torch.Tensor, y: torch.Tensor, alpha: Sequence[float] = (1, 1), detach: bool = False
) -> torch.Tensor:
    """MSE after mapping each vector to [0, 1] by (v - min) / (max - min)."""
    y_pred, y = _as_columns(y_pred, y)
    if y_pred.size(0) < 2:
        return _zero_with_grad(y_pred)
    stats_of = _statistics_input(y_pred, detach)
    low, high = stats_of.min(), stats_of.max()
    y_pred = (y_pred - low) / (eps + high - low)
    y = (y - y.min()) / (eps + y.max() - y.min())
    return _normalized_mse(y_pred, y, alpha, divisor=1)


def norm_loss_with_mean_normalization(
    y_pred: torch.Tensor, y: torch.Tensor, alpha: Sequence[float] = (1, 1), detach: bool = False
) -> torch.Tensor:
    """MSE / 4 after mean normalization (v - mean) / (max - min)."""
    y_pred, y = _as_columns(y_pred, y)
    if y_pred.size(0) < 2:
        return _zero_with_grad(y_pred)
    stats_of = _statistics_input(y_pred, detach)
    y_pred = (y_pred - stats_of.mean()) / (eps + stats_of.max() - stats_of.min())
    y = (y - y.mean()) / (eps + y.max() - y.min())
    return _normalized_mse(y_pred, y, alpha, divisor=4)


def norm_loss_with_scaling(
    y_pred: torch.Tensor, y: torch.Tensor, alpha: Sequence[float] = (1, 1), p: float = 2, detach: bool = False
) -> torch.Tensor:
    """MSE / 4 after scaling each vector to unit p-norm, without centring."""
    y_pred, y = _as_columns(y_pred, y)
    if y_pred.size(0) < 2:
        return _zero_with_grad(y_pred)
    y_pred = y_pred / (eps + torch.linalg.vector_norm(_statistics_input(y_pred, detach), ord=p))
    y = y / (eps + torch.linalg.vector_norm(y, ord=p))
    return _normalized_mse(y_pred, y, alpha, divisor=4)


def mae_loss(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, the baseline the paper compares with."""
    return F.l1_loss(*_as_columns(y_pred, y))


def mse_loss(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error, the other baseline."""
    return F.mse_loss(*_as_columns(y_pred, y))


def monotonicity_regularization(y_pred: torch.Tensor, y: torch.Tensor, detach: bool = False) -> torch.Tensor:
    """Penalty on pairs ranked against the subjective scores.

    M_ij = relu((yhat_i - yhat_j) * sign(y_j - y_i)) is positive when i is predicted
    better than j but rated worse; R = sum(M) / (N (N - 1)) / (1 + max(M)).
    """
    y_pred, y = _as_columns(y_pred, y)
    N = y_pred.size(0)
    if N < 2:
        return _zero_with_grad(y_pred)
    misranking = F.relu((y_pred - y_pred.t()) * torch.sign(y.t() - y))
    scale = 1 + torch.max(_statistics_input(misranking, detach))
    return torch.sum(misranking) / N / (N - 1) / scale


def _check_weights(name: str, weights: Sequence[float], length: int) -> tuple[float, ...]:
    weights = tuple(float(w) for w in weights)
    if len(weights) != length or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"{name} must be {length} non-negative numbers, not all 0; got {list(weights)}")
    return weights


def canonical_loss_type(loss_type: str) -> str:
    """The loss name with aliases resolved; an unknown name is a ConfigError."""
    loss_type = LOSS_TYPE_ALIASES.get(loss_type, loss_type)
    if loss_type not in LOSS_TYPES:
        names = ", ".join(LOSS_TYPES + tuple(LOSS_TYPE_ALIASES))
        raise ConfigError(f"unknown loss_type {loss_type!r}: use one of {names}")
    return loss_type


class IQALoss(nn.Module):
    """The training loss: a weighted sum of one batch loss over the model's three heads.

    loss = beta[2] * L(y_pred[2]) + beta[0] * L(y_pred[0]) + beta[1] * L(y_pred[1]),
    each term only where its beta is above 0, plus gamma times the monotonicity
    regularizer of each term's predictions with `monotonicity_regularization`.

    Args:
        loss_type: one of `LOSS_TYPES` (or `Lp`, the same as `norm-in-norm`).
        alpha: weights of the two terms of the normalized losses (l and l').
        beta: weights of the heads: first side output, second side output, fused.
        p: order of the error norm (norm-in-norm) or of the scaling norm (scaling).
        q: order of the normalization norm (norm-in-norm).
        monotonicity_regularization: add gamma * R to each head's loss.
        gamma: weight of the monotonicity regularizer.
        detach: take every statistic of the predictions as a constant.
    """

    def __init__(
        self,
        loss_type: str = "norm-in-norm",
        alpha: Sequence[float] = (1, 0),
        beta: Sequence[float] = (0.1, 0.1, 1),
        p: float = 1,
        q: float = 2,
        monotonicity_regularization: bool = False,
        gamma: float = 0.1,
        detach: bool = False,
    ):
        super().__init__()
        self.loss_type = canonical_loss_type(loss_type)
        self.alpha = _check_weights("alpha", alpha, 2)
        self.beta = _check_weights("beta", beta, 3)
        if p <= 0 or q <= 0:
            raise ConfigError(f"p and q must be above 0; got p={p}, q={q}")
        self.p, self.q = p, q
        self.monotonicity_regularization = monotonicity_regularization
        self.gamma = gamma
        self.detach = detach
        self.batch_loss = self._bound_batch_loss()

    def forward(self, y_pred: Sequence[torch.Tensor], y: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Args:
        y_pred: the model's output, three N x 1 tensors.
        y: (mos, mos_std) as a data loader gives them, or the mos tensor alone.
        """
        mos = y if isinstance(y, torch.Tensor) else y[0]
        # Statistics of a batch are taken at least in float32, also under autocast.
        mos = mos.view(-1, 1).to(torch.promote_types(mos.dtype, torch.float32))
        total = 0
        for head in (2, 0, 1):
            if self.beta[head] > 0:
                prediction = y_pred[head].to(torch.promote_types(y_pred[head].dtype, torch.float32))
                loss = self.batch_loss(prediction, mos)
                if self.monotonicity_regularization:
                    loss = loss + self.gamma * monotonicity_regularization(prediction, mos, detach=self.detach)
                total = total + self.beta[head] * loss
        return total

    def _bound_batch_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The batch loss of `loss_type` with this loss's settings bound (a partial adds no call to the stack)."""
        alpha, detach = self.alpha, self.detach
        losses = {
            "mae": mae_loss,
            "mse": mse_loss,
            "norm-in-norm": partial(norm_loss_with_normalization, alpha=alpha, p=self.p, q=self.q, detach=detach),
            "linearity": partial(linearity_induced_loss, alpha=alpha, detach=detach),
            "min-max-norm": partial(norm_loss_with_min_max_normalization, alpha=alpha, detach=detach),
            "mean-norm": partial(norm_loss_with_mean_normalization, alpha=alpha, detach=detach),
            "scaling": partial(norm_loss_with_scaling, alpha=alpha, p=self.p, detach=detach),
        }
        return losses[self.loss_type]
