"""linearityiqa/cli/options.py and settings.py: every command of the paper's README parses,
with the paper's defaults, under both spellings of the authors' flags, into the library's settings."""

from __future__ import annotations

import shlex

import numpy as np
import pytest
import torch

from IQAdataset import Batching
from linearityiqa.cli.options import get_args_parser, get_demo_parser, get_test_dataset_parser
from linearityiqa.cli.settings import (
    batching,
    image_loading,
    loss_kwargs,
    model_kwargs,
    pretrained_weights,
    resize_hw,
    train_augmentation,
    training_split,
)
from linearityiqa.data.dataset_registry import DataSource, Split, get_dataset_spec
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS
from linearityiqa.data.image_store import ImageLoading
from linearityiqa.data.image_transforms import TrainAugmentation
from linearityiqa.data.info_files import IQAInfo

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


def test_help_shows_every_option_with_its_default(capsys):
    for parser in (get_args_parser(), get_test_dataset_parser(), get_demo_parser()):
        with pytest.raises(SystemExit):
            parser.parse_args(["--help"])
        text = " ".join(capsys.readouterr().out.split())
        for action in parser._actions:
            if action.help is None or action.dest == "help":
                continue
            assert action.option_strings[-1] in text
        assert text.count("(default:") == len([a for a in parser._actions if a.dest != "help"])


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
