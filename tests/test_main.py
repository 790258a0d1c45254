"""main.py end to end on CPU: the paper README's training commands (resnet18, no ImageNet
weights, small images) on a synthetic KonIQ-10k, its files and logs, resume, and user errors."""

from __future__ import annotations

import glob
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events
from tensorboardX.proto import event_pb2

import main
from linearityiqa.cli.options import get_args_parser
from linearityiqa.cli.settings import run_settings
from linearityiqa.data.dataset_registry import DataSource, Split
from linearityiqa.records.run_records import EpochMetrics, epochs_file, read_scores
from linearityiqa.training.evaluation import METRICS_PRINTED, metric_lines

README_TRAIN = [
    "--dataset KonIQ-10k --resize --exp_id 0 --lr 1e-4 -bs 8 -e 30 --ft_lr_ratio 0.1 "
    "--arch resnext101_32x8d --loss_type Lp --p 1 --q 2",
    "--dataset KonIQ-10k --resize --exp_id 0 --lr 1e-4 -bs 8 -e 30 --ft_lr_ratio 0.1 "
    "--arch resnext101_32x8d --loss_type Lp --p 1 --q 2 --alpha 1 0.1",
]


def small(command, koniq, epochs=2):
    """A README command made CPU-sized: resnet18 from scratch, 64x96 images, few epochs."""
    argv = command.replace("resnext101_32x8d", "resnet18").replace("-e 30", f"-e {epochs}").split()
    return argv + ["--pretrained", "none", "-rs_h", "64", "-rs_w", "96", "--num_workers", "0"] + koniq


def tensorboard_tags(log_dir):
    """Scalar tags in the event files under log_dir (TFRecord: length, crc, event, crc)."""
    tags = set()
    for path in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True):
        with open(path, "rb") as file:
            data = file.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            tags.update(value.tag for value in event.summary.value)
            offset += 12 + length + 4
    return tags


@pytest.mark.parametrize("command", README_TRAIN)
def test_readme_training_commands_train_select_and_test(command, koniq, run_name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = small(command, koniq)
    assert main.main(argv) == 0
    name = run_name(argv)
    checkpoint = torch.load(os.path.join("checkpoints", name), weights_only=True)
    assert {"model", "optimizer", "k", "b", "settings"} <= set(checkpoint)
    assert checkpoint["k"] != [1.0, 1.0, 1.0]  # the mapping was fitted on the training set at the end
    # the scale k, b map onto: the 21 official training images' MOS, read here from the info file itself
    source = DataSource.open("KonIQ-10k", data_info=koniq[1], im_dir=koniq[3])
    mos = source.info.scores[source.positions("train", Split())]
    assert len(mos) == 21 and checkpoint["scale"] == {
        "dataset": "KonIQ-10k",
        "mos_min": pytest.approx(float(mos.min()), rel=1e-6),
        "mos_max": pytest.approx(float(mos.max()), rel=1e-6),
        "mos_mean": pytest.approx(float(mos.mean()), rel=1e-6),
        "higher_is_better": True,
    }
    assert checkpoint["settings"]["arch"] == "resnet18" and checkpoint["settings"]["alpha"] == (
        [1.0, 0.1] if "--alpha" in command else [1, 0]
    )
    results = np.load(os.path.join("results", name + ".npy"), allow_pickle=True).item()
    out = capsys.readouterr().out
    for metric in METRICS_PRINTED:
        assert f"KonIQ-10k, {metric}: {results[metric]:.3f}" in out
    assert len(results["sq"]) == 6  # the official test share of 30 synthetic images
    tags = tensorboard_tags("runs")
    # val every epoch; train (the final fit of k, b) and test at the end
    assert {
        "train/loss",
        "val/KonIQ-10k/SROCC",
        "val/KonIQ-10k/RMSE2",
        "train/KonIQ-10k/PLCC1",
        "test/KonIQ-10k/SROCC",
    } <= tags
    assert any(tag.startswith("lr/group_") for tag in tags)


@pytest.fixture(scope="module")
def three_epochs(koniq, tmp_path_factory):
    """A run of three epochs, with augmentation and a test every epoch, in a folder of its own (its
    outputs where main.py puts them by default), as if killed after its last resume state was saved,
    before that was removed: (the folder, the run's options). Tests read it, or copy it to go on."""
    folder = tmp_path_factory.mktemp("three_epochs")
    argv = small(README_TRAIN[0], koniq, epochs=3) + ["--augmentation", "-cs_h", "56", "-cs_w", "56"]
    argv += ["--test_during_training"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(main, "remove_resume_state", lambda settings: None)
        assert main.main(argv) == 0
    return folder, argv


def test_each_epoch_and_the_final_test_are_recorded_in_csv_files(three_epochs, run_name, monkeypatch):
    folder, argv = three_epochs
    monkeypatch.chdir(folder)
    name = run_name(argv)
    results = np.load(os.path.join("results", name + ".npy"), allow_pickle=True).item()
    metrics = EpochMetrics(epochs_file("results", name))
    for split in ("train", "val", "test"):
        for metric in METRICS_PRINTED:
            assert metrics.series(split, metric).epochs == [1, 2, 3]
    assert metrics.series("train", "loss").epochs == [1, 2, 3]
    assert all(value > 0 for value in metrics.series("train", "loss").values)
    # the best model's test, once, as results/<name>.npy has it
    assert metrics.final("SROCC") == pytest.approx(results["SROCC"], abs=1e-6)  # the CSV keeps 6 digits
    assert metrics.final("RMSE2") == pytest.approx(results["RMSE2"], rel=1e-5)
    scores = read_scores(os.path.join("results", name + "-scores.csv"))
    np.testing.assert_allclose(scores["score"], np.ravel(results["sq"]), rtol=1e-6)
    np.testing.assert_allclose(scores["prediction"], np.ravel(results["pq_before"]), rtol=1e-6)
    np.testing.assert_allclose(
        scores["mapped"], results["k"][0] * scores["prediction"] + results["b"][0], rtol=1e-5, atol=1e-4
    )


def test_compile_compiles_the_trained_and_evaluated_model_not_the_saved_one(koniq, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = run_settings(get_args_parser().parse_args(small(README_TRAIN[0], koniq) + ["--compile"]))
    parts = main.build_parts(settings, torch.device("cpu"))
    assert isinstance(parts.trained, torch._dynamo.eval_frame.OptimizedModule)
    assert parts.trained._orig_mod is parts.model  # checkpoints save the model's names
    assert not any(name.startswith("_orig_mod") for name in parts.model.state_dict())


def test_run_name_records_the_settings_as_the_papers_code_did(run_name):
    argv = README_TRAIN[1].split()
    assert run_name(argv) == (
        "resnext101_32x8d-avg-bn_end=False-loss=Lp-p=1.0-q=2.0-detach-False-ft_lr_ratio=0.1-"
        "alpha=[1.0, 0.1]-beta=[0.1, 0.1, 1]-KonIQ-10k-res=True-498x664-aug=False-"
        "monotonicity=False-lr=0.0001-bs=8-e=30-opt_level=O1-EXP0"
    )
    # KonIQ-10k without resize keeps its stored 768x1024
    assert "-res=False-768x1024-" in run_name(["--dataset", "KonIQ-10k"])


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(three_epochs, run_name, tmp_path, monkeypatch, capsys):
    # the whole run, as if killed after its last state was saved, before it was removed
    argv = three_epochs[1]
    name = run_name(argv)
    monkeypatch.chdir(shutil.copytree(three_epochs[0], tmp_path / "whole"))
    whole = np.load(os.path.join("results", name + ".npy"), allow_pickle=True).item()
    assert main.main(argv + ["--resume"]) == 0  # the state of the last epoch: only the final test runs again
    out = capsys.readouterr().out
    assert "after epoch 3" in out and "best model saved" not in out
    again = np.load(os.path.join("results", name + ".npy"), allow_pickle=True).item()
    assert {metric: again[metric] for metric in METRICS_PRINTED} == {
        metric: whole[metric] for metric in METRICS_PRINTED
    }
    assert not os.path.exists(os.path.join("checkpoints", name + ".resume"))
    assert EpochMetrics(epochs_file("results", name)).series("final_test", "SROCC").values == [
        pytest.approx(whole["SROCC"], rel=1e-5)
    ]  # once

    os.makedirs(tmp_path / "resumed")
    monkeypatch.chdir(tmp_path / "resumed")
    original = main.create_trainer

    def interrupted(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.add_event_handler(Events.EPOCH_STARTED(once=3), lambda engine: (_ for _ in ()).throw(KeyboardInterrupt))
        return trainer

    monkeypatch.setattr(main, "create_trainer", interrupted)
    assert main.main(argv) == 130  # as a shell reports Ctrl-C
    monkeypatch.setattr(main, "create_trainer", original)
    assert main.main(argv + ["--resume"]) == 0
    resumed = np.load(os.path.join("results", run_name(argv) + ".npy"), allow_pickle=True).item()
    np.testing.assert_allclose(resumed["pq_before"], whole["pq_before"], rtol=1e-5)
    assert resumed["k"] == pytest.approx(whole["k"])
    # --resume of the finished run: nothing to do, and it says where the results are
    capsys.readouterr()
    assert main.main(argv + ["--resume"]) == 0
    (said,) = capsys.readouterr().out.splitlines()
    assert "the run finished already" in said and os.path.join("checkpoints", name) in said
    assert os.path.join("results", name + ".npy") in said
    # the epochs file holds each epoch once, though the run was started twice
    whole_log = EpochMetrics(epochs_file(str(tmp_path / "whole" / "results"), run_name(argv)))
    resumed_log = EpochMetrics(epochs_file("results", run_name(argv)))
    for split, metric in (("train", "loss"), ("val", "SROCC"), ("val", "RMSE")):
        assert resumed_log.series(split, metric).epochs == [1, 2, 3]
        assert resumed_log.series(split, metric).values == pytest.approx(
            whole_log.series(split, metric).values, rel=1e-4
        )


def test_evaluate_tests_a_trained_checkpoint(trained_run, tiny_run_argv, tmp_path, capsys):
    folder = Path(shutil.copytree(trained_run, tmp_path / "run"))
    trained = np.load(next((folder / "results").glob("*.npy")), allow_pickle=True).item()
    assert main.main(tiny_run_argv(folder, "--evaluate")) == 0
    assert capsys.readouterr().out.splitlines()[-9:] == metric_lines("KonIQ-10k", trained)


def test_resume_of_a_finished_run_says_where_its_results_are(trained_run, tiny_run_argv, tmp_path, capsys):
    folder = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}
    assert main.main(tiny_run_argv(folder, "--resume")) == 0
    (said,) = capsys.readouterr().out.splitlines()
    (results,) = (folder / "results").glob("*.npy")
    assert "finished already" in said and f"{folder / 'model.pth'}," in said and str(results) in said
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()} == before  # none written


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--arch", "resnet19"], "unknown arch 'resnet19'"),
        (["-bs", "1"], "the batch size (-bs) is 1"),
        (["--data_info", "nowhere.mat"], "KonIQ-10k is not set up (nowhere.mat not found)"),
        (["--resume"], "nothing to resume in"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_1(extra, message, koniq, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main.main(small(README_TRAIN[0], koniq, epochs=1) + extra) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("main.py: error: ") and message in errors[0]
    assert "Traceback" not in err


def test_a_diverging_loss_stops_with_the_iteration(koniq, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(main, "IQALoss", lambda **kwargs: lambda y_pred, y: y_pred[2].sum() * float("nan"))
    assert main.main(small(README_TRAIN[0], koniq, epochs=1)) == 1
    assert "the loss is nan at iteration 1 (epoch 1)" in capsys.readouterr().err
