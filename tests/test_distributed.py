"""linearityiqa/training/distributed.py and main.py --nproc_per_node: 2 CPU processes (gloo) x batch B/2 train
exactly as 1 process x batch B."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import ignite.distributed as idist
import numpy as np
import pytest
import torch

import main
from IQAloss import IQALoss
from IQAmodel import IQAModel
from linearityiqa import acceleration
from linearityiqa.errors import ConfigError
from linearityiqa.training.distributed import (
    GlobalBatchLoss,
    GlobalBatchNorm,
    ProcessPlan,
    ShardedBatches,
    _evaluation_shard,
    _rendezvous,
    global_batchnorm,
    plan_processes,
)


def _batch(seed=1, nan=False):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(6, 3, 64, 64, dtype=torch.float64, generator=generator)
    mos = torch.rand(6, dtype=torch.float64, generator=generator) * 100
    if nan:
        mos[4] = float("nan")  # on one process only: the loss of the whole batch is NaN on both
    return images, (mos, torch.ones(6, dtype=torch.float64))


def _training(batches, skip_nonfinite=False):
    """Training steps of this process on its share of each batch; the loss and state after them."""
    rank, world_size = idist.get_rank(), idist.get_world_size()
    torch.manual_seed(0)
    model = IQAModel(arch="resnet18", pretrained=False).double()
    if world_size > 1:
        global_batchnorm(model, torch.device("cpu"))
    trained = idist.auto_model(model) if world_size > 1 else model
    optimizer = main.create_optimizer(model, lr=1e-3, ft_lr_ratio=0.1, weight_decay=0)
    trainer = main.create_trainer(
        trained,
        optimizer,
        GlobalBatchLoss(IQALoss()),
        device=torch.device("cpu"),
        precision=acceleration.Precision("float32"),
        accumulation_steps=1,
        skip_nonfinite=skip_nonfinite,
        report=lambda line: None,
    )
    share = slice(rank, None, world_size)
    trainer.run([(images[share], (mos[share], std[share])) for images, (mos, std) in batches], max_epochs=1)
    return trainer.state.output, {name: value.clone() for name, value in model.state_dict().items()}


def _first_step():
    return _training([_batch()])


def _a_nan_step_skipped():
    return _training([_batch(1), _batch(2, nan=True), _batch(3)], skip_nonfinite=True)


def _report_environment(path):
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "CUDA_VISIBLE_DEVICES")
    seen = {name: os.environ.get(name) for name in names}
    seen.update(rank=idist.get_rank(), world_size=idist.get_world_size(), device=str(idist.device()))
    torch.save(seen, f"{path}.{idist.get_rank()}")


# main.py's run of two CPU processes that test_main_trains_and_tests_on_two_processes checks
TWO_PROCESS_RUN = "--arch resnet18 --pretrained none --resize -rs_h 64 -rs_w 96 -bs 4 -e 1 --num_workers 0"


def _steps_then_training(local_rank, settings):
    """main.training in each process of main.py's run, after what the other tests of two processes
    compare, saved in the run's folder (the current one): one start serves them all, as a start
    costs seconds. The steps train models of their own; main.training seeds its run itself."""
    _report_environment("seen")
    for steps in ("_first_step", "_a_nan_step_skipped"):
        loss, state = globals()[steps]()
        if idist.get_rank() == 0:
            torch.save({"loss": loss, "state": state}, f"{steps}.pt")
    return main.training(local_rank, settings)


class TwoProcesses(NamedTuple):
    folder: Path
    argv: list[str]
    status: int
    visible_devices_after: bool


@pytest.fixture(scope="module")
def two_processes(koniq, tmp_path_factory):
    """main.py's run of 2 CPU processes, started once with no CUDA_VISIBLE_DEVICES in its folder,
    whose processes also saved what the tests of two processes compare (_steps_then_training):
    the folder, the run's options, main.py's exit status, and whether this process's environment
    has CUDA_VISIBLE_DEVICES after them."""
    folder = tmp_path_factory.mktemp("two_processes")
    argv = [*TWO_PROCESS_RUN.split(), "--nproc_per_node", "2", "--device", "cpu", *koniq]
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        monkeypatch.chdir(folder)
        # the processes take it by its name in this module, and call the real main.training
        monkeypatch.setattr(main, "training", _steps_then_training)
        status = main.main(argv)
        return TwoProcesses(folder, argv, status, "CUDA_VISIBLE_DEVICES" in os.environ)


def _assert_close_states(two, one):
    assert set(two) == set(one)  # GlobalBatchNorm keeps the checkpoint's names
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-7, atol=1e-10, msg=name)


def test_two_processes_take_the_same_first_step_as_one(two_processes):
    two = torch.load(two_processes.folder / "_first_step.pt", weights_only=True)
    loss, one = _first_step()
    assert two["loss"] == pytest.approx(loss, rel=1e-9)  # the loss of the whole batch on each process
    _assert_close_states(two["state"], one)
    assert any(name.endswith("running_mean") and bool(value.abs().sum() > 0) for name, value in one.items())


@pytest.mark.reliability
def test_two_processes_skip_a_nan_step_together(two_processes):
    """The NaN is in one process's share; both skip the step, and neither waits for the other."""
    two = torch.load(two_processes.folder / "_a_nan_step_skipped.pt", weights_only=True)
    _, one = _a_nan_step_skipped()
    _assert_close_states(two["state"], one)


def test_evaluation_batches_are_shared_out_and_none_is_empty():
    batches = [[0, 1, 2, 3, 4], [5, 6], [7]]
    shares = [_evaluation_shard(batches, rank, 3) for rank in range(3)]
    assert shares == [[[0, 3], [6]], [[1, 4], [7]], [[2], [5]]]
    assert sorted(item for share in shares for batch in share for item in batch) == list(range(8))  # each once
    one_by_one = [_evaluation_shard([[0], [1], [2], [3], [4]], rank, 2) for rank in range(2)]
    assert one_by_one == [[[0], [2], [4]], [[1], [3]]]


def test_sharded_batches_split_each_global_batch():
    batches = [[5, 1, 4, 0, 3], [2, 6, 7, 8]]
    shares = [list(ShardedBatches(batches, rank, 2)) for rank in (0, 1)]
    assert shares == [[[5, 4, 3], [2, 7]], [[1, 0], [6, 8]]]
    assert len(ShardedBatches(batches, 0, 2)) == 2


def test_global_batchnorm_is_plain_batchnorm_in_one_process():
    torch.manual_seed(0)
    plain = torch.nn.BatchNorm2d(4).train()
    converted = global_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(4)), torch.device("cpu"))[0]
    assert isinstance(converted, GlobalBatchNorm)
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(converted(x), plain(x))
    torch.testing.assert_close(converted.running_var, plain.running_var)


def test_main_trains_and_tests_on_two_processes(two_processes, run_name):
    assert two_processes.status == 0
    name = run_name(two_processes.argv)
    results = np.load(two_processes.folder / "results" / f"{name}.npy", allow_pickle=True).item()
    assert len(results["sq"]) == 6  # every test image once, gathered from both processes
    checkpoint = torch.load(two_processes.folder / "checkpoints" / name, weights_only=True)
    assert "features.1.running_mean" in checkpoint["model"]


@pytest.mark.parametrize(
    "processes, device_name, gpus, plan",
    [
        (2, None, 2, ProcessPlan(2, "nccl", 2)),  # a GPU each
        (4, None, 8, ProcessPlan(4, "nccl", 4)),
        (2, "cuda", 1, ProcessPlan(2, "gloo", 1)),  # sharing one: NCCL takes one process per GPU
        (3, None, 2, ProcessPlan(3, "gloo", 2)),
        (2, "cpu", 1, ProcessPlan(2, "gloo", 0)),
        (2, None, 0, ProcessPlan(2, "gloo", 0)),
    ],
)
def test_processes_get_a_gpu_each_or_share_them_over_gloo(monkeypatch, processes, device_name, gpus, plan):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert plan_processes(processes, device_name=device_name) == plan


def test_processes_on_a_gpu_that_is_not_there_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--device cuda was asked for, but PyTorch sees no CUDA device"):
        plan_processes(2, device_name="cuda")


def test_cpu_processes_see_no_gpu_and_know_their_rank(two_processes):
    """On a machine with one GPU, ignite would move the process of local rank 1 onto a second GPU."""
    for rank in (0, 1):
        seen = torch.load(two_processes.folder / f"seen.{rank}", weights_only=True)
        assert seen == {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "CUDA_VISIBLE_DEVICES": "",
            "rank": rank,
            "world_size": 2,
            "device": "cpu",
        }
    assert not two_processes.visible_devices_after  # this process's environment is as it was


def test_one_process_asked_for_trains_as_a_run_without_the_option(trained_run, tiny_run_argv, tmp_path):
    """--nproc_per_node 1 starts no process: the run is the single-process run, to the digit."""
    assert main.main(tiny_run_argv(tmp_path, "--nproc_per_node", "1")) == 0
    (plain,), (one,) = (
        [np.load(path, allow_pickle=True).item() for path in (folder / "results").glob("*.npy")]
        for folder in (trained_run, tmp_path)
    )
    np.testing.assert_array_equal(one["pq"], plain["pq"])
    assert (one["SROCC"], one["PLCC"], one["k"], one["b"]) == (plain["SROCC"], plain["PLCC"], plain["k"], plain["b"])


def test_a_mistake_in_a_run_of_two_processes_is_one_line(koniq, tmp_path, monkeypatch, capfd):
    """Every process meets it; the first says it, and neither ignite's launcher nor torch adds a line."""
    monkeypatch.chdir(tmp_path)
    command = "--arch resnet18 --pretrained none --resize -rs_h 64 -rs_w 96 -bs 4 -e 1 --num_workers 0 --resume"
    assert main.main([*command.split(), "--nproc_per_node", "2", "--device", "cpu", *koniq]) == 1
    (line,) = capfd.readouterr().err.splitlines()
    assert line.startswith("main.py: error: nothing to resume in checkpoints/")


def test_processes_meet_at_master_port_if_set_else_at_a_file_of_their_own(monkeypatch):
    """A port picked free beforehand could be taken before the processes bind it; a file cannot."""
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with _rendezvous() as meeting:
        store = Path(meeting.removeprefix("file://"))
        assert meeting.startswith("file://") and store.parent.is_dir() and not store.exists()
    assert not store.parent.exists()
    monkeypatch.setenv("MASTER_PORT", "29517")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.9")  # the processes of one machine meet on it
    with _rendezvous() as meeting:
        assert (meeting, os.environ["MASTER_ADDR"]) == ("env://", "127.0.0.1")
    assert os.environ["MASTER_ADDR"] == "10.0.0.9"
