"""benchmarks/common.py: the harness every benchmark's options, folders and tables go through."""

from __future__ import annotations

import pytest

from benchmarks.common import options_parser, table, work_folder

OPTIONS = {
    "--steps": (20, "timed steps"),
    "--archs": (["resnet50", "resnext101_32x8d"], "backbones"),
    "--setting": ("o1", "trainer setting", ["fp32", "o1"]),
    "--rate": (None, "images/s (default: measured here)", float),
    "--work-dir": (None, "folder (default: temporary)"),
}


def test_options_take_the_type_of_their_default_or_the_one_given():
    parser = options_parser("Time something.\n\nMore.", OPTIONS)
    assert parser.description == "Time something."
    args = parser.parse_args([])
    assert (args.steps, args.archs, args.setting, args.rate, args.work_dir) == (
        20,
        ["resnet50", "resnext101_32x8d"],
        "o1",
        None,
        None,
    )
    args = parser.parse_args("--steps 3 --archs resnet18 --setting fp32 --rate 1.5 --work-dir w".split())
    assert (args.steps, args.archs, args.setting, args.rate, args.work_dir) == (3, ["resnet18"], "fp32", 1.5, "w")


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
    assert "default: None" not in help


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
