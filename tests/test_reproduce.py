"""python -m reproduce: each experiment's runs are the authors' commands, and each command runs
end to end on a tiny synthetic data set, with reports whose numbers are those the runs recorded."""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from IQAperformance import correlations
from linearityiqa.choices import LEAST_FOR_CORRELATION
from linearityiqa.cli.console import run_script
from linearityiqa.cli.options import get_args_parser
from linearityiqa.data.info_files import split_sizes_from_ratios
from linearityiqa.data.synthetic import _koniq_sets
from linearityiqa.records.run_records import EpochLog, EpochMetrics, dataset_results_file, epochs_file, read_scores
from reproduce.__main__ import main as reproduce
from reproduce.experiments import EXPERIMENTS
from reproduce.reports import _paired_test
from reproduce.runs import Data, Runner, _resumed, fold_options

PAPER = "--dataset KonIQ-10k --resize --exp_id 0 --lr 1e-4 -bs 8 -e 30 --ft_lr_ratio 0.1 --arch"
# the real data sets as options, without checking that they are set up
SELECTED = {name: lambda name=name, make=True: ["--dataset", name] for name in ("KonIQ-10k", "CLIVE")}
REAL = Data("KonIQ-10k and CLIVE", SELECTED, [])
# Tiny: 30 KonIQ-10k images (21 train, 3 val, 6 test), 12 CLIVE images, 32x32, 2 epochs.
TINY = ["--data", "synthetic", "--count", "30", "--clive_count", "12", "--size", "32", "--epochs", "2"]
# For runs that no other experiment shares: one epoch gives all that their tests look at.
ONE_EPOCH = TINY[:-1] + ["1"]


def commands(name, **kwargs):
    """The main.py commands of an experiment on the real data, without the output paths."""
    runner = Runner(data=REAL, out=Path("out"))
    return [" ".join(runner.main_argv(run)[:-6]) for run in EXPERIMENTS[name](**kwargs).runs]


def test_figure1_runs_the_authors_three_commands():
    assert commands("figure1") == [
        f"{PAPER} resnext101_32x8d --loss_type l1 --test_during_training",
        f"{PAPER} resnext101_32x8d --loss_type mse --test_during_training",
        f"{PAPER} resnext101_32x8d --loss_type Lp --p 1 --q 2 --test_during_training",
    ]


def test_figure4_adds_batchnorm_at_the_end_to_mse():
    assert commands("figure4")[1] == f"{PAPER} resnext101_32x8d --loss_type mse --use_bn_end --test_during_training"


def test_figure5_varies_one_setting_of_resnet50_at_a_time():
    runs = commands("figure5")
    assert len(runs) == 3 * (3 + 3 + 4) and len(set(runs)) == 3 * (3 + 3 + 4 - 2)  # the basic run recurs
    assert f"{PAPER} resnet50 --loss_type Lp --p 1 --q 2".replace("--lr 1e-4", "--lr 1e-3") in runs
    assert f"{PAPER} resnet50 --loss_type l1".replace("-bs 8", "-bs 16") in runs
    assert f"{PAPER} resnet50 --loss_type mse".replace("--ft_lr_ratio 0.1", "--ft_lr_ratio 0") in runs


def test_figure6_trains_each_backbone_at_batch_16_and_table1_each_p_q():
    assert f"{PAPER} resnet34 --loss_type mse".replace("-bs 8", "-bs 16") in commands("figure6")
    table1 = commands("table1")
    assert len(set(table1)) == 16
    assert f"{PAPER} resnet18 --loss_type Lp --p 2 --q 1" in table1


def test_table2_weighs_l_and_its_variant():
    basic = f"{PAPER} resnext101_32x8d --loss_type Lp --p 1 --q 2"
    assert commands("table2") == [basic, basic + " --alpha 1 0.1", basic + " --alpha 0 1", basic + " --alpha 1 1"]


def test_the_t_test_trains_resnet18_on_ten_clive_splits():
    runs = commands("ttest", losses=["MAE", "Norm-in-Norm"])
    assert len(runs) == 20
    assert runs[7] == f"{PAPER} resnet18 --loss_type Lp --p 1 --q 2".replace("KonIQ-10k", "CLIVE").replace(
        "--exp_id 0", "--exp_id 3"
    )


def test_fold_options_keeps_the_last_value_in_the_first_place():
    assert fold_options(["--lr", "1e-4", "-bs", "8", "--resize", "-lr", "1e-3", "--alpha=0", "--resize"]) == [
        "--lr",
        "1e-3",
        "-bs",
        "8",
        "--resize",
        "--alpha",
        "0",
    ]
    with pytest.raises(Exception, match=r"'--nope' is not a main.py option"):
        fold_options(["--lr", "1e-4", "--nope"])


def test_a_run_interrupted_after_an_epoch_resumes(tmp_path):
    checkpoint, records = str(tmp_path / "run"), str(tmp_path / "run-epochs.csv")
    assert _resumed(checkpoint, records) == []
    os.makedirs(checkpoint + ".resume")
    log = EpochLog(records)
    assert _resumed(checkpoint, records) == []  # interrupted before its first epoch ended: start again
    (tmp_path / "run.resume" / "tmp0a1b2c3d").write_bytes(b"")
    log.add(1, "val", {"PLCC": 0.5})
    assert _resumed(checkpoint, records) == []  # killed in its first save: nothing whole to resume from
    (tmp_path / "run.resume" / "checkpoint_1.pt").write_bytes(b"")
    assert _resumed(checkpoint, records) == ["--resume"]
    log.add(1, "final_test", {"PLCC": 0.5})
    assert _resumed(checkpoint, records) == []  # finished: asked for again (with test curves), it starts afresh


def test_paired_t_test_of_two_splits():
    # differences 0.02 and 0.04: mean 0.03, sd 0.02 / sqrt 2, t = 3 with 1 degree of freedom,
    # whose distribution is Cauchy: p = 1 - 2 atan(3) / pi = 0.2048
    assert _paired_test({"0": 0.90, "1": 0.94}, {"0": 0.88, "1": 0.90}) == ("+0.030", "0.2")
    assert _paired_test({"0": 0.9}, {"0": 0.8, "1": 0.7})[0] == "n/a"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for all experiments, as a user's: later experiments reuse earlier runs."""
    return tmp_path_factory.mktemp("reproduce")


def run_in_this_process(monkeypatch, *, own_processes: int = 0) -> list[str]:
    """Each run's main.py or test_dataset.py called in this process, as its main(argv), after the
    first `own_processes` runs, which start in processes of their own as reproduce starts them:
    the same commands, printed and run, and the same files, without a Python and PyTorch started
    for each run. The scripts of the runs that had a process of their own, in order."""
    import main
    import test_dataset

    scripts = {"main.py": main.main, "test_dataset.py": test_dataset.main}
    started: list[str] = []

    def run(script, argv):
        if len(started) < own_processes:
            started.append(script)
            return run_script(script, argv)
        return scripts[script](list(argv))

    monkeypatch.setattr("reproduce.runs.run_script", run)
    return started


@pytest.fixture
def in_workdir(workdir, monkeypatch):
    """The shared folder as the current one, and each run called in this process
    (run_in_this_process; test_figure1_end_to_end starts one in a process of its own)."""
    run_in_this_process(monkeypatch)
    monkeypatch.chdir(workdir)


def table_rows(path):
    """The Markdown table's body rows as lists of cells."""
    lines = [line for line in Path(path).read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def out_dir():
    return Path("reproduced") / "synthetic-30-12-32"


def run_results(name):
    """The -epochs.csv records of each run, by checkpoint settings."""
    records = []
    for checkpoint in sorted((out_dir() / "checkpoints").iterdir()):
        if checkpoint.is_file():
            settings = torch.load(checkpoint, weights_only=True, mmap=True)["settings"]  # its weights left unread
            records.append((settings, EpochMetrics(epochs_file(str(out_dir() / "results"), checkpoint.name))))
    return records


def is_png(path):
    return Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_figure1_end_to_end(workdir, monkeypatch, capsys):
    # Its first run as reproduce runs every run, in a process of its own (python main.py ...), the
    # others in this process: one real process shows the command runs as printed, from the folder.
    monkeypatch.chdir(workdir)
    own_processes = run_in_this_process(monkeypatch, own_processes=1)
    assert reproduce(["figure1"] + TINY) == 0
    assert own_processes == ["main.py"]
    assert capsys.readouterr().out.count("\n== figure1") == 3
    rows = table_rows(out_dir() / "figure1.md")
    assert [row[0] for row in rows] == ["MAE", "MSE", "Norm-in-Norm"]
    losses = {"l1": "MAE", "mse": "MSE", "Lp": "Norm-in-Norm"}
    levels = {}
    for settings, metrics in run_results("figure1"):
        assert settings["arch"] == "resnet18" and settings["epochs"] == 2 and settings["test_during_training"]
        for split in ("train", "val", "test"):
            assert metrics.series(split, "PLCC").epochs == [1, 2]
        row = next(row for row in rows if row[0] == losses[settings["loss_type"]])
        val = metrics.series("val", "PLCC").values
        assert row[4] == f"{max(val):.3f} ({val.index(max(val)) + 1})"
        assert row[5:] == [f"{metrics.final('SROCC'):.3f}", f"{metrics.final('PLCC'):.3f}"]
        assert row[1] == ("not reached" if max(val) < 0.8 else str(next(e for e, v in zip([1, 2], val) if v >= 0.8)))
        levels[losses[settings["loss_type"]]] = val
    # the paper's measure: when each loss reaches the val PLCC norm-in-norm had after epoch 1
    first = levels["Norm-in-Norm"][0]
    assert f"epochs to norm-in-norm's epoch-1 val PLCC ({first:.3f})" in (out_dir() / "figure1.md").read_text()
    for row in rows:
        reached = [epoch for epoch, value in zip([1, 2], levels[row[0]]) if value >= first]
        assert row[3] == (str(reached[0]) if reached else "not reached")
    assert is_png(out_dir() / "figure1.png")
    # a second call trains nothing: every run is complete
    assert reproduce(["figure1"] + TINY) == 0
    assert "\n== " not in capsys.readouterr().out


def test_figure4_end_to_end_trains_only_the_batchnorm_run(in_workdir, capsys):
    assert reproduce(["figure4"] + TINY) == 0
    out = capsys.readouterr().out
    assert out.count("\n== figure4") == 1 and "--use_bn_end" in out
    assert [row[0] for row in table_rows(out_dir() / "figure4.md")] == ["MSE", "MSE + BN", "Norm-in-Norm"]
    assert is_png(out_dir() / "figure4.png")


@pytest.mark.slow
def test_figure5_end_to_end(in_workdir, capsys):
    assert reproduce(["figure5", "--losses", "Norm-in-Norm"] + ONE_EPOCH) == 0
    assert capsys.readouterr().out.count("\n== figure5") == 8  # the basic run once, not three times
    rows = table_rows(out_dir() / "figure5.md")
    assert [row[:2] for row in rows] == [
        ["lr", "1e-3"],
        ["lr", "1e-4"],
        ["lr", "1e-5"],
        ["bs", "4"],
        ["bs", "8"],
        ["bs", "16"],
        ["ft_lr_ratio", "0"],
        ["ft_lr_ratio", "0.01"],
        ["ft_lr_ratio", "0.1"],
        ["ft_lr_ratio", "1"],
    ]
    resnet50 = [(settings, metrics) for settings, metrics in run_results("figure5") if settings["arch"] == "resnet50"]
    by_setting = {
        (settings["lr"], settings["batch_size"], settings["ft_lr_ratio"]): metrics for settings, metrics in resnet50
    }
    assert len(by_setting) == 8
    # on synthetic data the basic run has lr 1e-3 and ft_lr_ratio 1; each row changes one of them
    assert rows[2][2] == f"{by_setting[1e-5, 8, 1].final('PLCC'):.3f}"
    assert rows[3][2] == f"{by_setting[1e-3, 4, 1].final('PLCC'):.3f}"
    assert rows[8][2] == f"{by_setting[1e-3, 8, 0.1].final('PLCC'):.3f}"
    assert is_png(out_dir() / "figure5.png")


def test_figures_6_and_7_end_to_end_test_across_data_sets(in_workdir, capsys):
    options = ["--backbones", "ResNet-18", "--losses", "MAE", "Norm-in-Norm"] + ONE_EPOCH
    assert reproduce(["figure6"] + options) == 0
    out = capsys.readouterr().out
    assert out.count("\n== figure6") == 4 and out.count("test_dataset.py --dataset CLIVE") == 2
    rows = table_rows(out_dir() / "figure6.md")
    assert [row[:2] for row in rows] == [["MAE", "ResNet-18"], ["Norm-in-Norm", "ResNet-18"]]
    results = str(out_dir() / "results")
    for row, loss in zip(rows, ("l1", "Lp")):
        checkpoint = next(
            path
            for path in (out_dir() / "checkpoints").iterdir()
            if f"loss={loss}-" in path.name and "bs=16" in path.name and path.is_file()
        )
        tested = np.load(dataset_results_file(results, "CLIVE", str(checkpoint)), allow_pickle=True).item()
        assert len(tested["sq"]) == 12  # every CLIVE image, across data sets
        assert row[4:] == [f"{tested['SROCC']:.3f}", f"{tested['PLCC']:.3f}"]
        koniq = read_scores(os.path.join(results, checkpoint.name + "-scores.csv"))
        assert row[2] == f"{correlations(koniq['score'], koniq['mapped'])['SROCC']:.3f}"
    assert is_png(out_dir() / "figure6.png")
    assert reproduce(["figure7"] + options) == 0
    assert "\n== " not in capsys.readouterr().out  # the runs of Figure 6
    assert table_rows(out_dir() / "figure7.md") == rows
    assert is_png(out_dir() / "figure7.png")


def test_table1_end_to_end(in_workdir, capsys):
    assert reproduce(["table1", "--backbones", "ResNet-18"] + TINY) == 0
    assert capsys.readouterr().out.count("\n== table1") == 3  # p=1, q=2 is Figure 1's norm-in-norm run
    (row,) = table_rows(out_dir() / "table1.md")
    assert row[0] == "ResNet-18" and all(len(cell.split(" / ")) == 2 for cell in row[1:])
    orders = {
        (settings["p"], settings["q"]): metrics
        for settings, metrics in run_results("table1")
        if settings["loss_type"] == "Lp"
        and settings["alpha"] == [1, 0]
        and settings["arch"] == "resnet18"
        and settings["batch_size"] == 8
        and settings["dataset"] == "KonIQ-10k"
    }
    assert set(orders) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert row[3] == f"{orders[2, 1].final('SROCC'):.3f} / {orders[2, 1].final('PLCC'):.3f}"


def test_table2_end_to_end(in_workdir, capsys):
    assert reproduce(["table2"] + TINY) == 0
    out = capsys.readouterr().out
    assert out.count("main.py --dataset") == 3 and out.count("test_dataset.py --dataset") == 4
    rows = table_rows(out_dir() / "table2.md")
    assert [row[0] for row in rows] == ["l", "l + 0.1 l'", "l'", "l + l'"]
    assert all(not math.isnan(float(cell)) for row in rows for cell in row[1:])


def test_t_test_end_to_end(in_workdir, capsys):
    assert reproduce(["ttest", "--splits", "2", "--losses", "MAE", "Norm-in-Norm"] + ONE_EPOCH) == 0
    assert capsys.readouterr().out.count("\n== ttest") == 4
    clive = [(settings, metrics) for settings, metrics in run_results("ttest") if settings["dataset"] == "CLIVE"]
    assert sorted((settings["loss_type"], settings["exp_id"]) for settings, _ in clive) == [
        ("Lp", 0),
        ("Lp", 1),
        ("l1", 0),
        ("l1", 1),
    ]
    plcc = {(settings["loss_type"], settings["exp_id"]): metrics.final("PLCC") for settings, metrics in clive}
    rows = table_rows(out_dir() / "ttest.md")
    assert [row[:2] for row in rows] == [["MAE", "2"], ["Norm-in-Norm", "2"]]
    difference = np.mean([plcc["Lp", split] - plcc["l1", split] for split in (0, 1)])
    assert float(rows[0][3]) == pytest.approx(difference, abs=1.5e-3)
    assert 0 <= float(rows[0][4]) <= 1


def test_report_only_trains_nothing_and_says_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert reproduce(["table2", "--report_only"] + TINY) == 0
    out = capsys.readouterr().out
    assert "main.py --dataset" not in out and out.count("not run yet") == 4
    assert "No run has finished yet." in (out_dir() / "table2.md").read_text()
    assert not (out_dir() / "checkpoints").exists()
    assert not (tmp_path / "data").exists()  # no data set made for runs that are not trained


@pytest.mark.parametrize(
    "argv, message",
    [
        (["figure1", "--data", "synthetic", "--count", "5"], "--count 5 is too small: use at least 16 "),
        (["figure1", "--data", "real"], "KonIQ-10k is not set up"),
        (["figure1"] + TINY + ["--", "--nope", "1"], "'--nope' is not a main.py option"),
    ],
)
def test_mistakes_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert reproduce(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m reproduce: error: ") and message in err and err.count("\n") == 1


@pytest.mark.reliability
@pytest.mark.parametrize(
    "sizes, named",
    [
        (["--count", "15"], [("--count 15 is too small", "at least 16", "KonIQ-10k", "(11, 2, 3)")]),
        (
            ["--clive_count", "7", "--size", "31", "--count", "16"],
            [
                ("--clive_count 7 is too small", "at least 8", "CLIVE", "(4, 2, 2)"),
                ("--size 31 is too small", "at least 32"),
            ],
        ),
    ],
)
def test_sizes_too_small_name_only_those_as_typed(sizes, named, tmp_path, monkeypatch, capsys):
    # Before any data set is made: nothing is written.
    monkeypatch.chdir(tmp_path)
    assert reproduce(["figure1", "--data", "synthetic", *sizes]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m reproduce: error: ") and err.count("\n") == 1
    messages = err.split(": error: ", 1)[1].split("; ")
    assert len(messages) == len(named)
    for message, words in zip(messages, named):
        assert all(word in message for word in words), message
    assert "--count 16" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.reliability
def test_a_command_line_mistake_starts_as_its_other_messages(capsys):
    # argparse names the command by its prog: the one prefix of every message of `python -m reproduce`.
    with pytest.raises(SystemExit) as ended:
        reproduce(["figure1", "--count", "0"])
    assert ended.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("python -m reproduce: error: argument --count: ")


def test_the_smallest_sizes_are_the_fewest_images_the_splits_allow():
    # What the message says of 16 and 8, by the generator's KonIQ-10k shares and main.py's CLIVE ratios.
    least = LEAST_FOR_CORRELATION
    koniq = {count: Counter(_koniq_sets(np.random.default_rng(0), count)) for count in (15, 16)}
    assert [koniq[16][name] for name in ("training", "validation", "test")] == [11, 2, 3]
    assert koniq[15]["validation"] < least
    ratios = vars(get_args_parser().parse_args([]))
    clive = {n: split_sizes_from_ratios(n, ratios["train_ratio"], ratios["train_and_val_ratio"]) for n in (7, 8)}
    assert clive[8] == (4, 6) and clive[7][1] - clive[7][0] < least
