"""Training on several processes as if on one: N processes x batch B/N = 1 process x batch B.

The norm-in-norm loss and BatchNorm both take statistics of the whole batch, so each process's share is made global:
the loss gathers every process's predictions and scores, and every BatchNorm pools its sums over all processes. Both
exchanges are differentiable and sum the gradients of all processes in their backward pass; with
DistributedDataParallel's averaging this is exactly the gradient of the whole batch's loss. On CUDA, SyncBatchNorm
does the BatchNorm part; it refuses CPU tensors, so CPU runs (gloo) use `GlobalBatchNorm`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from unittest import mock

import ignite.distributed as idist
import torch
import torch.multiprocessing
from torch import nn
from torch.distributed.nn.functional import all_reduce
from torch.multiprocessing import ProcessExitedException
from torch.utils.data import DataLoader, Sampler

from linearityiqa.acceleration import resolve_device
from linearityiqa.errors import ConfigError, RunFailed

# Recent PyTorch marks the collectives of torch.distributed.nn.functional deprecated; they carry gradients
# in every version this supports (2.4 and later), and their warning would be news to no user.
warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_reduce is deprecated", FutureWarning)


def launch(
    fn: Callable[[int, Any], Any],
    settings: Any,
    *,
    around: Callable[[Any], contextlib.AbstractContextManager],
    processes: int | None,
    device_name: str | None,
    batch_size: int,
) -> int:
    """Run fn(local_rank, settings) inside `around(settings)` (handlers.run_guards) in this process alone,
    in the processes torchrun started, or in `processes` (--nproc_per_node) started here, which share the
    batch of `batch_size`; the exit status, that of a process that exits with one (SystemExit, as `around`
    raises for a user's mistake); one killed is a RunFailed. --device decides between GPUs and CPU processes."""
    spawned = processes is not None and processes > 1
    if spawned and processes > batch_size:  # before starting them all
        raise ConfigError(
            f"--nproc_per_node {processes} processes cannot share a batch of {batch_size} "
            f"images (-bs): use at most {batch_size} processes, or a larger batch"
        )
    try:
        if spawned:
            start_processes(_inside, (fn, settings, around), plan_processes(processes, device_name=device_name))
        elif "WORLD_SIZE" in os.environ:  # started by torchrun: one process per GPU
            backend = "nccl" if torch.cuda.is_available() and device_name != "cpu" else "gloo"
            with _quiet_launcher(), idist.Parallel(backend=backend) as parallel:
                parallel.run(_inside, fn, settings, around)
        else:  # called here, not through _inside: the frames between main.py and the loss stay few
            with around(settings):
                fn(0, settings)
    except SystemExit as ended:
        return int(ended.code or 0)
    except ProcessExitedException as ended:
        if ended.exit_code:  # the process said why before it ended (`around`)
            return ended.exit_code
        raise RunFailed(
            f"a training process was killed ({ended.signal_name or 'no exit status'}); often the memory ran out: "
            f"lower -bs or --num_workers; --resume continues from the last finished epoch"
        ) from None
    return 0


def _inside(local_rank: int, fn: Callable, settings: Any, around: Callable) -> None:
    with around(settings):
        fn(local_rank, settings)


@dataclass(frozen=True)
class ProcessPlan:
    """How many processes of one machine train together, their backend and GPUs (0 for the CPU)."""

    processes: int
    backend: str
    gpus: int


def plan_processes(processes: int, *, device_name: str | None) -> ProcessPlan:
    """NCCL when each process has a GPU of its own; gloo when processes share a GPU (NCCL refuses
    two processes on one GPU) or run on the CPU (--device cpu, or no GPU)."""
    gpus = min(torch.cuda.device_count(), processes) if resolve_device(device_name).type == "cuda" else 0
    return ProcessPlan(processes, "nccl" if gpus == processes else "gloo", gpus)


def start_processes(fn: Callable, args: Sequence, plan: ProcessPlan) -> None:
    """Run fn(local_rank, *args) in `plan.processes` processes (process i on GPU i % plan.gpus) until all
    have ended; torch's ProcessExitedException for one that ended with an exit status. SIGTERM is taken as
    Ctrl-C and stops the processes still running (by default it would end this process alone)."""
    if 0 < plan.gpus < plan.processes:
        print(
            f"note: {plan.processes} processes share {plan.gpus} GPU(s), so gloo carries their "
            f"exchanges (NCCL takes one process per GPU); one process per GPU trains faster",
            flush=True,
        )
    # the processes inherit these as they start
    variables = {} if plan.gpus else {"CUDA_VISIBLE_DEVICES": ""}  # else ignite moves CPU processes onto GPUs
    with _rendezvous() as meeting, mock.patch.dict(os.environ, variables), _sigterm_as_interrupt(), _quiet_launcher():
        try:
            torch.multiprocessing.start_processes(
                _process, args=(fn, tuple(args), plan, meeting), nprocs=plan.processes, start_method="spawn"
            )
        finally:  # SIGTERM to each process still running, then SIGKILL to any that outlives 10 seconds
            running = [process for process in multiprocessing.active_children() if process.is_alive()]
            for process in running:
                process.terminate()
            for process in running:
                process.join(10)
                if process.is_alive():
                    process.kill()
                    process.join()


def _process(rank: int, fn: Callable, args: tuple, plan: ProcessPlan, meeting: str) -> None:
    """One process as idist.Parallel starts one, but on GPU rank % plan.gpus (Parallel's: rank), as GPUs are shared."""
    local_rank = rank % plan.gpus if plan.gpus else rank
    # torchrun's variables, which ignite reads: LOCAL_RANK is the GPU it moves the process to
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(plan.processes), LOCAL_RANK=str(local_rank))
    idist.initialize(plan.backend, init_method=meeting)
    fn(local_rank, *args)
    idist.finalize()


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """Silence ignite's and torch's notes on starting and stopping processes: a mistake stays stderr's one line."""
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    before = logging.root.manager.disable
    logging.disable(logging.INFO)  # ignite's setup_logger sets its own level at each launch
    try:
        yield
    finally:
        logging.disable(before)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
        yield
        return
    before = signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def _rendezvous() -> Iterator[str]:
    """Where the processes meet: MASTER_PORT on this machine if set, else a file of a temporary folder. A port picked
    free beforehand could be taken by another program before the processes bind it; a file cannot."""
    if "MASTER_PORT" in os.environ:
        port = os.environ["MASTER_PORT"]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"MASTER_PORT={port!r} is no port number: unset it, or set it to a free port")
        with mock.patch.dict(os.environ, {"MASTER_ADDR": "127.0.0.1"}):
            yield "env://"
        return
    with tempfile.TemporaryDirectory(prefix="linearityiqa-rendezvous-", ignore_cleanup_errors=True) as folder:
        yield f"file://{os.path.join(folder, 'store')}"


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """The rows of every process (on idist.device()), concatenated in rank order, differentiably: each
    process puts its rows where they go among zeros, and the sum over the processes holds them all
    (exactly: adding zeros rounds nothing); its backward sums every process's gradients of them."""
    if idist.get_world_size() == 1:
        return rows
    counts = [int(c) for c in idist.all_gather(torch.tensor([rows.size(0)], device=rows.device)).tolist()]
    rank = idist.get_rank()
    before, after = (rows.new_zeros((sum(part), *rows.shape[1:])) for part in (counts[:rank], counts[rank + 1 :]))
    return all_reduce(torch.cat((before, rows, after)))


def global_batch_loss(loss: nn.Module) -> nn.Module:
    """`loss` of the whole batch when several processes share it."""
    return GlobalBatchLoss(loss) if idist.get_world_size() > 1 else loss


class GlobalBatchLoss(nn.Module):
    """A batch loss of the whole batch spread over the processes (identical on each of them)."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, y_pred: Sequence[torch.Tensor], y: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.loss([gather_rows(p) for p in y_pred], [gather_rows(t.reshape(-1, 1)).view(-1) for t in y])


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the union of every process's batch; a plain BatchNorm in evaluation. Its
    parameters and buffers are nn.BatchNorm1d/2d's, so checkpoints are those of a single process."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        """Any N x C (x ...) input: it stands for the model's BatchNorm1d and BatchNorm2d alike."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or idist.get_world_size() == 1:
            return super().forward(input)
        dims = [0] + list(range(2, input.dim()))
        count = torch.tensor([input.numel() / input.size(1)], dtype=input.dtype, device=input.device)
        # summed over the processes; its backward sums every process's gradients
        stats = all_reduce(torch.cat((input.sum(dims), (input * input).sum(dims), count)))
        channels = input.size(1)
        total = stats[-1]
        mean = stats[:channels] / total
        var = stats[channels : 2 * channels] / total - mean * mean
        if self.track_running_stats:
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            count = total.item()
            unbiased = var.detach() * count / max(count - 1, 1)
            self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        shape = [1, channels] + [1] * (input.dim() - 2)
        normalized = (input - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return normalized * self.weight.view(shape) + self.bias.view(shape) if self.affine else normalized


def global_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of `model` made global over the processes (the model is changed in place)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            # the same module, its parameters and buffers kept as they are (their dtype: nothing is rounded)
            module.__class__ = GlobalBatchNorm
    return model


class ShardedBatches(Sampler[list[int]]):
    """Each process's share of the global batches: positions rank, rank + N, ... of each batch
    (every process draws the same global batches: main.py seeds them alike)."""

    def __init__(self, batches: Sampler, rank: int, world_size: int):
        super().__init__()
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        return (batch[self.rank :: self.world_size] for batch in self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def shard_loaders(train: DataLoader, val: DataLoader, test: DataLoader, batch_size: int):
    """The loaders of this process: its share of each training batch, and of the val and test images."""
    rank, world_size = idist.get_rank(), idist.get_world_size()
    if world_size == 1:
        return train, val, test
    if batch_size < world_size:
        raise ConfigError(
            f"batch size {batch_size} is smaller than the {world_size} processes: use at least "
            f"{world_size}, so that every process has images to train on"
        )
    common = dict(
        num_workers=train.num_workers, pin_memory=train.pin_memory, persistent_workers=train.persistent_workers
    )
    sharded_train = DataLoader(
        train.dataset, batch_sampler=ShardedBatches(train.batch_sampler, rank, world_size), **common
    )
    evaluation = []
    for name, loader in (("validation", val), ("test", test)):
        shard = _evaluation_shard(loader.batch_sampler, rank, world_size)
        if not shard:
            raise ConfigError(
                f"the {name} split has {len(loader.dataset)} image(s), fewer than the {world_size} "
                f"processes: start fewer processes or give the split more images"
            )
        evaluation.append(DataLoader(loader.dataset, batch_sampler=shard, **common))
    return (sharded_train, *evaluation)


def _evaluation_shard(batches: Iterable[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This process's share of the evaluation images: every world_size-th image from its rank on,
    batched as before. Evaluation runs no collective per batch, so a process may skip a batch that
    gives it none (batches of one image go to the processes in turn); the metrics gather the shares."""
    shard, position = [], 0
    for batch in batches:
        mine = [item for offset, item in enumerate(batch, start=position) if offset % world_size == rank]
        position += len(batch)
        if mine:
            shard.append(mine)
    return shard
