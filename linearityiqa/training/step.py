"""The training step and what it needs: seeds, the optimizer and its learning-rate schedule.

As in ignite's examples, main.py's `training()` calls these small helpers, which take explicit
arguments and never an argparse namespace.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch
from ignite.engine import Engine, Events

from IQAmodel import IQAModel
from linearityiqa.acceleration import Precision, batch_preparation, forward_fn
from linearityiqa.errors import TrainingDiverged


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_step_size(
    epochs: int, lr_decay: float, overall_lr_decay: float, *, report: Callable[[str], None] | None = None
) -> int:
    """Epochs between learning-rate decays, so that the run decays by about overall_lr_decay in all.

    With the defaults (30 epochs, lr_decay 0.1, overall 0.01) the rate drops at epochs 10 and 20.
    More decays than epochs (lr_decay 0.9 over 3 epochs) would round the step to 0 epochs, which
    no schedule can take: it is raised to 1, a decay after every epoch, and `report` says so.
    """
    if lr_decay == 1 or epochs < 3:
        return epochs
    step = int(epochs / (1 + math.log(overall_lr_decay) / math.log(lr_decay)))
    if step < 1 and report is not None:
        report(
            f"note: {epochs} epochs are too few for an overall decay of {overall_lr_decay:g} in steps of "
            f"{lr_decay:g}: the learning rate decays after every epoch, to {lr_decay ** (epochs - 1):.3g} "
            f"of its start in the last"
        )
    return max(step, 1)


def create_optimizer(model: IQAModel, *, lr: float, ft_lr_ratio: float, weight_decay: float) -> torch.optim.Adam:
    """Adam with the paper's six parameter groups: five heads at lr, the backbone at lr * ft_lr_ratio.

    With ft_lr_ratio 0 the backbone's weights are frozen (no gradients are computed for them);
    its BatchNorm statistics still follow the data in training mode, as in the paper's code.
    """
    if ft_lr_ratio == 0:
        model.features.requires_grad_(False)
    heads = (model.regression, model.dr6, model.dr7, model.regr6, model.regr7)
    groups = [{"params": list(head.parameters())} for head in heads]
    groups.append({"params": list(model.features.parameters()), "lr": lr * ft_lr_ratio})
    # On CUDA one fused kernel updates all parameters: the same Adam, without a launch per tensor.
    fused = next(model.parameters()).is_cuda
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, fused=fused or None)


class TrainingStep:
    """ignite's process function of a training iteration; its output is the batch's loss.

    It does what ignite's supervised step does (float16 loss scaling, gradient accumulation over
    `accumulation_steps` batches) and looks at the loss before its backward pass: a NaN or
    infinite loss raises TrainingDiverged before any weight changes, or with `skip_nonfinite`
    gives no gradient and is listed in `skipped`. The loss of GlobalBatchLoss is the same in
    every process, so all processes skip the same steps and DistributedDataParallel stays in step.

    Args:
        model, optimizer, loss_fn: what is trained, how, and on what loss.
        device: where the batches go.
        precision: the autocast and loss scaler.
        accumulation_steps: batches per optimizer step.
        channels_last: give the model channels_last batches.
        skip_nonfinite: skip a step of a non-finite loss instead of stopping.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable,
        *,
        device: torch.device,
        precision: Precision,
        accumulation_steps: int,
        channels_last: bool = False,
        skip_nonfinite: bool = False,
    ):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.device, self.scaler, self.accumulation_steps = device, precision.scaler, accumulation_steps
        self.forward = forward_fn(precision, device)
        self.prepare = batch_preparation(channels_last)
        self.skip_nonfinite = skip_nonfinite
        self.skipped: list[int] = []
        self._gradients = 0  # batches whose gradients the next optimizer step holds

    def __call__(self, engine: Engine, batch: Sequence[Any]) -> float:
        iteration = engine.state.iteration
        if (iteration - 1) % self.accumulation_steps == 0:
            self.optimizer.zero_grad()
            self._gradients = 0
        self.model.train()
        images, targets = self.prepare(batch, self.device, non_blocking=True)
        loss = self.loss_fn(self.forward(self.model, images), targets)
        value = loss.item()
        if math.isfinite(value):
            self._backward(loss / self.accumulation_steps if self.accumulation_steps > 1 else loss)
        elif self.skip_nonfinite and _finite_buffers(self.model):
            self.skipped.append(iteration)
        else:
            raise TrainingDiverged(_diverged(value, iteration, engine.state.epoch, self.skip_nonfinite))
        # an accumulation whose batches were all skipped has no gradient (zero_grad made them None):
        # there is nothing to step, and GradScaler refuses such a step
        if iteration % self.accumulation_steps == 0 and self._gradients:
            self._step()
        return value

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        self._gradients += 1

    def _step(self) -> None:
        if self.scaler is None:
            self.optimizer.step()
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()


def _finite_buffers(model: torch.nn.Module) -> bool:
    """Whether BatchNorm's running statistics are still finite: the forward pass of a skipped
    step updated them, and NaN there cannot be skipped."""
    return all(torch.isfinite(buffer).all() for buffer in model.buffers() if buffer.is_floating_point())


def _diverged(loss: float, iteration: int, epoch: int, skipping: bool) -> str:
    where = f"the loss is {loss} at iteration {iteration} (epoch {epoch})"
    if skipping:
        return (
            f"{where} and it made the BatchNorm statistics NaN, so the step cannot be skipped: lower the "
            f"learning rate or use --opt_level O0; the best checkpoint so far is kept"
        )
    return (
        f"{where}: lower the learning rate, use --opt_level O0, or skip such steps with --skip_nonfinite; "
        f"the best checkpoint so far is kept"
    )


def create_trainer(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    *,
    device: torch.device,
    precision: Precision,
    accumulation_steps: int,
    channels_last: bool = False,
    skip_nonfinite: bool = False,
    report: Callable[[str], None] = print,
) -> Engine:
    """A trainer of TrainingStep (see there). With `skip_nonfinite`, each epoch's skipped steps are
    reported, and an epoch whose every step was skipped stops the run, which learns nothing more.

    Batches arrive as uint8 and are normalized on `device` (acceleration.batch_preparation).
    """
    step = TrainingStep(
        model,
        optimizer,
        loss_fn,
        device=device,
        precision=precision,
        accumulation_steps=accumulation_steps,
        channels_last=channels_last,
        skip_nonfinite=skip_nonfinite,
    )
    trainer = Engine(step)

    @trainer.on(Events.EPOCH_COMPLETED)
    def report_skipped(engine: Engine) -> None:
        skipped, epoch = list(step.skipped), engine.state.epoch
        step.skipped.clear()
        if not skipped:
            return
        if len(skipped) == engine.state.epoch_length:
            raise TrainingDiverged(
                f"the loss was not finite at any step of epoch {epoch}: lower the learning "
                f"rate or use --opt_level O0; the best checkpoint so far is kept"
            )
        report(
            f"epoch {epoch}: skipped {len(skipped)} step(s) of a non-finite loss, at iteration(s) "
            f"{', '.join(map(str, skipped))}"
        )

    return trainer
