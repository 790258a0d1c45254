"""test_dataset.py: the paper README's test commands on synthetic KonIQ-10k (its test split)
and CLIVE (all of it, cross-dataset), checked against predictions made independently."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from scipy import stats

import test_dataset as script
from IQAdataset import IQADataset
from IQAmodel import IQAModel
from linearityiqa.data.dataset_registry import ALL_FOR_TESTING, DataSource, Split
from linearityiqa.data.image_store import ImageLoading
from linearityiqa.data.image_transforms import normalize
from linearityiqa.data.info_builders import clive_info_from_release, koniq_info_from_csv
from linearityiqa.data.info_files import write_info
from linearityiqa.data.synthetic import write_clive_layout, write_koniq_layout
from linearityiqa.records.checkpoint import save_checkpoint
from linearityiqa.records.run_records import dataset_results_file, read_scores

README_TEST = {
    "KonIQ-10k": "--dataset KonIQ-10k --resize --arch resnext101_32x8d --trained_model_file checkpoints/p1q2.pth",
    "CLIVE": "--dataset CLIVE --resize --arch resnext101_32x8d --trained_model_file checkpoints/p1q2plus0.1variant.pth",
}
K, B = [2.0, 0.5, -1.0], [50.0, 3.0, 7.0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    sets_csv = write_koniq_layout(root / "koniq", count=20, width=128, height=96, seed=3)
    write_info(root / "KonIQ-10kinfo.mat", koniq_info_from_csv(sets_csv))
    write_clive_layout(root / "clive", count=9, width=100, height=100, seed=4)
    write_info(root / "CLIVEinfo.mat", clive_info_from_release(root / "clive", num_orderings=3))
    return {
        "KonIQ-10k": ["--data_info", str(root / "KonIQ-10kinfo.mat"), "--im_dir", str(root / "koniq" / "1024x768")],
        "CLIVE": ["--data_info", str(root / "CLIVEinfo.mat"), "--im_dir", str(root / "clive" / "Images")],
        "cache": ["--cache_dir", str(root / "cache")],
    }


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return IQAModel(arch="resnet18", pretrained=False).eval()


def write_checkpoints(folder, model):
    """Both README checkpoint names: one of this project (with settings), one in the authors' layout."""
    os.makedirs(folder / "checkpoints")
    settings = {
        "arch": "resnet18",
        "pool": "avg",
        "use_bn_end": False,
        "P6": 1,
        "P7": 1,
        "resize": True,
        "resize_size_h": 64,
        "resize_size_w": 96,
    }
    save_checkpoint(
        str(folder / "checkpoints" / "p1q2.pth"), {"model": model.state_dict(), "k": K, "b": B, "settings": settings}
    )
    torch.save(
        {"model": model.state_dict(), "optimizer": {}, "amp": {}, "k": K, "b": B},
        folder / "checkpoints" / "p1q2plus0.1variant.pth",
    )


def expected_metrics(model, dataset, data_args, split):
    """Predictions one image at a time, mapped by hand."""
    options = dict(zip(data_args[::2], data_args[1::2]))
    source = DataSource.open(dataset, data_info=options["--data_info"], im_dir=options["--im_dir"])
    images = IQADataset(
        source, status="test", split=split, loading=ImageLoading(resize_hw=(64, 96), cache_dir=None, verbose=False)
    )
    with torch.no_grad():
        fused = np.array([model(normalize(image[None]))[2].item() for image, _ in images])
    mos = images.mos.numpy().astype(np.float64)
    mapped = K[0] * fused + B[0]
    return len(images), stats.spearmanr(mos, mapped)[0], np.sqrt(np.mean((mos - mapped) ** 2))


@pytest.mark.parametrize("dataset", ["KonIQ-10k", "CLIVE"])
def test_readme_commands_test_the_right_images(dataset, data, model, tmp_path, monkeypatch, capsys):
    write_checkpoints(tmp_path, model)
    monkeypatch.chdir(tmp_path)
    argv = (
        README_TEST[dataset].replace("resnext101_32x8d", "resnet18").split()
        + data[dataset]
        + data["cache"]
        + ["-rs_h", "64", "-rs_w", "96"]
    )
    assert script.main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    # the CLIVE command tests an authors'-layout file, here at 64x96: a note that these are not the paper's sizes
    noted = "records no settings, as the authors' released checkpoints, which were trained at 498x664 (--resize)"
    note = f"test_dataset.py: note: checkpoints/p1q2plus0.1variant.pth {noted}"
    assert (note in captured.err) == (dataset == "CLIVE")
    assert [line.split(":")[0] for line in out[-11:]] == [
        f"{dataset}, {name}" for name in script.METRICS_PRINTED + script.EXTRA_METRICS
    ]
    checkpoint = argv[argv.index("--trained_model_file") + 1]
    results = np.load(dataset_results_file("results", dataset, checkpoint), allow_pickle=True).item()
    # KonIQ-10k: its official test split (4 of 20); CLIVE: every image (cross-dataset)
    split = Split() if dataset == "KonIQ-10k" else ALL_FOR_TESTING
    count, srocc, rmse = expected_metrics(model, dataset, data[dataset], split)
    assert len(results["sq"]) == count == (4 if dataset == "KonIQ-10k" else 9)
    assert results["SROCC"] == pytest.approx(srocc) and results["RMSE"] == pytest.approx(rmse, rel=1e-5)
    assert results["k"] == K and results["b"] == B
    assert (
        os.path.basename(dataset_results_file("results", dataset, checkpoint))
        == f"dataset={dataset}-tested_on_{os.path.basename(checkpoint)}.npy"
    )
    scores = read_scores(f"results/dataset={dataset}-tested_on_{os.path.basename(checkpoint)}-scores.csv")
    np.testing.assert_allclose(scores["score"], np.ravel(results["sq"]), rtol=1e-6)
    np.testing.assert_allclose(scores["mapped"], np.ravel(results["pq"]), rtol=1e-6)


def test_settings_of_the_checkpoint_are_used_and_clashes_refused(data, model, tmp_path, monkeypatch, capsys):
    write_checkpoints(tmp_path, model)
    monkeypatch.chdir(tmp_path)
    base = (
        ["--dataset", "KonIQ-10k", "--trained_model_file", "checkpoints/p1q2.pth"] + data["KonIQ-10k"] + data["cache"]
    )
    assert script.main(base) == 0  # arch and resize come from the checkpoint's settings
    assert script.main(base + ["--arch", "resnet34"]) == 1
    err = capsys.readouterr().err
    assert "was trained with arch='resnet18', but arch='resnet34' was asked for" in err
    assert err.startswith("test_dataset.py: error: ") and "Traceback" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--trained_model_file", "checkpoints/none.pth"], "checkpoint checkpoints/none.pth does not exist"),
        (["--im_dir", "no_images"], "KonIQ-10k is not set up (no_images not found)"),
    ],
)
def test_missing_files_are_one_line(extra, message, data, model, tmp_path, monkeypatch, capsys):
    write_checkpoints(tmp_path, model)
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset", "KonIQ-10k", "--trained_model_file", "checkpoints/p1q2.pth"] + data["KonIQ-10k"] + extra
    assert script.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.reliability
def test_running_out_of_memory_is_one_line(data, model, tmp_path, monkeypatch, capsys):
    write_checkpoints(tmp_path, model)
    monkeypatch.chdir(tmp_path)

    def too_big(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(script.Evaluation, "run", too_big)
    argv = ["--dataset", "KonIQ-10k", "--trained_model_file", "checkpoints/p1q2.pth"] + data["KonIQ-10k"]
    assert script.main(argv) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "test_dataset.py: error: out of memory (CUDA out of memory. Tried to allocate "
        "9.00 GiB): lower --eval_batch_size, or test at a smaller size (--resize)"
    )
    assert "Traceback" not in err
