"""The scripts on the GPU: main.py for two epochs in float16 with loss scaling, its checkpoint
(written from CUDA tensors) read by a process that sees no GPU, and test_dataset.py, test_demo.py
and the `linearityiqa score` command scoring on the GPU as float32 one image at a time does."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gpu_helpers import MODEL, assert_close_predictions, demo, exact_float32, precision_for, read_demo

import test_dataset as dataset_script
from IQAdataset import Batching, get_data_loaders
from IQAmodel import IQAModel
from linearityiqa.acceleration import Precision, choose_precision, set_memory_format
from linearityiqa.data.dataset_registry import DataSource
from linearityiqa.data.image_store import ImageLoading
from linearityiqa.records.checkpoint import load_checkpoint, load_model_state
from linearityiqa.records.run_records import dataset_results_file, epochs_file, results_file
from linearityiqa.training.evaluation import Evaluation

ROOT = Path(__file__).resolve().parents[2]


def test_main_trains_two_epochs_in_float16_with_loss_scaling(device, o1_run):
    _, printed, folder, name = o1_run
    assert f"training on 1 x {device.type} in {choose_precision('O1', device).name}" in printed
    checkpoint = torch.load(folder / "model.pth", weights_only=True)  # where it was saved from
    assert {tensor.device.type for tensor in checkpoint["model"].values()} == {device.type}
    if device.type == "cuda":
        assert checkpoint["scaler"]["scale"] > 0 and checkpoint["scaler"]["_growth_tracker"] >= 0
    rows = Path(epochs_file(str(folder / "results"), name)).read_text().splitlines()[1:]
    logged = {tuple(row.split(",")[:2]) for row in rows}
    assert {("1", "train"), ("2", "train"), ("1", "val"), ("2", "val")} < logged and len(logged) == 5
    assert logged & {("1", "final_test"), ("2", "final_test")}
    results = np.load(results_file(str(folder / "results"), name), allow_pickle=True).item()
    assert len(results["sq"]) == 12 and np.isfinite(results["PLCC"])


def test_a_checkpoint_saved_on_the_gpu_scores_in_a_process_without_one(device, o1_run, koniq_60, tmp_path):
    """The CPU process scores as the GPU does in float32 one image at a time (TF32 off)."""
    _, _, folder, _ = o1_run
    images = koniq_60[koniq_60.index("--im_dir") + 1]
    command = [sys.executable, "test_demo.py", "--img", images, "-modelfile", str(folder / "model.pth")]
    hidden = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [*command, "--device", "cpu", "-o", str(tmp_path / "cpu.csv")], cwd=ROOT, env=hidden, capture_output=True
    )
    assert (done.returncode, done.stderr) == (0, b"")
    with exact_float32():
        demo(
            ["--img", images, "-modelfile", str(folder / "model.pth"), "--device", device.type],
            tmp_path / "gpu.csv",
            "-optl",
            "O0",
            "-ebs",
            "1",
        )
    on_cpu, on_gpu = read_demo(tmp_path / "cpu.csv"), read_demo(tmp_path / "gpu.csv")
    assert on_cpu.keys() == on_gpu.keys() and len(on_cpu) == 60
    names = sorted(on_cpu)
    np.testing.assert_allclose([on_gpu[n] for n in names], [on_cpu[n] for n in names], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("opt_level", ["O1", "bf16"])
def test_test_demo_scores_batches_in_reduced_precision_as_float32(device, o1_run, koniq_60, tmp_path, opt_level):
    """test_demo.py's GPU default (batches of 32 under autocast) against float32 one at a time."""
    _, _, folder, _ = o1_run
    images = koniq_60[koniq_60.index("--im_dir") + 1]
    common = ["--img", images, "-modelfile", str(folder / "model.pth"), "--device", device.type]
    with exact_float32():
        demo(common, tmp_path / "float32.csv", "-optl", "O0", "-ebs", "1")
    demo(common, tmp_path / "reduced.csv", "-optl", opt_level, "-ebs", "32")
    plain, reduced = read_demo(tmp_path / "float32.csv"), read_demo(tmp_path / "reduced.csv")
    names = sorted(plain)
    assert_close_predictions(np.array([reduced[n] for n in names]), np.array([plain[n] for n in names]))


def test_test_dataset_on_the_gpu_moves_the_metrics_by_less_than_1e_3(device, o1_run, tmp_path):
    """test_dataset.py's GPU default (batches of 32 under float16 autocast) against the paper's
    float32 one image at a time on the CPU."""
    argv, _, folder, _ = o1_run
    data = argv[argv.index("--data_info") : argv.index("--cache_dir") + 2]
    common = ["--dataset", "KonIQ-10k", *MODEL, *data, "--trained_model_file", str(folder / "model.pth")]
    plain = dataset_metrics(common + ["--device", "cpu", "-optl", "O0", "-ebs", "1"], tmp_path / "float32")
    reduced = dataset_metrics(common + ["--device", device.type], tmp_path / "default")
    assert_close_predictions(reduced["pred"], plain["pred"])
    assert_close_metrics(reduced, plain, within=1e-3)


# bfloat16 keeps 8 bits: on this small model, whose predictions spread over a tenth of their size,
# its PLCC moved by 1.8e-3 and its RMSE by 1.8e-3 of itself (measured with CPU autocast); it is
# held to 1e-2 here, and `bench_training eval` measures it on the paper's model, where the target is 1e-3.
WITHIN = {"O1": 1e-3, "bf16": 1e-2}


@pytest.mark.parametrize("opt_level", ["O1", "bf16"])
def test_evaluation_in_batches_under_autocast_follows_float32(device, o1_run, opt_level):
    """main.py's Evaluation (which validates and tests, in main.py and test_dataset.py) in batches
    of 32 under autocast against float32 one image at a time."""
    argv, _, folder, _ = o1_run
    options = dict(zip(argv[argv.index("--data_info") :: 2], argv[argv.index("--data_info") + 1 :: 2]))
    source = DataSource.open("KonIQ-10k", data_info=options["--data_info"], im_dir=options["--im_dir"])
    loading = ImageLoading(resize_hw=(64, 96), cache_dir=options["--cache_dir"], verbose=False)
    checkpoint = load_checkpoint(str(folder / "model.pth"))
    model = IQAModel(arch="resnet18", pretrained=False)
    load_model_state(model, checkpoint, str(folder / "model.pth"))
    model.to(device).eval()

    def evaluated(batch_size: int, precision: Precision) -> dict:
        batching = Batching(batch_size=8, eval_batch_size=batch_size, num_workers=0)
        _, _, test = get_data_loaders(source, loading=loading, batching=batching)
        evaluation = Evaluation(model, status="test", device=device, precision=precision, channels_last=True)
        return with_predictions(evaluation.run(test, checkpoint["k"], checkpoint["b"]))

    set_memory_format(model, channels_last=True)
    with exact_float32():
        plain = evaluated(1, Precision("float32"))
    reduced = evaluated(32, precision_for(opt_level, device))
    assert_close_predictions(reduced["pred"], plain["pred"])
    assert_close_metrics(reduced, plain, within=WITHIN[opt_level])


def assert_close_metrics(reduced: dict, plain: dict, *, within: float) -> None:
    """PLCC within `within`, RMSE within `within` of itself; SROCC the same unless rounding could
    swap two images (one swap among the 12 test images moves it by 0.0035)."""
    noise = np.abs(reduced["pred"] - plain["pred"]).max()
    gap = np.diff(np.sort(plain["pred"])).min()
    print(
        f"PLCC {plain['PLCC']:.6f} -> {reduced['PLCC']:.6f}, RMSE {plain['RMSE']:.4f} -> {reduced['RMSE']:.4f}, "
        f"SROCC {plain['SROCC']:.6f} -> {reduced['SROCC']:.6f}; smallest gap {gap:.3g}, largest difference {noise:.3g}"
    )
    assert abs(reduced["PLCC"] - plain["PLCC"]) < within
    assert abs(reduced["RMSE"] / plain["RMSE"] - 1) < within
    if gap > 2 * noise:
        assert reduced["SROCC"] == plain["SROCC"]


def dataset_metrics(argv: list[str], results_dir: Path) -> dict:
    """test_dataset.py's metrics and per-image predictions."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert dataset_script.main([*argv, "--results_dir", str(results_dir)]) == 0, printed.getvalue()
    checkpoint = argv[argv.index("--trained_model_file") + 1]
    results = dataset_results_file(str(results_dir), "KonIQ-10k", checkpoint)
    return with_predictions(np.load(results, allow_pickle=True).item())


def with_predictions(metrics: dict) -> dict:
    """The metrics and, as "pred", the fused head's predictions before the mapping."""
    return {**metrics, "pred": np.ravel(metrics["pq_before"])}


def test_the_console_command_scores_on_the_gpu_as_test_demo_does(device, o1_run, koniq_60, tmp_path):
    """`linearityiqa score` (`python -m linearityiqa` in a clone, the function the installed
    command runs) with test_demo.py's GPU defaults, against float32 one image at a time."""
    _, _, folder, _ = o1_run
    images = koniq_60[koniq_60.index("--im_dir") + 1]
    model = ["--trained_model_file", str(folder / "model.pth"), "--device", device.type]
    command = [sys.executable, "-m", "linearityiqa", "score", images, *model, "-o", str(tmp_path / "console.csv")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    with exact_float32():
        demo(["--img", images, *model], tmp_path / "float32.csv", "-optl", "O0", "-ebs", "1")
    plain, console = read_demo(tmp_path / "float32.csv"), read_demo(tmp_path / "console.csv")
    assert console.keys() == plain.keys() and len(plain) == 60
    names = sorted(plain)
    assert_close_predictions(np.array([console[n] for n in names]), np.array([plain[n] for n in names]))
