"""benchmarks/common.py: the harness every benchmark's options, folders and tables go through, and the
sub-commands of bench_training."""

from __future__ import annotations

import pytest

from benchmarks.bench_training import COMMANDS, evaluations, steps
from benchmarks.common import command_parser, options_parser, table, work_folder

OPTIONS = {
    "--steps": (20, "timed steps"),
    "--archs": (["resnet50", "resnext101_32x8d"], "backbones"),
    "--setting": ("o1", "trainer setting", ("fp32", "o1")),
    "--heads": (None, "heads to report (default: all)", ["pq", "pq6", "pq7"]),
    "--rate": (None, "images/s (default: measured here)", float),
    "--work-dir": (None, "folder (default: temporary)"),
    "--onnx": (False, "also time the export"),
}


def test_options_take_the_type_of_their_default_or_the_one_given():
    parser = options_parser("Time something.\n\nMore.", OPTIONS)
    assert parser.description == "Time something."
    args = parser.parse_args([])
    assert (args.steps, args.archs, args.setting, args.rate, args.work_dir, args.onnx) == (
        20,
        ["resnet50", "resnext101_32x8d"],
        "o1",
        None,
        None,
        False,
    )
    args = parser.parse_args("--steps 3 --archs resnet18 --setting fp32 --rate 1.5 --work-dir w --onnx".split())
    assert (args.steps, args.archs, args.setting, args.rate, args.work_dir, args.onnx) == (
        3,
        ["resnet18"],
        "fp32",
        1.5,
        "w",
        True,
    )


@pytest.mark.parametrize("argv", [["--steps", "2.5"], ["--setting", "bf16"], ["--rate", "fast"]])
def test_a_value_of_the_wrong_kind_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as ended:
        options_parser("Time something.", OPTIONS).parse_args(argv)
    assert ended.value.code == 2 and argv[0] in capsys.readouterr().err


def test_help_shows_a_default_once(capsys):
    with pytest.raises(SystemExit):
        options_parser("Time something.", OPTIONS).parse_args(["-h"])
    help = " ".join(capsys.readouterr().out.split())
    assert "timed steps (default: 20)" in help and "folder (default: temporary)" in help
    assert "default: None" not in help and "default: False" not in help


def test_a_table_prints_its_head_then_a_row_per_call(capsys):
    row = table("setting", "images/s")
    row("fp32", 1.5)
    assert capsys.readouterr().out.splitlines() == ["| setting | images/s |", "|---|---|", "| fp32 | 1.5 |"]


def test_a_temporary_work_folder_goes_and_a_named_one_stays(tmp_path):
    with work_folder(None, "bench_") as temporary:
        assert temporary.is_dir()
    assert not temporary.exists()
    with work_folder(str(tmp_path / "kept" / "here"), "bench_") as kept:
        (kept / "cache").mkdir()
    assert (tmp_path / "kept" / "here" / "cache").is_dir()


def test_each_training_benchmark_is_a_sub_command_with_its_own_options_and_defaults():
    parse = command_parser("Time the model.", COMMANDS).parse_args
    step, evaluation = parse(["step", "--settings", "fp32", "o1"]), parse(["eval", "--images", "8"])
    assert (step.measure, step.batch_size, step.settings) == (steps, 8, ["fp32", "o1"])
    assert (evaluation.measure, evaluation.batch_size, evaluation.images) == (evaluations, 32, 8)
    assert parse(["epoch"]).setting == "o1-cl-rn" and parse(["loading"]).count == 2000
    with pytest.raises(SystemExit) as ended:
        parse(["loading", "--settings", "fp32"])  # an option of another sub-command
    assert ended.value.code == 2
