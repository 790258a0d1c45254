"""What a training step does with a loss that is NaN or infinite: main.py's step asks
`NonFiniteLosses.admits` before its backward pass.

By default such a loss stops the run (TrainingDiverged) before any weight changes. With
--skip_nonfinite its batch gives no gradient and is reported at the end of its epoch; an
epoch whose every step was skipped stops the run, which learns nothing more. Under
GlobalBatchLoss the loss is the same in every process, so all of them skip the same steps and
DistributedDataParallel stays in step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from ignite.engine import Engine, Events

from linearityiqa.errors import TrainingDiverged


class NonFiniteLosses:
    """The policy for non-finite losses of one trainer.

    Args:
        model: the model trained, whose BatchNorm statistics a skipped step must leave finite.
        skip: skip the step of a non-finite loss instead of stopping (--skip_nonfinite).
        report: where each epoch's skipped steps are said.
    """

    def __init__(self, model: torch.nn.Module, *, skip: bool, report: Callable[[str], None]):
        self.model, self.skip, self.report = model, skip, report
        self.skipped: list[int] = []

    def admits(self, loss: float, engine: Engine) -> bool:
        """Whether the step may go backward from `loss`; False for a step to skip; raises
        TrainingDiverged for a loss that stops the run."""
        if math.isfinite(loss):
            return True
        if self.skip and _finite_buffers(self.model):
            self.skipped.append(engine.state.iteration)
            return False
        raise TrainingDiverged(_diverged(loss, engine.state.iteration, engine.state.epoch, self.skip))

    def attach(self, trainer: Engine) -> None:
        """Report each epoch's skipped steps after it, and stop a run whose whole epoch was skipped."""
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._report_epoch)

    def _report_epoch(self, engine: Engine) -> None:
        skipped, epoch = list(self.skipped), engine.state.epoch
        self.skipped.clear()
        if not skipped:
            return
        if len(skipped) == engine.state.epoch_length:
            raise TrainingDiverged(
                f"the loss was not finite at any step of epoch {epoch}: lower the learning "
                f"rate or use --opt_level O0; the best checkpoint so far is kept"
            )
        self.report(
            f"epoch {epoch}: skipped {len(skipped)} step(s) of a non-finite loss, at iteration(s) "
            f"{', '.join(map(str, skipped))}"
        )


def has_gradients(optimizer: torch.optim.Optimizer) -> bool:
    """Whether any parameter holds a gradient: an accumulation whose batches were all skipped
    has none (zero_grad made them None), so there is nothing to step, and GradScaler refuses such a step."""
    return any(p.grad is not None for group in optimizer.param_groups for p in group["params"])


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
