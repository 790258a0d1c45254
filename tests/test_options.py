"""linearityiqa/cli/options.py and settings.py: every command of the paper's README parses,
with the paper's defaults, under both spellings of the authors' flags, into the library's settings."""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import test_dataset as dataset_script
from IQAdataset import Batching
from IQAloss import IQALoss
from linearityiqa import options as table
from linearityiqa.cli.options import (
    build_parser,
    get_args_parser,
    get_demo_parser,
    get_export_parser,
    get_test_dataset_parser,
)
from linearityiqa.cli.settings import (
    LOSS_SETTINGS,
    batching,
    image_loading,
    loss_kwargs,
    model_kwargs,
    pretrained_weights,
    resize_hw,
    run_settings,
    train_augmentation,
    training_split,
)
from linearityiqa.data.dataset_registry import DataSource, Split, get_dataset_spec
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
from linearityiqa.data.image_store import ImageLoading
from linearityiqa.data.image_transforms import TrainAugmentation
from linearityiqa.data.info_files import IQAInfo
from linearityiqa.records.run_records import run_name

README_TRAIN = [
    "python main.py --dataset KonIQ-10k --resize --exp_id 0 --lr 1e-4 -bs 8 -e 30 --ft_lr_ratio 0.1 "
    "--arch resnext101_32x8d --loss_type Lp --p 1 --q 2",
    "python main.py --dataset KonIQ-10k --resize --exp_id 0 --lr 1e-4 -bs 8 -e 30 --ft_lr_ratio 0.1 "
    "--arch resnext101_32x8d --loss_type Lp --p 1 --q 2 --alpha 1 0.1",
]
README_TEST = [
    "python test_dataset.py --dataset KonIQ-10k --resize --arch resnext101_32x8d "
    "--trained_model_file checkpoints/p1q2.pth",
    "python test_dataset.py --dataset CLIVE --resize --arch resnext101_32x8d "
    "--trained_model_file checkpoints/p1q2plus0.1variant.pth",
]
README_DEMO = (
    "python test_demo.py --img data/1000.JPG --resize --arch resnext101_32x8d --trained_model_file checkpoints/p1q2.pth"
)


def parse(parser, command):
    return parser.parse_args(shlex.split(command)[2:])


@pytest.mark.parametrize("command", README_TRAIN)
def test_readme_training_commands(command):
    args = parse(get_args_parser(), command)
    assert (args.dataset, args.resize, args.exp_id, args.lr, args.batch_size, args.epochs) == (
        "KonIQ-10k",
        True,
        0,
        1e-4,
        8,
        30,
    )
    assert (args.ft_lr_ratio, args.arch, args.loss_type, args.p, args.q) == (0.1, "resnext101_32x8d", "Lp", 1, 2)
    assert args.alpha == ([1, 0.1] if "--alpha" in command else [1, 0])
    assert loss_kwargs(vars(args))["alpha"] == args.alpha


@pytest.mark.parametrize("command", README_TEST)
def test_readme_test_commands(command):
    args = parse(get_test_dataset_parser(), command)
    assert args.resize and args.arch == "resnext101_32x8d"
    assert args.trained_model_file.startswith("checkpoints/p1q2")
    assert args.dataset in ("KonIQ-10k", "CLIVE")


def test_readme_demo_command():
    args = parse(get_demo_parser(), README_DEMO)
    assert (args.img_path, args.resize, args.trained_model_file) == ("data/1000.JPG", True, "checkpoints/p1q2.pth")
    assert model_kwargs(vars(args)) == {
        "arch": "resnext101_32x8d",
        "pool": "avg",
        "use_bn_end": False,
        "P6": 1,
        "P7": 1,
    }


def test_the_papers_defaults():
    args = get_args_parser().parse_args([])
    expected = dict(
        lr=1e-4,
        batch_size=8,
        epochs=30,
        ft_lr_ratio=0.1,
        weight_decay=0,
        lr_decay=0.1,
        overall_lr_decay=0.01,
        opt_level="O1",
        alpha=[1, 0],
        beta=[0.1, 0.1, 1],
        arch="resnext101_32x8d",
        pool="avg",
        P6=1,
        P7=1,
        loss_type="norm-in-norm",
        p=1,
        q=2,
        gamma=0.1,
        dataset="KonIQ-10k",
        exp_id=0,
        train_ratio=0.6,
        train_and_val_ratio=0.8,
        resize=False,
        resize_size_h=498,
        resize_size_w=664,
        crop_size_h=498,
        crop_size_w=498,
        angle=2,
        hflip_p=0.5,
        seed=19920517,
        val_criterion="SROCC",
        log_dir="runs",
        accumulation_steps=1,
    )
    assert {name: getattr(args, name) for name in expected} == expected
    assert pretrained_weights(vars(args)) is True


def test_the_later_release_spellings():
    command = (
        "-lr 2e-4 -bs 4 -e 3 -flr 0 -accum 2 -wd 1e-5 -lrd 0.5 -olrd 0.1 -optl O0 -rn -valc PLCC "
        "-a 1 0.1 -b 0 0 1 -arch resnet18 -pl mean-std -ubne -P6 2 -P7 3 -lt mae -p 2 -q 1 -detach -monoreg "
        "-g 0.5 -ds CLIVE -eid 3 -tr 0.7 -tvr 0.9 -rs -rs_h 384 -rs_w 512 -augment -ag 5 -cs_h 320 -cs_w 320 "
        "-hp 0.25 -logd logs -tdt -eval -debug -pbar -modelfile ck.pth --seed 7"
    )
    args = get_args_parser().parse_args(command.split())
    assert (args.lr, args.batch_size, args.epochs, args.ft_lr_ratio, args.accumulation_steps) == (2e-4, 4, 3, 0, 2)
    assert (args.weight_decay, args.lr_decay, args.overall_lr_decay, args.opt_level) == (1e-5, 0.5, 0.1, "O0")
    assert args.randomness and args.val_criterion == "PLCC" and args.alpha == [1, 0.1] and args.beta == [0, 0, 1]
    assert model_kwargs(vars(args)) == {"arch": "resnet18", "pool": "mean-std", "use_bn_end": True, "P6": 2, "P7": 3}
    assert loss_kwargs(vars(args)) == dict(
        loss_type="mae",
        alpha=[1, 0.1],
        beta=[0, 0, 1],
        p=2,
        q=1,
        monotonicity_regularization=True,
        gamma=0.5,
        detach=True,
    )
    assert (args.dataset, args.exp_id, args.train_ratio, args.train_and_val_ratio) == ("CLIVE", 3, 0.7, 0.9)
    assert (args.resize, args.resize_size_h, args.resize_size_w, args.augmentation) == (True, 384, 512, True)
    assert (args.angle, args.crop_size_h, args.crop_size_w, args.hflip_p) == (5, 320, 320, 0.25)
    assert (args.log_dir, args.test_during_training, args.evaluate, args.debug, args.pbar) == (
        "logs",
        True,
        True,
        True,
        True,
    )
    assert (args.trained_model_file, args.seed) == ("ck.pth", 7)
    long_names = get_args_parser().parse_args(
        "--learning_rate 3e-4 --architecture resnet34 --batch_size 2 --epochs 1 --augmentation".split()
    )
    assert (long_names.lr, long_names.arch, long_names.batch_size, long_names.augmentation) == (
        3e-4,
        "resnet34",
        2,
        True,
    )
    assert get_demo_parser().parse_args(["--img_path", "a.jpg"]).img_path == "a.jpg"


def test_help_shows_every_option_it_lists_with_its_default(capsys):
    for parser in (get_args_parser(), get_test_dataset_parser(), get_demo_parser(), get_export_parser()):
        text = " ".join(help_text(parser, capsys).split())
        listed = [action for action in parser._actions if action.help is not argparse.SUPPRESS]
        for action in listed:
            assert action.option_strings[-1] in text
        assert text.count("(default:") == len([action for action in listed if action.dest != "help"])


def test_speed_options_are_shared_where_they_apply():
    for parser in (get_args_parser(), get_test_dataset_parser(), get_demo_parser()):
        args = parser.parse_args(["-ebs", "4", "-optl", "bf16"])
        assert (args.eval_batch_size, args.opt_level) == (4, "bf16")
        assert parser.parse_args([]).eval_batch_size is None  # 32 on a GPU, 1 on a CPU
    training = get_args_parser()
    assert training.parse_args([]).compile is None
    assert training.parse_args(["--compile"]).compile == "default"
    assert training.parse_args(["--compile", "reduce-overhead"]).compile == "reduce-overhead"
    # the training batch size is main.py's alone: test_demo.py scores in batches of --eval_batch_size
    with pytest.raises(SystemExit):
        get_demo_parser().parse_args(["-bs", "2"])


def test_pretrained_choices():
    assert pretrained_weights(vars(get_args_parser().parse_args(["--pretrained", "none"]))) is False
    assert pretrained_weights(vars(get_args_parser().parse_args(["--pretrained", "w.pth"]))) == "w.pth"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-bs", "0"], "argument -bs/--batch_size: 0 is out of range: it must be an integer at least 1"),
        (["-bs", "-8"], "argument -bs/--batch_size: -8 is out of range"),
        (["-bs", "8.5"], "argument -bs/--batch_size: '8.5' is not an integer"),
        (["-e", "0"], "argument -e/--epochs: 0 is out of range"),
        (["--lr", "0"], "argument --lr/-lr/--learning_rate: 0 is out of range: it must be a number above 0"),
        (["--lr", "-0.0001"], "argument --lr/-lr/--learning_rate: -0.0001 is out of range"),
        (["--lr", "nan"], "argument --lr/-lr/--learning_rate: nan is out of range"),
        (["--lr", "inf"], "argument --lr/-lr/--learning_rate: inf is out of range"),
        (["--lr", "fast"], "argument --lr/-lr/--learning_rate: 'fast' is not a number"),
        (
            ["--ft_lr_ratio", "-0.1"],
            "argument --ft_lr_ratio/-flr: -0.1 is out of range: it must be a number at least 0",
        ),
        (["-cs_h", "0"], "argument -cs_h/--crop_size_h: 0 is out of range"),
        (["-rs_w", "-664"], "argument -rs_w/--resize_size_w: -664 is out of range"),
        (
            ["-tr", "1.5"],
            "argument -tr/--train_ratio: 1.5 is out of range: it must be a number at least 0 and at most 1",
        ),
        (["-hp", "2"], "argument -hp/--hflip_p: 2 is out of range"),
        (["-lrd", "0"], "argument -lrd/--lr_decay: 0 is out of range: it must be a number above 0 and at most 1"),
        (["-accum", "0"], "argument -accum/--accumulation_steps: 0 is out of range"),
        (["-ebs", "0"], "argument -ebs/--eval_batch_size: 0 is out of range"),
        (["--num_workers", "-1"], "argument --num_workers: -1 is out of range"),
        (["--max_pixels", "0"], "argument --max_pixels: 0 is out of range: it must be an integer at least 1"),
        (["-p", "0"], "argument -p/--p: 0 is out of range"),
        (["--alpha", "1", "-1"], "argument -a/--alpha: -1 is out of range"),
        (["--loss_type", "l3"], "argument -lt/--loss_type: invalid choice: 'l3'"),
        (["--arch", "resnet18", "--opt_level", "O2"], "argument -optl/--opt_level: invalid choice: 'O2'"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ],
)
@pytest.mark.reliability
def test_a_number_out_of_range_or_an_unknown_choice_is_an_argparse_error(argv, message, capsys):
    parser = get_args_parser()
    with pytest.raises(SystemExit) as exit_status:
        parser.parse_args(argv)
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"{parser.prog}: error: {message}") and "Traceback" not in err


def test_numbers_in_range_keep_their_types():
    args = get_args_parser().parse_args(
        ["-bs", "4", "--lr", "1e-3", "-tr", "0", "-tvr", "1", "--ft_lr_ratio", "0", "-lrd", "1", "--num_workers", "0"]
    )
    assert (args.batch_size, args.lr, args.train_ratio, args.train_and_val_ratio, args.ft_lr_ratio) == (
        4,
        1e-3,
        0,
        1,
        0,
    )
    assert isinstance(args.batch_size, int) and isinstance(args.lr, float) and args.num_workers == 0


def test_a_training_command_becomes_the_data_settings_of_the_library():
    options = vars(parse(get_args_parser(), README_TRAIN[0] + " --augmentation -ebs 4 --cache_dir /tmp/c --debug"))
    assert resize_hw(options) == (498, 664)
    assert image_loading(options, resize_hw=(498, 664), verbose=False) == ImageLoading(
        resize_hw=(498, 664), cache_dir="/tmp/c", max_pixels=DEFAULT_MAX_PIXELS, verbose=False
    )
    assert train_augmentation(options) == TrainAugmentation(angle=2, hflip_p=0.5, crop_h=498, crop_w=498)
    assert train_augmentation({**options, "augmentation": False}) is None
    assert batching(options, torch.device("cpu")) == Batching(batch_size=8, eval_batch_size=4, debug=True)
    # without -ebs: one image at a time on a CPU, 32 on a GPU
    assert batching({**options, "eval_batch_size": None}, torch.device("cuda")).eval_batch_size == 32
    assert resize_hw(vars(parse(get_args_parser(), "python main.py --dataset KonIQ-10k"))) is None


def test_the_ratios_split_a_data_set_without_a_split_of_its_own(tmp_path):
    options = vars(get_args_parser().parse_args(["-eid", "3", "-tr", "0.5", "-tvr", "0.75"]))
    info = IQAInfo(["a.jpg"], np.ones(1), np.zeros(1), np.ones(1, dtype=np.int64), np.ones((1, 1), dtype=np.int64))
    koniq = DataSource(get_dataset_spec("KonIQ-10k"), info)  # the official split wins over the ratios
    assert training_split(options, koniq) == Split(exp_id=3)
    clive = DataSource(get_dataset_spec("CLIVE"), info)
    assert training_split(options, clive) == Split(exp_id=3, train_ratio=0.5, train_and_val_ratio=0.75)


def help_text(parser, capsys):
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    return capsys.readouterr().out


# What each script reads (grep options[, settings[ and args. in it and in the library it calls),
# written out: its --help lists these and no others.
MODEL = {"arch", "pool", "use_bn_end", "P6", "P7", "trained_model_file"}
RESIZE = {"resize", "resize_size_h", "resize_size_w"}
EVALUATION = {"max_pixels", "eval_batch_size", "opt_level", "device", "num_workers"}
LISTED = {
    "main.py": MODEL
    | RESIZE
    | {"loss_type", "alpha", "beta", "p", "q", "detach", "monotonicity_regularization", "gamma"}
    | {"dataset", "exp_id", "train_ratio", "train_and_val_ratio", "data_info", "im_dir", "cache_dir"}
    | {"augmentation", "angle", "crop_size_h", "crop_size_w", "hflip_p", "batch_size", "lr", "epochs", "ft_lr_ratio"}
    | {"accumulation_steps", "skip_nonfinite", "weight_decay", "lr_decay", "overall_lr_decay", "randomness"}
    | {"compile", "val_criterion", "test_during_training", "evaluate", "log_dir", "resume", "quickstart"}
    | {"nproc_per_node", "pretrained", "seed", "debug", "pbar", "results_dir"}
    | EVALUATION,
    # the options that name a training run's checkpoint (records/run_records.run_name), the data set and results
    "test_dataset.py": MODEL
    | RESIZE
    | EVALUATION
    | {"loss_type", "alpha", "beta", "p", "q", "detach", "monotonicity_regularization"}
    | {"augmentation", "batch_size", "lr", "epochs", "ft_lr_ratio", "dataset", "exp_id"}
    | {"data_info", "im_dir", "cache_dir", "results_dir"},
    "test_demo.py": MODEL
    | RESIZE
    | EVALUATION
    | {"pbar", "img_path", "output", "onnx", "heads", "ray", "ray_workers"}
    | {"window"}
    | {"resume"},
    "export_onnx.py": MODEL | RESIZE | {"output"},
    "app.py": MODEL | RESIZE | EVALUATION | {"onnx", "host", "port", "max_files", "max_file_size"},
}
# What each script accepted before without using it: still parsed, left out of its --help.
HIDDEN = {
    "main.py": set(),
    "test_dataset.py": {"gamma", "train_ratio", "train_and_val_ratio", "angle", "crop_size_h", "crop_size_w"}
    | {"hflip_p", "seed", "debug", "pbar"},
    "test_demo.py": {"dataset", "exp_id", "train_ratio", "train_and_val_ratio", "data_info", "im_dir", "cache_dir"}
    | {"seed", "debug"},
    "export_onnx.py": set(),
    "app.py": set(),
}
PARSERS = {
    "main.py": get_args_parser,
    "test_dataset.py": get_test_dataset_parser,
    "test_demo.py": get_demo_parser,
    "export_onnx.py": get_export_parser,
    "app.py": lambda: build_parser(table.APP, "app.py's parser"),
}
FLAG = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")


@pytest.mark.parametrize("script", table.SCRIPTS)
def test_each_scripts_help_lists_exactly_the_options_it_uses(script, capsys):
    parser = PARSERS[script]()
    shown = {action.dest for action in parser._actions if action.help is not argparse.SUPPRESS} - {"help"}
    hidden = {action.dest for action in parser._actions if action.help is argparse.SUPPRESS}
    assert (shown, hidden) == (LISTED[script], HIDDEN[script])
    # the text itself: every flag of a listed option, and no flag of another (--seed is in --randomness's words)
    listed_flags = {"-h", "--help"} | {flag for row in table.OPTIONS if row.dest in shown for flag in row.flags}
    assert set(FLAG.findall(help_text(parser, capsys))) - {"--seed"} == listed_flags - {"--seed"}


def test_the_scripts_help_leaves_out_what_they_ignore(capsys):
    demo = help_text(get_demo_parser(), capsys)
    assert "--train_ratio" not in demo and "--exp_id" not in demo and "--cache_dir" not in demo and "-bs" not in demo
    assert "--img" in demo and "--max_pixels" in demo
    training = help_text(get_args_parser(), capsys)
    assert "--img" not in training and "--onnx" not in training
    tests = help_text(get_test_dataset_parser(), capsys)
    assert "--gamma" not in tests and "--seed" not in tests and "--lr" in tests and "--loss_type" in tests
    # the groups keep their titles
    assert "\ntraining schedule:\n" in tests and "\nloss:\n" in tests and "\ndata:\n" in demo
    export = help_text(get_export_parser(), capsys)
    assert "\nresize:\n" in export and "\nexport:\n" in export and "--dataset" not in export


def test_an_option_left_out_of_a_scripts_help_is_still_accepted_as_before():
    demo = get_demo_parser().parse_args(
        "--dataset CLIVE -eid 2 -tr 0.5 -tvr 0.9 --data_info i.mat --im_dir d --cache_dir none --seed 3 -debug".split()
    )
    assert (demo.dataset, demo.exp_id, demo.train_ratio, demo.train_and_val_ratio) == ("CLIVE", 2, 0.5, 0.9)
    assert (demo.data_info, demo.im_dir, demo.cache_dir, demo.seed, demo.debug) == ("i.mat", "d", "none", 3, True)
    tests = get_test_dataset_parser().parse_args(
        "-g 0.5 -tr 0.7 -ag 5 -cs_h 320 -cs_w 300 -hp 0 --seed 1 -pbar".split()
    )
    assert (tests.gamma, tests.train_ratio, tests.angle, tests.crop_size_h, tests.crop_size_w) == (
        0.5,
        0.7,
        5,
        320,
        300,
    )
    assert (tests.hflip_p, tests.seed, tests.pbar, tests.debug, tests.train_and_val_ratio) == (0, 1, True, False, 0.8)
    # checked as before: a hidden option's bad value is the same argparse error
    with pytest.raises(SystemExit):
        get_demo_parser().parse_args(["-tr", "2"])


def test_what_a_script_did_not_accept_it_still_refuses(capsys):
    for script, argv in [("test_demo.py", ["-bs", "2"]), ("test_demo.py", ["-lt", "mae"]), ("main.py", ["--img", "a"])]:
        with pytest.raises(SystemExit):
            PARSERS[script]().parse_args(argv)
    with pytest.raises(SystemExit):
        get_export_parser().parse_args(["--dataset", "CLIVE", "-o", "m.onnx"])
    with pytest.raises(SystemExit):
        get_export_parser().parse_args([])
    assert "the following arguments are required: -o/--output" in capsys.readouterr().err
    assert get_export_parser().parse_args(["-o", "m.onnx", "-rs"]).output == "m.onnx"


def test_the_table_defines_each_option_and_each_flag_once():
    dests = [row.dest for row in table.OPTIONS]
    flags = [flag for row in table.OPTIONS for flag in row.flags]
    assert len(dests) == len(set(dests)) == 68 and len(flags) == len(set(flags))
    for row in table.OPTIONS:
        assert row.group in table.GROUPS and row.takes and not row.takes & row.accepts
        assert row.takes | row.accepts <= set(table.SCRIPTS) and set(row.elsewhere) <= row.takes
        assert row.help.strip() and all(FLAG.fullmatch(flag) for flag in row.flags)
    # every row is some script's: the parsers together hold the table
    parsed = {action.dest for make in PARSERS.values() for action in make()._actions} - {"help"}
    assert parsed == set(dests)


def test_the_lists_derived_from_the_table_are_those_written_out_before():
    model = ("arch", "pool", "use_bn_end", "P6", "P7")
    assert table.MODEL_SETTINGS == model
    assert table.RESUMED == model + (
        "loss_type", "alpha", "beta", "p", "q", "detach", "monotonicity_regularization", "gamma",
        "dataset", "exp_id", "train_ratio", "train_and_val_ratio", "resize", "resize_size_h", "resize_size_w",
        "augmentation", "angle", "crop_size_h", "crop_size_w", "hflip_p",
        "batch_size", "accumulation_steps", "lr", "ft_lr_ratio", "weight_decay", "lr_decay", "overall_lr_decay",
        "val_criterion", "test_during_training", "opt_level", "seed", "debug",
    )  # fmt: skip
    types = {"arch": str, "pool": str, "use_bn_end": bool, "P6": int, "P7": int}
    assert table.RECORDED_TYPES == {**types, "resize": bool, "resize_size_h": int, "resize_size_w": int}
    assert list(table.RECORDED_TYPES) == [*model, "resize", "resize_size_h", "resize_size_w"]
    loss = {"loss_type", "alpha", "beta", "p", "q", "monotonicity_regularization", "gamma", "detach"}
    assert set(LOSS_SETTINGS) == loss == set(inspect.signature(IQALoss).parameters)
    assert dataset_script.RUN_OPTIONS == {
        "loss_type", "alpha", "beta", "p", "q", "detach", "monotonicity_regularization",
        "lr", "batch_size", "epochs", "ft_lr_ratio", "augmentation",
    }  # fmt: skip


# Names that the hand-written formula of records/run_records.run_name gave before the table, byte for byte.
RUN_NAMES = [
    (
        "",
        "resnext101_32x8d-avg-bn_end=False-loss=norm-in-norm-p=1-q=2-detach-False-ft_lr_ratio=0.1-alpha=[1, 0]-"
        "beta=[0.1, 0.1, 1]-KonIQ-10k-res=False-768x1024-aug=False-monotonicity=False-lr=0.0001-bs=8-e=30-"
        "opt_level=O1-EXP0",
    ),
    (
        README_TRAIN[1].split(" ", 2)[2],
        "resnext101_32x8d-avg-bn_end=False-loss=Lp-p=1.0-q=2.0-detach-False-ft_lr_ratio=0.1-alpha=[1.0, 0.1]-"
        "beta=[0.1, 0.1, 1]-KonIQ-10k-res=True-498x664-aug=False-monotonicity=False-lr=0.0001-bs=8-e=30-"
        "opt_level=O1-EXP0",
    ),
    (
        "-ds CLIVE -arch resnet18 -pl mean-std -ubne -lt mae -p 2.5 -q 1 -detach -monoreg -a 1 0.5 -b 0 0 1 -flr 0 "
        "-rs -rs_h 384 -rs_w 512 -augment -lr 3e-05 -bs 4 -e 3 -optl bf16 -eid 7",
        "resnet18-mean-std-bn_end=True-loss=mae-p=2.5-q=1.0-detach-True-ft_lr_ratio=0.0-alpha=[1.0, 0.5]-"
        "beta=[0.0, 0.0, 1.0]-CLIVE-res=True-384x512-aug=True-monotonicity=True-lr=3e-05-bs=4-e=3-opt_level=bf16-EXP7",
    ),
    (
        "-ds MyData -pl maxmin -lt linearity -b 0.5 0.25 1 -optl O0 -rs -g 0.5 -ag 9 -wd 0.1 --seed 2",
        "resnext101_32x8d-maxmin-bn_end=False-loss=linearity-p=1-q=2-detach-False-ft_lr_ratio=0.1-alpha=[1, 0]-"
        "beta=[0.5, 0.25, 1.0]-MyData-res=True-498x664-aug=False-monotonicity=False-lr=0.0001-bs=8-e=30-"
        "opt_level=O0-EXP0",
    ),
]


@pytest.mark.parametrize("command, name", RUN_NAMES)
def test_the_run_name_from_the_table_is_the_hand_written_ones(command, name):
    settings = run_settings(get_args_parser().parse_args(command.split()))
    assert settings["run_name"] == run_name(settings) == name


def test_the_table_loads_no_pytorch():
    check = "import linearityiqa.options, linearityiqa.cli.options, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True, cwd=Path(__file__).parents[1])
