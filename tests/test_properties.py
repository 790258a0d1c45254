"""Properties of the losses and the metrics over generated batches (hypothesis): finite values
and gradients for any finite batch, constant ones included; the invariances norm-in-norm is
built on; its bound; correlations within [-1, 1] and their invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from IQAloss import LOSS_TYPES, IQALoss, norm_loss_with_normalization
from IQAperformance import correlations

pytestmark = pytest.mark.reliability

# derandomize: CI tries the same examples every run, so a red run is reproducible
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FINITE = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def batches(draw, min_size=2, max_size=16, constants=True):
    """(predictions, scores) of one batch; with `constants`, either may be constant."""
    size = draw(st.integers(min_size, max_size))
    column = st.lists(FINITE, min_size=size, max_size=size)
    constant = st.builds(lambda value: [value] * size, FINITE)
    predictions = draw(st.one_of(column, constant) if constants else column)
    scores = draw(st.one_of(column, constant) if constants else column)
    return (
        torch.tensor(predictions, dtype=torch.float64).view(-1, 1),
        torch.tensor(scores, dtype=torch.float64).view(-1, 1),
    )


def _spread(values: torch.Tensor) -> bool:
    """Far enough from constant that the eps of the normalizations does not matter."""
    return float(values.max() - values.min()) > 1e-2 * max(1.0, float(values.abs().max()))


@PROPERTY
@given(
    batch=batches(),
    loss_type=st.sampled_from(LOSS_TYPES),
    p=st.sampled_from([1, 2]),
    q=st.sampled_from([1, 2]),
    regularized=st.booleans(),
)
def test_every_loss_is_finite_with_finite_gradients(batch, loss_type, p, q, regularized):
    predictions, scores = batch
    predictions = predictions.clone().requires_grad_(True)
    loss = IQALoss(loss_type=loss_type, p=p, q=q, alpha=(1, 0.1), monotonicity_regularization=regularized)
    value = loss([predictions] * 3, (scores.view(-1), torch.zeros(len(scores))))
    value.backward()
    assert math.isfinite(value.item())
    assert torch.isfinite(predictions.grad).all()


@PROPERTY
@given(
    batch=batches(min_size=3, constants=False),
    p=st.sampled_from([1, 2]),
    q=st.sampled_from([1, 2]),
    scale=st.floats(0.01, 100),
    shift=st.floats(-100, 100),
)
def test_norm_in_norm_ignores_the_scale_and_offset_of_predictions_and_scores(batch, p, q, scale, shift):
    predictions, scores = batch
    assume(_spread(predictions) and _spread(scores))
    reference = norm_loss_with_normalization(predictions, scores, alpha=(1, 1), p=p, q=q).item()
    moved = norm_loss_with_normalization(scale * predictions + shift, scores, alpha=(1, 1), p=p, q=q).item()
    rescored = norm_loss_with_normalization(predictions, scale * scores + shift, alpha=(1, 1), p=p, q=q).item()
    # in float64, where moving and scaling change the loss only by the normalizations' eps
    assert moved == pytest.approx(reference, abs=1e-6)
    assert rescored == pytest.approx(reference, abs=1e-6)


@PROPERTY
@given(batch=batches(), p=st.sampled_from([1, 2]), q=st.sampled_from([1, 2]), alpha=st.sampled_from([(1, 0), (0, 1)]))
def test_norm_in_norm_lies_in_0_1(batch, p, q, alpha):
    # the normalized vectors are unit q-norm, so their difference has p-norm at most
    # 2 * N ** max(0, 1/p - 1/q), which the scale divides out: 0 <= loss <= 1
    value = norm_loss_with_normalization(*batch, alpha=alpha, p=p, q=q).item()
    assert -1e-9 <= value <= 1 + 1e-6


@PROPERTY
@given(batch=batches(min_size=3, constants=False))
def test_norm_in_norm_with_p_q_2_is_half_of_one_minus_plcc(batch):
    # unit a, b (the normalized predictions and scores): (|a - b| / 2) ** 2 = (2 - 2 a.b) / 4,
    # and a.b of centred vectors is their PLCC
    predictions, scores = batch
    assume(_spread(predictions) and _spread(scores))
    plcc = np.corrcoef(predictions.view(-1).numpy(), scores.view(-1).numpy())[0, 1]
    value = norm_loss_with_normalization(predictions, scores, alpha=(1, 0), p=2, q=2).item()
    assert value == pytest.approx((1 - plcc) / 2, abs=1e-6)


@st.composite
def score_pairs(draw):
    size = draw(st.integers(3, 40))
    column = st.lists(FINITE, min_size=size, max_size=size)
    return np.array(draw(column), dtype=np.float64), np.array(draw(column), dtype=np.float64)


@PROPERTY
@given(pair=score_pairs(), scale=st.floats(0.01, 100), shift=st.floats(-100, 100))
def test_correlations_lie_in_minus_1_1_and_keep_their_invariances(pair, scale, shift):
    scores, predictions = pair
    assume(np.ptp(scores) > 1e-3 and np.ptp(predictions) > 1e-3)
    metrics = correlations(scores, predictions)
    for name in ("SROCC", "KROCC", "PLCC"):
        assert -1 - 1e-12 <= metrics[name] <= 1 + 1e-12
    assert metrics["RMSE"] >= 0
    moved = correlations(scores, scale * predictions + shift)
    assert moved["PLCC"] == pytest.approx(metrics["PLCC"], abs=1e-6)
    # a strictly increasing map keeps the ranks
    assert correlations(scores, np.arctan(predictions / 100))["SROCC"] == pytest.approx(metrics["SROCC"], abs=1e-9)
