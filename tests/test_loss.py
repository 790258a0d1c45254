"""IQAloss: values derived by hand, the invariances the paper proves, gradients, and
the behaviour at the edges (one-sample batches, detach, mixed precision, bad options)."""

from __future__ import annotations

import math

import pytest
import torch

import IQAloss
from IQAloss import (
    IQALoss,
    linearity_induced_loss,
    monotonicity_regularization,
    norm_loss_with_mean_normalization,
    norm_loss_with_min_max_normalization,
    norm_loss_with_normalization,
    norm_loss_with_scaling,
)
from linearityiqa.errors import ConfigError


def column(*values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype).view(-1, 1)


# Two small batches whose normalized forms are easy to write down:
# A: yhat = [0, 1, 2], y = [0, 2, 1]. Centred: [-1, 0, 1] and [-1, 1, 0], both of 2-norm sqrt(2).
A_PRED, A_MOS = column(0, 1, 2), column(0, 2, 1)
# B: yhat = [1, 2, 3, 4], y = [1, 3, 2, 4]: PLCC = 4 / 5 = 0.8.
B_PRED, B_MOS = column(1, 2, 3, 4), column(1, 3, 2, 4)


def test_norm_in_norm_p1_q2_by_hand():
    # yhat'' - y'' = [0, -1, 1] / sqrt(2): 1-norm sqrt(2); scale = 2 * 3^(1 - 1/2)
    loss = norm_loss_with_normalization(A_PRED, A_MOS, alpha=(1, 0), p=1, q=2)
    assert loss.item() == pytest.approx(math.sqrt(2) / (2 * math.sqrt(3)), rel=1e-6)


def test_norm_in_norm_variant_uses_one_rho_over_the_batch():
    # rho = <yhat'', y''> = 1/2; rho * yhat'' - y'' = [0.5, -1, 0.5] / sqrt(2): 1-norm sqrt(2) again.
    # (An element-wise cosine, the authors' first release, gives rho = [1, 0, 0] and half this value.)
    loss = norm_loss_with_normalization(A_PRED, A_MOS, alpha=(0, 1), p=1, q=2)
    assert loss.item() == pytest.approx(1 / math.sqrt(6), rel=1e-6)


def test_norm_in_norm_p2_q2_is_one_minus_plcc_over_two():
    # unit vectors: ||yhat'' - y''||^2 = 2 - 2 rho, scale 2: l = (1 - rho) / 2; l' = (1 - rho^2) / 4
    assert norm_loss_with_normalization(B_PRED, B_MOS, alpha=(1, 0)).item() == pytest.approx(0.1, rel=1e-6)
    assert norm_loss_with_normalization(B_PRED, B_MOS, alpha=(0, 1)).item() == pytest.approx(0.09, rel=1e-6)
    assert norm_loss_with_normalization(B_PRED, B_MOS, alpha=(1, 1)).item() == pytest.approx(0.095, rel=1e-6)
    assert norm_loss_with_normalization(B_PRED, B_MOS, alpha=(3, 1)).item() == pytest.approx(0.0975, rel=1e-6)


def test_norm_in_norm_without_exponent_is_the_normalized_norm():
    loss = norm_loss_with_normalization(B_PRED, B_MOS, alpha=(1, 0), p=2, q=2, exponent=False)
    assert loss.item() == pytest.approx(math.sqrt(0.1), rel=1e-6)


@pytest.mark.parametrize("p, q", [(1, 2), (2, 2), (1, 1), (2, 1), (0.5, 2), (3, 1.5)])
@pytest.mark.parametrize("alpha", [(1, 0), (0, 1), (1, 0.1)])
def test_norm_in_norm_ignores_scale_and_shift_of_predictions(p, q, alpha):
    torch.manual_seed(0)
    y_pred, y = torch.randn(16, 1, dtype=torch.float64), torch.rand(16, 1, dtype=torch.float64) * 100
    reference = norm_loss_with_normalization(y_pred, y, alpha=alpha, p=p, q=q)
    for k, b in ((3.0, 0.0), (0.01, -40.0), (250.0, 7.5)):
        moved = norm_loss_with_normalization(k * y_pred + b, y, alpha=alpha, p=p, q=q)
        assert moved.item() == pytest.approx(reference.item(), rel=1e-6)
    flipped = norm_loss_with_normalization(-y_pred, y, alpha=alpha, p=p, q=q)
    if alpha[0] > 0:  # a negative scale reverses the ranking and l does not forgive it
        assert flipped > reference
    else:  # l' does: rho changes sign with yhat'', so rho * yhat'' stays the same
        assert flipped.item() == pytest.approx(reference.item(), rel=1e-6)


@pytest.mark.parametrize("p, q", [(1, 2), (2, 2), (1, 1), (3, 1.5), (2, 4)])
def test_norm_in_norm_lies_in_zero_one(p, q):
    # the paper's bound needs the triangle inequality, so p >= 1 (below 1 the p-"norm" is not a norm)
    torch.manual_seed(1)
    for _ in range(20):
        y_pred, y = torch.randn(8, 1, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
        assert 0 <= norm_loss_with_normalization(y_pred, y, alpha=(1, 0), p=p, q=q) <= 1
    # the bound is met at yhat = -y when p = q = 2: (1 - (-1)) / 2
    assert norm_loss_with_normalization(-B_MOS, B_MOS, alpha=(1, 0)).item() == pytest.approx(1, rel=1e-6)
    assert norm_loss_with_normalization(3 * B_MOS + 1, B_MOS, alpha=(1, 0), p=p, q=q) < 1e-6


def test_linearity_induced_loss_is_plcc_based():
    # z-scores with population std: mse / 4 = (1 - rho) / 2; variant (1 - rho^2) / 4
    assert linearity_induced_loss(B_PRED, B_MOS, alpha=(1, 0)).item() == pytest.approx(0.1, rel=1e-6)
    assert linearity_induced_loss(B_PRED, B_MOS, alpha=(0, 1)).item() == pytest.approx(0.09, rel=1e-6)


def test_min_max_normalization_by_hand():
    # [0, .5, 1] against [0, 1, .5]: mse = 0.5 / 3; rho = 1 / 1.25 = 0.8: [0, .4, .8] - y: mse = 0.45 / 3
    assert norm_loss_with_min_max_normalization(A_PRED, A_MOS, alpha=(1, 0)).item() == pytest.approx(1 / 6)
    assert norm_loss_with_min_max_normalization(A_PRED, A_MOS, alpha=(0, 1)).item() == pytest.approx(0.15)


def test_mean_normalization_by_hand():
    # [-.5, 0, .5] against [-.5, .5, 0]: mse / 4 = 1/24; rho = 0.25 / 0.5: mse([.25, -.5, .25]) / 4 = 1/32
    assert norm_loss_with_mean_normalization(A_PRED, A_MOS, alpha=(1, 0)).item() == pytest.approx(1 / 24)
    assert norm_loss_with_mean_normalization(A_PRED, A_MOS, alpha=(0, 1)).item() == pytest.approx(1 / 32)


def test_scaling_by_hand():
    # [3, 4] -> [.6, .8] against [4, 3] -> [.8, .6]: mse / 4 = 0.01; rho = 0.96: mse([-.224, .168]) / 4 = 0.0098
    y_pred, y = column(3, 4), column(4, 3)
    assert norm_loss_with_scaling(y_pred, y, alpha=(1, 0)).item() == pytest.approx(0.01, rel=1e-5)
    assert norm_loss_with_scaling(y_pred, y, alpha=(0, 1)).item() == pytest.approx(0.0098, rel=1e-5)
    # with p = 1: [3/7, 4/7] against [4/7, 3/7]: mse = 1/49, / 4
    assert norm_loss_with_scaling(y_pred, y, alpha=(1, 0), p=1).item() == pytest.approx(1 / 196, rel=1e-5)


def test_monotonicity_regularization_by_hand():
    # only the pair (1, 2) is ranked against the scores, in both orders, each by a margin of 1:
    # sum(M) = 2, max(M) = 1: R = 2 / 3 / 2 / (1 + 1)
    assert monotonicity_regularization(A_PRED, A_MOS).item() == pytest.approx(1 / 6)
    assert monotonicity_regularization(A_MOS * 5, A_MOS).item() == 0
    # ties in y give sign 0: no penalty whatever the predictions
    assert monotonicity_regularization(A_PRED, column(1, 1, 1)).item() == 0


LOSS_FUNCTIONS = [
    lambda yp, y: norm_loss_with_normalization(yp, y, alpha=(1, 0), p=1, q=2),
    lambda yp, y: norm_loss_with_normalization(yp, y, alpha=(1, 1), p=2, q=2),
    lambda yp, y: norm_loss_with_normalization(yp, y, alpha=(0, 1), p=0.5, q=1.5),
    lambda yp, y: linearity_induced_loss(yp, y, alpha=(1, 1)),
    lambda yp, y: norm_loss_with_min_max_normalization(yp, y, alpha=(1, 1)),
    lambda yp, y: norm_loss_with_mean_normalization(yp, y, alpha=(1, 1)),
    lambda yp, y: norm_loss_with_scaling(yp, y, alpha=(1, 1), p=3),
    lambda yp, y: monotonicity_regularization(yp, y),
]
LOSS_NAMES = ["nin-p1q2", "nin-p2q2-both", "nin-p0.5q1.5-variant", "linearity", "min-max", "mean", "scaling-p3", "mono"]


@pytest.mark.parametrize("loss", LOSS_FUNCTIONS, ids=LOSS_NAMES)
def test_gradients_match_finite_differences(loss):
    torch.manual_seed(2)
    y_pred = torch.randn(6, 1, dtype=torch.float64, requires_grad=True)
    y = torch.rand(6, 1, dtype=torch.float64) * 100
    assert torch.autograd.gradcheck(lambda yp: loss(yp, y), (y_pred,))


def test_detach_treats_the_statistics_of_predictions_as_constants():
    torch.manual_seed(3)
    y_pred = torch.randn(5, 1, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 1, dtype=torch.float64)
    norm_loss_with_normalization(y_pred, y, alpha=(1, 0), p=1, q=2, detach=True).backward()
    # the same loss written with the mean and the norm as plain numbers
    constant = y_pred.detach()
    mean = constant.mean().item()
    norm = torch.linalg.vector_norm(constant - mean).item()
    by_hand = y_pred.detach().clone().requires_grad_()
    target = (y - y.mean()) / (1e-8 + torch.linalg.vector_norm(y - y.mean()))
    (torch.linalg.vector_norm((by_hand - mean) / (1e-8 + norm) - target, ord=1) / (2 * 5**0.5)).backward()
    assert torch.allclose(y_pred.grad, by_hand.grad)
    # without detach the gradient is another one: it is orthogonal to shifts of yhat
    free = y_pred.detach().clone().requires_grad_()
    norm_loss_with_normalization(free, y, alpha=(1, 0), p=1, q=2).backward()
    assert not torch.allclose(free.grad, by_hand.grad)
    assert free.grad.sum().item() == pytest.approx(0, abs=1e-12)


def test_detach_makes_the_monotonicity_scale_a_constant():
    torch.manual_seed(5)
    y_pred = torch.randn(5, 1, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 1, dtype=torch.float64)
    monotonicity_regularization(y_pred, y, detach=True).backward()
    by_hand = y_pred.detach().clone().requires_grad_()
    misranking = torch.relu((by_hand - by_hand.t()) * torch.sign(y.t() - y))
    (misranking.sum() / 5 / 4 / (1 + misranking.max().item())).backward()
    assert torch.allclose(y_pred.grad, by_hand.grad)


@pytest.mark.parametrize("loss_type", IQAloss.LOSS_TYPES)
@pytest.mark.parametrize("regularize", [False, True])
def test_a_batch_of_one_gives_zero_loss_that_backpropagates(loss_type, regularize):
    y_pred = [torch.tensor([[0.3]], requires_grad=True) for _ in range(3)]
    loss = IQALoss(loss_type=loss_type, monotonicity_regularization=regularize)(
        y_pred, (torch.tensor([50.0]), torch.tensor([1.0]))
    )
    if loss_type in ("mae", "mse"):  # plain distances need no batch statistics
        assert loss.item() > 0
    else:
        assert loss.item() == 0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in y_pred)


def test_iqa_loss_weighs_the_three_heads_with_beta():
    mos = torch.tensor([1.0, 2.0])
    y_pred = [column(2, 3), column(4, 5), column(1.5, 2.5)]  # errors 1, 3 and 0.5
    loss = IQALoss(loss_type="mae", beta=(0.1, 0.2, 1))(y_pred, (mos, torch.zeros(2)))
    assert loss.item() == pytest.approx(0.1 * 1 + 0.2 * 3 + 1 * 0.5)
    loss = IQALoss(loss_type="mse", beta=(0, 1, 0))(y_pred, (mos, torch.zeros(2)))
    assert loss.item() == pytest.approx(9)


def test_iqa_loss_defaults_are_the_papers():
    loss = IQALoss()
    assert (loss.loss_type, loss.alpha, loss.beta, loss.p, loss.q) == ("norm-in-norm", (1, 0), (0.1, 0.1, 1), 1, 2)
    assert (loss.monotonicity_regularization, loss.gamma, loss.detach) == (False, 0.1, False)
    # A_PRED on every head: (0.1 + 0.1 + 1) times the p = 1, q = 2 value derived above
    value = loss([A_PRED] * 3, (A_MOS.view(-1), torch.zeros(3)))
    assert value.item() == pytest.approx(1.2 / math.sqrt(6), rel=1e-6)


def test_lp_is_the_paper_readme_name_of_norm_in_norm():
    heads = [B_PRED, A_PRED.repeat(2, 1)[:4], B_MOS]
    y = (column(4, 1, 3, 2).view(-1), torch.zeros(4))
    assert IQALoss(loss_type="Lp")(heads, y).item() == IQALoss(loss_type="norm-in-norm")(heads, y).item()
    assert IQALoss(loss_type="Lp").loss_type == "norm-in-norm"


def test_l1_is_the_paper_code_name_of_mae():
    # the paper's results_in_the_paper commands train MAE with --loss_type l1; |4-3| + |1-1| + |3-5| over 3
    y = (column(3, 1, 5).view(-1), torch.zeros(3))
    value = IQALoss(loss_type="l1", beta=(0, 0, 1))([column(4, 1, 3)] * 3, y)
    assert IQALoss(loss_type="l1").loss_type == "mae"
    assert value.item() == pytest.approx(1.0)


def test_monotonicity_regularization_adds_gamma_times_r_per_head():
    y = (A_MOS.view(-1), torch.zeros(3))
    plain = IQALoss(loss_type="mse", beta=(0, 0, 1))([A_PRED] * 3, y).item()
    regularized = IQALoss(loss_type="mse", beta=(0, 0, 1), monotonicity_regularization=True, gamma=0.5)
    assert regularized([A_PRED] * 3, y).item() == pytest.approx(plain + 0.5 / 6)


def test_scores_as_a_flat_vector_do_not_broadcast():
    # mos of shape (N,) against predictions of N x 1 must compare sample by sample, not N x N
    y_pred = column(1, 2, 3)
    assert IQALoss(loss_type="mse", beta=(0, 0, 1))(
        [y_pred] * 3, torch.tensor([1.0, 2.0, 4.0])
    ).item() == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match="predictions \\(3 values\\) and scores \\(2 values\\)"):
        norm_loss_with_normalization(y_pred, torch.tensor([1.0, 2.0]))


def test_half_precision_predictions_give_a_float32_loss():
    torch.manual_seed(4)
    y_pred = [torch.randn(8, 1).half().requires_grad_() for _ in range(3)]
    mos = torch.rand(8) * 100
    loss = IQALoss()(y_pred, (mos, torch.ones(8)))
    expected = IQALoss()([p.float() for p in y_pred], (mos, torch.ones(8)))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert y_pred[0].grad.dtype == torch.float16


@pytest.mark.parametrize(
    "options, message",
    [
        ({"loss_type": "l2"}, "unknown loss_type 'l2'"),
        ({"alpha": (1,)}, "alpha must be 2 non-negative numbers"),
        ({"alpha": (0, 0)}, "alpha must be 2 non-negative numbers, not all 0"),
        ({"beta": (1, -1, 1)}, "beta must be 3 non-negative numbers"),
        ({"q": 0}, "p and q must be above 0"),
    ],
)
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        IQALoss(**options)
