"""main.py's train_step (with training/handlers.py): ignite's supervised step (loss scaling,
gradient accumulation), which looks at the loss before its backward pass: a NaN loss stops the
run before any weight changes, or with skip_nonfinite gives no gradient and no optimizer step."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events, create_supervised_trainer

import main as T
from IQAloss import IQALoss
from IQAmodel import IQAModel
from linearityiqa import acceleration as A
from linearityiqa.errors import TrainingDiverged

pytestmark = pytest.mark.reliability

CPU = torch.device("cpu")


def batch(seed, *, nan=False, count=4):
    """Images and scores; a NaN score makes the loss NaN, as a corrupt label file would."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, 48, 48), dtype=torch.uint8, generator=generator)
    mos = torch.rand(count, generator=generator) * 100
    if nan:
        mos[1] = float("nan")
    return images, (mos, torch.ones(count))


def setup(seed=0):
    torch.manual_seed(seed)
    model = IQAModel(arch="resnet18", pretrained=False)
    return model, T.create_optimizer(model, lr=1e-3, ft_lr_ratio=1, weight_decay=0)


def train(batches, *, accumulation_steps=1, skip_nonfinite=False, precision=None, report=print):
    model, optimizer = setup()
    trainer = T.create_trainer(
        model,
        optimizer,
        IQALoss(),
        device=CPU,
        precision=precision or A.Precision("float32"),
        accumulation_steps=accumulation_steps,
        skip_nonfinite=skip_nonfinite,
        report=report,
    )
    trainer.run(batches, max_epochs=1)
    return model, optimizer


def parameters(model):
    return {name: value.detach().clone() for name, value in model.named_parameters()}


def assert_same(first, second):
    assert first.keys() == second.keys()
    for name, value in first.items():
        assert torch.equal(value, second[name]), name


def test_with_finite_losses_it_takes_the_steps_of_ignites_supervised_trainer():
    batches = [batch(seed) for seed in range(5)]  # two steps of two batches; the fifth is left over
    ours, _ = train(batches, accumulation_steps=2)
    model, optimizer = setup()
    theirs = create_supervised_trainer(
        model, optimizer, IQALoss(), device=CPU, gradient_accumulation_steps=2, prepare_batch=A.batch_preparation(False)
    )
    theirs.run(batches, max_epochs=1)
    assert_same(parameters(ours), parameters(model))
    for name, value in model.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name


def test_loss_scaling_takes_the_step_of_float32():
    """GradScaler multiplies by a power of two and divides it out: the same step, exactly."""
    scaled, _ = train([batch(0), batch(1)], precision=A.Precision("scaled", None, torch.amp.GradScaler("cpu")))
    plain, _ = train([batch(0), batch(1)])
    assert_same(parameters(scaled), parameters(plain))


def test_a_nan_loss_stops_before_any_weight_or_optimizer_state_changes():
    model, optimizer = setup()
    trainer = T.create_trainer(
        model, optimizer, IQALoss(), device=CPU, precision=A.Precision("float32"), accumulation_steps=1
    )
    after_step = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda engine: after_step.append((parameters(model), optimizer.state_dict()["state"][0]["step"].item())),
    )
    with pytest.raises(TrainingDiverged, match=r"the loss is nan at iteration 2 \(epoch 1\): .*--skip_nonfinite"):
        trainer.run([batch(0), batch(1, nan=True), batch(2)], max_epochs=1)
    [(before, adam_steps)] = after_step
    assert_same(parameters(model), before)
    assert optimizer.state_dict()["state"][0]["step"].item() == adam_steps == 1


def test_a_skipped_step_leaves_the_weights_as_if_its_batch_were_not_there():
    reports = []
    skipping, adam = train([batch(0), batch(1, nan=True), batch(2)], skip_nonfinite=True, report=reports.append)
    without, plain_adam = train([batch(0), batch(2)])
    assert_same(parameters(skipping), parameters(without))
    assert adam.state_dict()["state"][0]["step"] == plain_adam.state_dict()["state"][0]["step"] == 2
    assert reports == ["epoch 1: skipped 1 step(s) of a non-finite loss, at iteration(s) 2"]


@pytest.mark.parametrize("scaler", [None, torch.amp.GradScaler("cpu")], ids=["float32", "loss scaling"])
def test_with_accumulation_a_skipped_batch_adds_no_gradient_and_an_empty_step_is_not_taken(scaler):
    skipping, adam = train(
        [batch(0, nan=True), batch(1), batch(2, nan=True), batch(3, nan=True)],
        accumulation_steps=2,
        skip_nonfinite=True,
        report=lambda line: None,
        precision=A.Precision("float32", None, scaler),
    )
    model, optimizer = setup()
    model.train()
    images, targets = A.batch_preparation(False)(batch(1), CPU)
    (IQALoss()(model(images), targets) / 2).backward()  # the divisor stays the accumulation's length
    optimizer.step()
    assert_same(parameters(skipping), parameters(model))
    assert adam.state_dict()["state"][0]["step"] == 1  # the second accumulation had no gradient: no step


def test_an_epoch_whose_every_step_is_skipped_stops_the_run():
    with pytest.raises(TrainingDiverged, match="the loss was not finite at any step of epoch 1"):
        train([batch(0, nan=True), batch(1, nan=True)], skip_nonfinite=True)


def test_a_skip_that_would_leave_nan_in_the_batchnorm_statistics_stops_the_run():
    model, optimizer = setup()
    images, targets = A.batch_preparation(False)(batch(0), CPU)
    poisoned = (images.float() * float("nan"), targets)  # NaN reaches the BatchNorm layers themselves
    trainer = T.create_trainer(
        model,
        optimizer,
        IQALoss(),
        device=CPU,
        precision=A.Precision("float32"),
        accumulation_steps=1,
        skip_nonfinite=True,
    )
    with pytest.raises(TrainingDiverged, match="made the BatchNorm statistics NaN, so the step cannot be skipped"):
        trainer.run([batch(1), poisoned], max_epochs=1)
