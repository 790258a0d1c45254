"""test_demo.py and scoring.py: the paper's one-image line, batch scoring to CSV, and errors.

Expected scores are computed here the paper's way (PIL, torchvision Resize, ToTensor,
Normalize, the model's fused head mapped with k[0], b[0]), independently of scoring.py.
"""

from __future__ import annotations

import gc
import io
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import read_scores, save_plain_images
from PIL import Image
from torchvision import transforms

import test_demo as demo
from IQAmodel import IQAModel
from linearityiqa.acceleration import Precision, evaluation_batch_size
from linearityiqa.data.decoding import ImageSizing
from linearityiqa.errors import ConfigError
from linearityiqa.image_scoring import score_files
from linearityiqa.records.checkpoint import save_checkpoint
from linearityiqa.scoring import QualityModel, load_scorer

REPO = Path(__file__).resolve().parents[1]
REFERENCE_IMAGE = REPO.parent / "shared" / "reference" / "1000.JPG"
K, B = [50.0, 1.0, 1.0], [10.0, 0.0, 0.0]
SMALL = ["--resize", "-rs_h", "96", "-rs_w", "128"]
# A large slope spreads the random model's scores apart, and its rounding errors with them.
TOLERANCE = 1e-4
LINE = re.compile(r"The image quality score is (\S+)\n")
SETTINGS = {"arch": "resnet18", "pool": "avg", "use_bn_end": False, "P6": 1, "P7": 1}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return IQAModel(arch="resnet18", pretrained=False).eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, model):
    """Our layout with settings (resizing to 96 x 128 included) and the authors' (none)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    ours, authors = str(folder / "ours.pth"), str(folder / "p1q2.pth")
    save_checkpoint(
        ours,
        {
            "model": model.state_dict(),
            "k": K,
            "b": B,
            "settings": {**SETTINGS, "resize": True, "resize_size_h": 96, "resize_size_w": 128},
        },
    )
    torch.save({"model": model.state_dict(), "optimizer": {}, "k": K, "b": B}, authors)
    return {"ours": ours, "authors": authors}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Sorted names of a folder of images of three sizes, plus a text file and a broken JPEG."""
    folder = tmp_path_factory.mktemp("images")
    save_plain_images(
        folder,
        {"a.jpg": (64, 64), "b.JPG": (96, 80), "d.jpeg": (64, 64), "f.jpg": (128, 96), "g.jpg": (96, 80)},
        seed=1,
    )
    pixels = np.random.default_rng(2).integers(0, 256, size=(72, 88, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "c.png")
    (folder / "e.jpg").write_text("a text file, not a JPEG")
    (folder / "notes.txt").write_text("not an image either, and not listed")
    return folder


def expected_score(model, path, resize_hw=None) -> float:
    image = Image.open(path).convert("RGB")
    if resize_hw is not None:
        image = transforms.Resize(resize_hw, interpolation=transforms.InterpolationMode.BILINEAR)(image)
    x = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(transforms.ToTensor()(image))
    with torch.no_grad():
        return K[0] * model(x.unsqueeze(0))[2].item() + B[0]


def run_main(capsys, argv, stdin_text=None, monkeypatch=None):
    """(exit status, stdout, stderr) of test_demo.main(argv)."""
    if stdin_text is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    try:
        status = demo.main(argv)
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
        if not isinstance(exit_.code, int):
            print(exit_.code, file=sys.stderr)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def read_csv(text: str) -> list[dict]:
    return read_scores(text)


def test_the_readme_command_prints_the_paper_line(capsys, checkpoints, images, model):
    # the README's options, given to the script's main: the script run as a program is
    # test_a_mistake_in_a_process_prints_no_traceback's
    readme = ["--img", str(images / "f.jpg"), "--resize", "--arch", "resnet18"]
    readme += ["--trained_model_file", checkpoints["authors"], "-rs_h", "96", "-rs_w", "128"]
    status, out, err = run_main(capsys, readme)
    assert status == 0, err
    score = float(LINE.fullmatch(out).group(1))
    assert score == pytest.approx(expected_score(model, images / "f.jpg", (96, 128)), abs=TOLERANCE)


def test_one_image_at_its_own_size(capsys, checkpoints, images, model):
    status, out, err = run_main(
        capsys, ["--img", str(images / "c.png"), "--arch", "resnet18", "-modelfile", checkpoints["authors"]]
    )
    # an authors' file scored without --resize: one note, on stderr, and the paper's line alone on stdout
    assert status == 0 and err == (
        f"test_demo.py: note: {checkpoints['authors']} records no settings, as the authors' released checkpoints, "
        f"which were trained at 498x664 (--resize): scores of images at other sizes are not the paper's\n"
    )
    assert float(LINE.fullmatch(out).group(1)) == pytest.approx(expected_score(model, images / "c.png"), abs=TOLERANCE)


def test_resizing_comes_from_the_checkpoint_unless_an_option_says_otherwise(capsys, checkpoints, images, model):
    # the settings name the arch and resizing to 96 x 128; a flag overrides one side
    status, out, _ = run_main(capsys, ["--img", str(images / "a.jpg"), "-modelfile", checkpoints["ours"]])
    assert status == 0
    assert float(LINE.fullmatch(out).group(1)) == pytest.approx(
        expected_score(model, images / "a.jpg", (96, 128)), abs=TOLERANCE
    )
    _, out, _ = run_main(capsys, ["--img", str(images / "a.jpg"), "-modelfile", checkpoints["ours"], "-rs_w", "80"])
    assert float(LINE.fullmatch(out).group(1)) == pytest.approx(
        expected_score(model, images / "a.jpg", (96, 80)), abs=TOLERANCE
    )


@pytest.mark.skipif(not REFERENCE_IMAGE.is_file(), reason="the CLIVE photo is kept outside the repository")
def test_a_real_photo(capsys, checkpoints, model):
    status, out, _ = run_main(
        capsys, ["--img", str(REFERENCE_IMAGE), "--arch", "resnet18", *SMALL, "-modelfile", checkpoints["authors"]]
    )
    assert status == 0
    assert float(LINE.fullmatch(out).group(1)) == pytest.approx(
        expected_score(model, REFERENCE_IMAGE, (96, 128)), abs=TOLERANCE
    )


@pytest.mark.parametrize("resize_hw", [None, (96, 128)], ids=["own sizes", "resized"])
def test_batches_score_as_one_by_one(images, model, resize_hw):
    paths = [str(images / name) for name in ("a.jpg", "b.JPG", "c.png", "d.jpeg", "f.jpg", "g.jpg", "a.jpg")]
    scorer = QualityModel(
        model=model,
        k=K,
        b=B,
        device=torch.device("cpu"),
        recorded={},
        precision=Precision("float32"),
        channels_last=False,
        sizing=ImageSizing(resize_hw=resize_hw),
    )
    batched = score_files(replace(scorer, batch_size=3), paths)
    assert [result.path for result in batched] == paths
    for path, result in zip(paths, batched):
        alone = score_files(replace(scorer, batch_size=1), [path])[0]
        assert result.error is None and result.score == pytest.approx(alone.score, abs=TOLERANCE)
    assert len({round(result.score, 3) for result in batched}) == 6  # six images, told apart


def test_a_folder_is_scored_to_csv_and_a_broken_image_is_reported(capsys, checkpoints, images, model):
    status, out, err = run_main(
        capsys, ["--img", str(images), "--arch", "resnet18", "-ebs", "2", "-modelfile", checkpoints["authors"]]
    )
    rows = read_csv(out)
    assert [row["image"] for row in rows] == [
        str(images / name) for name in ("a.jpg", "b.JPG", "c.png", "d.jpeg", "e.jpg", "f.jpg", "g.jpg")
    ]
    for row in rows:
        if row["image"].endswith("e.jpg"):
            assert row["score"] == "" and "e.jpg" in row["error"]
        else:
            assert row["error"] == ""
            assert float(row["score"]) == pytest.approx(expected_score(model, row["image"]), abs=TOLERANCE)
    assert status == demo.EXIT_SOME_FAILED
    assert "warning" in err and str(images / "e.jpg") in err and "Traceback" not in err


def test_a_glob_is_scored_in_sorted_order(capsys, checkpoints, images, model):
    status, out, err = run_main(
        capsys,
        ["--img", str(images / "*.jpg"), "-modelfile", checkpoints["ours"], "-rs_h", "64", "-rs_w", "64", "-pbar"],
    )
    assert "scoring: 100%" in err  # the progress bar, on stderr: stdout is all CSV
    rows = read_csv(out)
    assert [Path(row["image"]).name for row in rows] == ["a.jpg", "e.jpg", "f.jpg", "g.jpg"]
    assert rows[2]["score"] and float(rows[2]["score"]) == pytest.approx(
        expected_score(model, images / "f.jpg", (64, 64)), abs=TOLERANCE
    )
    assert status == demo.EXIT_SOME_FAILED  # e.jpg


def test_stdin_paths_keep_their_order_and_a_csv_file_is_written(
    capsys, monkeypatch, tmp_path, checkpoints, images, model
):
    paths = [str(images / "g.jpg"), str(images / "c.png"), "", str(images / "a.jpg")]
    output = tmp_path / "scores.csv"
    status, out, err = run_main(
        capsys,
        ["--img", "-", "-modelfile", checkpoints["ours"], "-o", str(output)],
        stdin_text="\n".join(paths) + "\n",
        monkeypatch=monkeypatch,
    )
    assert (status, out) == (0, "") and err.count("\n") == 1  # what the scores are on, and nothing else
    assert err.startswith("test_demo.py: scores are k*y+b of the fused head, on the scale of the training MOS")
    rows = read_csv(output.read_text())
    assert [row["image"] for row in rows] == [path for path in paths if path]
    for row in rows:
        assert float(row["score"]) == pytest.approx(expected_score(model, row["image"], (96, 128)), abs=TOLERANCE)


def test_output_turns_one_image_into_csv(capsys, tmp_path, checkpoints, images, model):
    output = tmp_path / "one.csv"
    status, out, _ = run_main(
        capsys, ["--img", str(images / "a.jpg"), "-modelfile", checkpoints["ours"], "--output", str(output)]
    )
    assert (status, out) == (0, "")
    [row] = read_csv(output.read_text())
    assert row["image"] == str(images / "a.jpg") and row["error"] == ""
    assert float(row["score"]) == pytest.approx(expected_score(model, images / "a.jpg", (96, 128)), abs=TOLERANCE)


def test_a_missing_image_on_stdin_gets_a_row_and_the_rest_are_scored(capsys, monkeypatch, checkpoints, images):
    status, out, err = run_main(
        capsys,
        ["--img", "-", "-modelfile", checkpoints["ours"]],
        stdin_text=f"{images / 'gone.jpg'}\n{images / 'a.jpg'}\n",
        monkeypatch=monkeypatch,
    )
    rows = read_csv(out)
    assert rows[0]["score"] == "" and "does not exist" in rows[0]["error"] and rows[1]["score"]
    assert status == demo.EXIT_SOME_FAILED and "gone.jpg" in err


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing checkpoint", "does not exist: check --trained_model_file"),
        ("missing image", "image .*nothing.jpg does not exist"),
        ("empty folder", "holds no images"),
        ("glob without match", "no file matches"),
        ("checkpoint of another arch", "trained with arch='resnet18', but arch='resnet34'"),
        (
            "authors' checkpoint of another arch",
            "holds the weights of resnet18, but --arch resnet34 was asked for: leave --arch out",
        ),
        ("unreadable single image", "cannot decode image .*e.jpg"),
        (
            "image over --max_pixels",
            r"image .*a.jpg declares 64 x 64 pixels, more than the limit of 4,095 \(--max_pixels\)",
        ),
    ],
)
def test_mistakes_are_one_line_and_exit_1(capsys, monkeypatch, tmp_path, checkpoints, images, case, message):
    # the script switches Pillow's own pixel limit off for its whole process: undone after the test
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    (tmp_path / "empty").mkdir()
    argv = {
        "missing checkpoint": ["--img", str(images / "a.jpg"), "-modelfile", str(tmp_path / "none.pth")],
        "missing image": ["--img", str(images / "nothing.jpg"), "-modelfile", checkpoints["ours"]],
        "empty folder": ["--img", str(tmp_path / "empty"), "-modelfile", checkpoints["ours"]],
        "glob without match": ["--img", str(images / "*.gif"), "-modelfile", checkpoints["ours"]],
        "checkpoint of another arch": [
            "--img",
            str(images / "a.jpg"),
            "--arch",
            "resnet34",
            "-modelfile",
            checkpoints["ours"],
        ],
        "authors' checkpoint of another arch": [
            "--img",
            str(images / "a.jpg"),
            "--arch",
            "resnet34",
            "-modelfile",
            checkpoints["authors"],
        ],
        "unreadable single image": ["--img", str(images / "e.jpg"), "-modelfile", checkpoints["ours"]],
        "image over --max_pixels": [
            "--img",
            str(images / "a.jpg"),
            "--max_pixels",
            "4095",
            "-modelfile",
            checkpoints["ours"],
        ],
    }[case]
    status, out, err = run_main(capsys, argv)
    assert status == 1 and out == ""
    assert len(err.splitlines()) == 1 and re.match(f"test_demo.py: error: .*{message}", err)


def test_a_mistake_in_a_process_prints_no_traceback(tmp_path, images):
    done = subprocess.run(
        [
            sys.executable,
            "test_demo.py",
            "--img",
            str(images / "a.jpg"),
            "--trained_model_file",
            str(tmp_path / "missing.pth"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("test_demo.py: error: checkpoint") and "Traceback" not in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_a_clear_error(capsys, checkpoints, images):
    status, _, err = run_main(
        capsys, ["--img", str(images / "a.jpg"), "-modelfile", checkpoints["ours"], "--device", "cuda"]
    )
    assert status == 1 and "sees no CUDA device" in err


def test_an_unwritable_output_is_a_clear_error(capsys, checkpoints, images):
    status, _, err = run_main(
        capsys,
        [
            "--img",
            str(images / "a.jpg"),
            "-modelfile",
            checkpoints["ours"],
            "-o",
            os.path.join(str(images), "a.jpg", "scores.csv"),  # a file where a folder should be
        ],
    )
    in_the_way = r"cannot write the scores .*a.jpg/scores.csv: a file is in the way of its folder; pass another"
    assert status == 1 and re.search(in_the_way, err)
    status, _, err = run_main(capsys, ["--img", str(images / "a.jpg"), "-modelfile", checkpoints["ours"], "-o", "."])
    assert status == 1 and "cannot write the scores .: it is a folder, not a file; pass another --output" in err


def test_a_batch_size_below_1_is_refused(checkpoints, images):
    scorer = load_scorer(checkpoints["authors"], requested=SETTINGS, defaults=SETTINGS, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="batch size 0 is not positive: pass --eval_batch_size 1 or more"):
        score_files(replace(scorer, batch_size=0), [str(images / "a.jpg")])


def test_a_cpu_scores_one_image_per_pass_unless_a_batch_size_is_given():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert evaluation_batch_size(None, cpu) == 1 and evaluation_batch_size(None, cuda) == 32
    assert evaluation_batch_size(8, cpu) == 8 and evaluation_batch_size(32, cpu) == 32


def test_a_cpu_scores_in_channels_last_as_in_the_plain_layout(checkpoints, images, model):
    scorer = load_scorer(checkpoints["authors"], requested=SETTINGS, defaults=SETTINGS, device=torch.device("cpu"))
    assert scorer.channels_last and scorer.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    [result] = score_files(replace(scorer, batch_size=1), [str(images / "f.jpg")])
    assert result.score == pytest.approx(expected_score(model, images / "f.jpg"), abs=TOLERANCE)


def test_only_the_script_pauses_the_cycle_collector_for_its_imports():
    with demo.collector_paused(False):
        assert gc.isenabled()
    try:
        with demo.collector_paused(True):
            assert not gc.isenabled()
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
