"""main.py's training step on the GPU against float32 on the CPU: each --opt_level, the NaN stop
and --skip_nonfinite under a real GradScaler, fused Adam, channels_last and --compile."""

from __future__ import annotations

import math

import pytest
import torch
from gpu_helpers import (
    LR,
    Trained,
    batches,
    cosine,
    exact_float32,
    fresh_model,
    parameters,
    precision_for,
    train,
    updates,
)

from linearityiqa.acceleration import Precision, choose_precision, compile_model, cudnn_mode
from linearityiqa.errors import TrainingDiverged
from main import create_optimizer

CPU = torch.device("cpu")
# How close each precision's three steps come to float32's. float16 and TF32 (which cuDNN's float32
# convolutions use by default on a GPU) keep 11 bits of each number, bfloat16 8: losses within a
# few parts in a hundred, gradients pointing the same way with the same size. Adam moves a weight
# by about LR whatever the size of its gradient, so the sign of gradients near 0 decides how
# theirs move: the updates of three steps agree in direction, not to the digit. (On a 2-core
# CPU, float16 autocast measured 0.5% / 0.994 / 0.995 and bfloat16 2% / 0.946 / 0.92.)
CLOSE = {
    "O0": {"loss": 2e-2, "gradient": 0.98, "update": 0.97},
    "O1": {"loss": 2e-2, "gradient": 0.98, "update": 0.97},
    "bf16": {"loss": 5e-2, "gradient": 0.9, "update": 0.85},
}
# float16 loss scaling starts at 2**16 (as apex's did) and skips the first steps until the scale
# fits (test_gradscaler_skips_...). To compare steps, the comparison starts at a scale that fits.
FITTING_SCALE = 2.0**8


@pytest.fixture(scope="module")
def float32_on_the_cpu():
    """The reference: three steps in float32 on the CPU."""
    model = fresh_model(CPU)
    return parameters(model), train(model, batches(3), device=CPU, precision=Precision("float32"))


@pytest.mark.parametrize("opt_level", ["O0", "O1", "bf16"])
def test_each_opt_level_trains_as_float32_does(device, float32_on_the_cpu, opt_level):
    start, reference = float32_on_the_cpu
    precision = precision_for(opt_level, device)
    if precision.scaler is not None:
        precision.scaler = torch.amp.GradScaler(device.type, init_scale=FITTING_SCALE)
    with cudnn_mode(deterministic=True):  # main.py's default
        trained = train(fresh_model(device), batches(3), device=device, precision=precision)
    close = CLOSE[opt_level]
    losses = [abs(ours / theirs - 1) for ours, theirs in zip(trained.losses, reference.losses)]
    direction = cosine(trained.first_gradient, reference.first_gradient)
    size = float(trained.first_gradient.norm() / reference.first_gradient.norm())
    moved = cosine(updates(trained.weights, start), updates(reference.weights, start))
    print(
        f"{opt_level}: loss off by {max(losses):.2e}, gradient cosine {direction:.6f} and size ratio {size:.4f}, "
        f"update cosine {moved:.4f}"
    )
    assert trained.stopped_by is None and len(trained.losses) == 3
    if precision.scaler is not None:  # no step was skipped
        assert precision.scaler.get_scale() >= FITTING_SCALE
    assert max(losses) < close["loss"]
    assert direction > close["gradient"]
    assert size == pytest.approx(1, abs=0.05)  # unscaled before the step
    assert moved > close["update"]


def test_choose_precision_scales_float16_losses_on_the_gpu(device):
    if device.type != "cuda":
        pytest.skip("on the CPU every level is float32 (the dry run builds the GPU's precisions itself)")
    o1, bf16 = choose_precision("O1", device), choose_precision("bf16", device)
    assert o1.autocast_dtype == torch.float16 and isinstance(o1.scaler, torch.amp.GradScaler)
    assert o1.scaler.is_enabled()
    assert bf16.autocast_dtype == torch.bfloat16 and bf16.scaler is None
    assert choose_precision("O0", device).autocast_dtype is None


def test_a_nan_loss_stops_training_before_the_weights_change(device):
    """A NaN MOS makes the second step's loss NaN under float16 autocast and a real GradScaler."""
    with cudnn_mode(deterministic=True):
        stopped = train(fresh_model(device), batches(2, nan_at=1), device=device, precision=precision_for("O1", device))
        first_only = train(fresh_model(device), batches(1), device=device, precision=precision_for("O1", device))
    assert isinstance(stopped.stopped_by, TrainingDiverged)
    assert str(stopped.stopped_by).startswith("the loss is nan at iteration 2 (epoch 1): lower the learning rate")
    assert_same_weights(stopped.weights, first_only.weights)


def test_skip_nonfinite_skips_the_nan_step_and_trains_on(device):
    data = batches(3, nan_at=1)
    with cudnn_mode(deterministic=True):
        skipping = train(
            fresh_model(device), data, device=device, precision=precision_for("O1", device), skip_nonfinite=True
        )
        without = train(fresh_model(device), [data[0], data[2]], device=device, precision=precision_for("O1", device))
    assert skipping.stopped_by is None
    assert skipping.reports == ["epoch 1: skipped 1 step(s) of a non-finite loss, at iteration(s) 2"]
    assert_same_weights(skipping.weights, without.weights)


def test_gradscaler_skips_an_overflowing_step_itself_and_halves_its_scale(device):
    """A finite loss scaled by 2**60 overflows float16 in the backbone's backward pass: GradScaler
    finds the inf, skips the optimizer step (fused Adam's too) and backs off; it is no skip of ours."""
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**60)
    precision = Precision("float16 autocast with loss scaling", torch.float16, scaler)
    model = fresh_model(device)
    before = parameters(model)
    with cudnn_mode(deterministic=True):
        trained = train(model, batches(1), device=device, precision=precision, skip_nonfinite=True)
    assert trained.stopped_by is None and trained.reports == []
    assert math.isfinite(trained.losses[0])  # the loss was fine: its gradients overflowed
    assert scaler.get_scale() == 2.0**59
    assert_same_weights(trained.weights, before, exactly=True)


def test_fused_adam_takes_the_steps_of_foreach_adam(device):
    fused_model, foreach_model = fresh_model(device), fresh_model(device)
    fused = create_optimizer(fused_model, lr=LR, ft_lr_ratio=0.1, weight_decay=5e-4)
    assert fused.defaults["fused"] is (True if device.type == "cuda" else None)
    foreach = torch.optim.Adam(
        [{"params": list_like(group, foreach_model, fused_model), "lr": group["lr"]} for group in fused.param_groups],
        lr=LR,
        weight_decay=5e-4,
        foreach=True,
    )
    generator = torch.Generator().manual_seed(3)
    for _ in range(3):
        for mine, theirs in zip(fused_model.parameters(), foreach_model.parameters()):
            gradient = torch.randn(mine.shape, generator=generator).to(device)
            mine.grad, theirs.grad = gradient.clone(), gradient.clone()
        fused.step()
        foreach.step()
    for (name, mine), theirs in zip(fused_model.named_parameters(), foreach_model.parameters()):
        # one kernel and a loop of kernels may round the update (about LR a step) in other orders:
        # a thousandth of a step apart, or float32's spacing of the weight itself
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=LR * 1e-3, msg=name)


def list_like(group: dict, model: torch.nn.Module, like: torch.nn.Module) -> list[torch.Tensor]:
    """The parameters of `model` that sit where `group`'s parameters sit in `like`."""
    position = {id(p): index for index, p in enumerate(like.parameters())}
    ours = list(model.parameters())
    return [ours[position[id(p)]] for p in group["params"]]


def test_channels_last_computes_what_the_plain_layout_computes(device):
    data = batches(2)
    with exact_float32():
        plain = train(fresh_model(device), data, device=device, precision=Precision("float32"))
        last = train(
            fresh_model(device, channels_last=True),
            data,
            device=device,
            precision=Precision("float32"),
            channels_last=True,
        )
    assert_same_steps(last, plain)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_training_follows_eager_training(device, mode):
    """--compile, and --compile reduce-overhead (CUDA graphs on a GPU), against eager, in float32."""
    data = batches(2)
    with exact_float32():
        eager = train(fresh_model(device), data, device=device, precision=Precision("float32"))
        torch._dynamo.reset()
        compiled = train(
            fresh_model(device),
            data,
            device=device,
            precision=Precision("float32"),
            wrap=lambda model: compile_model(model, mode),
        )
    assert compiled.stopped_by is None
    assert_same_steps(compiled, eager)


def assert_same_steps(ours: Trained, theirs: Trained) -> None:
    """Two float32 paths that sum in other orders. The first loss agrees to float32's rounding;
    the gradient only in direction and size: where rounding tips a max pooling or a ReLU the other
    way, a gradient goes to another pixel. Adam's first step then moves each weight by about LR in
    its gradient's sign, so a gradient near 0 may move its weight either way: from then on the
    weights agree in direction. (On a CPU: gradient cosines 0.9999925 and 0.9999997, update
    cosines 0.99965 and 0.99989; 0.995 lets a weight in a hundred move the other way.)"""
    start = parameters(fresh_model(CPU))
    direction = cosine(ours.first_gradient, theirs.first_gradient)
    size = float(ours.first_gradient.norm() / theirs.first_gradient.norm())
    moved = cosine(updates(ours.weights, start), updates(theirs.weights, start))
    print(f"gradient cosine {direction:.7f}, size ratio {size:.6f}, update cosine {moved:.5f}")
    assert ours.losses[0] == pytest.approx(theirs.losses[0], rel=1e-5)
    assert direction > 0.9999 and size == pytest.approx(1, abs=1e-3)
    assert ours.losses[1:] == pytest.approx(theirs.losses[1:], rel=2e-3)
    assert moved > 0.995


def assert_same_weights(ours: dict, theirs: dict, *, exactly: bool = False, atol: float = 1e-6) -> None:
    assert ours.keys() == theirs.keys()
    for name in ours:
        if exactly:
            assert torch.equal(ours[name], theirs[name]), name
        else:
            torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=atol, msg=name)
