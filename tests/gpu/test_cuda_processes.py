"""Two processes sharing one GPU train as one process does: SyncBatchNorm and the gathered loss
over gloo's CUDA collectives (NCCL refuses two processes on one GPU), and main.py --nproc_per_node 2."""

from __future__ import annotations

import ignite.distributed as idist
import numpy as np
import pytest
import torch

import main
from IQAloss import IQALoss
from IQAmodel import IQAModel
from linearityiqa.acceleration import Precision, cudnn_mode
from linearityiqa.training.distributed import GlobalBatchLoss, global_batchnorm, plan_processes, start_processes


def _batch(seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(6, 3, 64, 64, dtype=torch.float64, generator=generator)
    mos = torch.rand(6, dtype=torch.float64, generator=generator) * 100
    return images, (mos, torch.ones(6, dtype=torch.float64))


def _two_steps(device_type: str) -> tuple[float, dict]:
    """Two training steps in float64 on this process's share of each batch: the loss, the weights."""
    device = idist.device() if idist.get_world_size() > 1 else torch.device(device_type)
    torch.manual_seed(0)
    model = IQAModel(arch="resnet18", pretrained=False).to(device, torch.float64)
    if idist.get_world_size() > 1:
        global_batchnorm(model, device)
    trained = idist.auto_model(model) if idist.get_world_size() > 1 else model
    optimizer = main.create_optimizer(model, lr=1e-3, ft_lr_ratio=0.1, weight_decay=0)
    trainer = main.create_trainer(
        trained,
        optimizer,
        GlobalBatchLoss(IQALoss()),
        device=device,
        precision=Precision("float32"),  # no autocast: the model's own float64
        accumulation_steps=1,
        report=lambda line: None,
    )
    share = slice(idist.get_rank(), None, idist.get_world_size())
    data = [(images[share], (mos[share], std[share])) for images, (mos, std) in (_batch(1), _batch(2))]
    with cudnn_mode(deterministic=True):
        trainer.run(data, max_epochs=1)
    return trainer.state.output, {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}


def _saved_by_rank0(local_rank, path, device_type):
    loss, state = _two_steps(device_type)
    if idist.get_rank() == 0:
        torch.save({"loss": loss, "state": state, "device": str(idist.device()), "backend": idist.backend()}, path)


def test_two_processes_on_one_gpu_take_the_steps_of_one(device, tmp_path):
    plan = plan_processes(2, device_name=device.type)
    if device.type == "cuda":
        assert plan.backend == ("gloo" if torch.cuda.device_count() == 1 else "nccl")
    path = str(tmp_path / "rank0.pt")
    start_processes(_saved_by_rank0, (path, device.type), plan)
    loss, one = _two_steps(device.type)
    two = torch.load(path, weights_only=True)
    assert two["device"].startswith(device.type) and two["backend"] == plan.backend
    assert two["loss"] == pytest.approx(loss, rel=1e-9)
    assert set(two["state"]) == set(one)  # SyncBatchNorm keeps BatchNorm's names
    for name, value in one.items():
        torch.testing.assert_close(two["state"][name], value, rtol=1e-7, atol=1e-10, msg=name)


def test_main_trains_on_two_processes_sharing_the_gpu(device, koniq_60, tmp_path, monkeypatch, capfd, run_name):
    monkeypatch.chdir(tmp_path)
    command = "--arch resnet18 --pretrained none --resize -rs_h 64 -rs_w 96 -bs 8 -e 1 --num_workers 0"
    argv = [*command.split(), "--nproc_per_node", "2", "--device", device.type, *koniq_60]
    assert main.main(argv) == 0
    printed = capfd.readouterr().out
    assert f"training on 2 x {device.type}" in printed
    if device.type == "cuda" and torch.cuda.device_count() == 1:
        assert "note: 2 processes share 1 GPU(s), so gloo carries their exchanges" in printed
    results = np.load(tmp_path / "results" / f"{run_name(argv)}.npy", allow_pickle=True).item()
    assert len(results["sq"]) == 12  # every test image once, gathered from both processes
