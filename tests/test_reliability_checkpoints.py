"""Checkpoints and resume states are data to check, not to trust, tried on purpose: weights or a
mapping that a diverged run saved (NaN, infinity), fields of the wrong type or length, recorded
settings of the wrong types, a resume state of another run's options or cut short. Each is one
line that names the file and the field, exit status 1, and nothing written; the authors'
released layout and a resume with the same options go on working."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from data_helpers import save_plain_images, sha256
from ignite.engine import Events

import main
import test_dataset
import test_demo as demo
from linearityiqa.records.run_records import epochs_file, latest_resume_file, resume_folder

pytestmark = pytest.mark.reliability

SETTINGS = {"arch": "resnet18", "pool": "avg", "use_bn_end": False, "P6": 1, "P7": 1, "resize": True,
            "resize_size_h": 48, "resize_size_w": 64}  # fmt: skip
NAN, INF = float("nan"), float("inf")


def folder_state(folder) -> dict[str, str]:
    """Every file under `folder` and its hash."""
    return {str(path.relative_to(folder)): sha256(path) for path in sorted(Path(folder).rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def weights(resnet18_checkpoint):
    return torch.load(resnet18_checkpoint, weights_only=True)["model"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    save_plain_images(folder, {"a.jpg": (48, 64), "b.jpg": (48, 64)})
    return folder


def broken_checkpoint(weights, field, key, value):
    """A checkpoint as main.py saves one (less its optimizer, which scoring does not read) with
    checkpoint[field][key] set to `value` (or to value(old value), when it is a function); with
    no key, checkpoint[field]; with no field, `value` is the whole checkpoint."""
    # a few of resnet18's weights: the file is refused before a model is built, and writes fast
    model = {name: weights[name] for name in ("features.0.weight", "features.6.0.conv1.weight", "regression.weight")}
    checkpoint = {"model": model, "k": [50.0, 1.0, 1.0], "b": [10.0, 0.0, 0.0], "settings": dict(SETTINGS)}
    if field is None:
        return value
    if key is None:
        checkpoint[field] = value
    else:
        checkpoint[field][key] = value(checkpoint[field].get(key)) if callable(value) else value
    return checkpoint


def nan_filled(tensor: torch.Tensor) -> torch.Tensor:
    return torch.full_like(tensor, NAN)


def one_inf(tensor: torch.Tensor) -> torch.Tensor:
    spoiled = tensor.clone()
    spoiled.view(-1)[spoiled.numel() // 2] = INF
    return spoiled


POSITIVE = "not a positive integer"
# (id, field, key, value, what the message says after "checkpoint <path>")
BROKEN = [
    ("NaN weight", "model", "features.0.weight", nan_filled,
     ": weight 'features.0.weight' holds NaN or infinite values: the run that saved it diverged; "
     "use an earlier checkpoint or train again"),
    ("inf weight", "model", "features.6.0.conv1.weight", one_inf,
     ": weight 'features.6.0.conv1.weight' holds NaN or infinite values"),
    ("NaN k", "k", None, [NAN, 1.0, 1.0], ": k holds NaN or infinite values"),
    ("inf b", "b", None, [0.0, 0.0, -INF], ": b holds NaN or infinite values"),
    ("k of 2", "k", None, [1.0, 1.0], ": k is not what main.py saves (2 values, not 3 numbers"),
    ("k a number", "k", None, 1.0, ": k is not what main.py saves ("),
    ("b with a string", "b", None, [0.0, "1", 0.0], ": b is not what main.py saves (a list of 3 items holding"),
    ("model a tensor", "model", None, torch.zeros(3), ": 'model' is not what main.py saves ("),
    ("model key an int", "model", 7, torch.zeros(1), ": 'model' is not what main.py saves ("),
    ("model value a list", "model", "regression.weight", [1.0], ": 'model' is not what main.py saves ("),
    ("settings a list", "settings", None, ["resnet18"], ": 'settings' is not what main.py saves ("),
    ("settings key an int", "settings", 1, "x", ": 'settings' is not what main.py saves (the key 1 (an int)"),
    ("arch an int", "settings", "arch", 18, ": setting arch is 18 (an int), not a string"),
    ("P6 a str", "settings", "P6", "1", f": setting P6 is '1' (a str), {POSITIVE}"),
    ("P7 a bool", "settings", "P7", True, f": setting P7 is True (a bool), {POSITIVE}"),
    ("use_bn_end an int", "settings", "use_bn_end", 0, ": setting use_bn_end is 0 (an int), not true or false"),
    ("resize_size_h a float", "settings", "resize_size_h", 48.0,
     f": setting resize_size_h is 48.0 (a float), {POSITIVE}"),
    ("resize_size_w a str", "settings", "resize_size_w", "64", f": setting resize_size_w is '64' (a str), {POSITIVE}"),
    ("resize_size_h zero", "settings", "resize_size_h", 0, f": setting resize_size_h is 0 (an int), {POSITIVE}"),
    ("not a dict", None, None, [1.0], " holds a list of 1 item, not a dict: use a checkpoint saved by main.py"),
]  # fmt: skip


@pytest.mark.parametrize(("field", "key", "value", "message"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_a_broken_checkpoint_is_one_line_that_names_the_field(
    field, key, value, message, weights, images, tmp_path, capsys
):
    path, output = tmp_path / "broken.pth", tmp_path / "scores.csv"
    torch.save(broken_checkpoint(weights, field, key, value), path)
    before = sha256(path)
    argv = ["--img", str(images), "--trained_model_file", str(path), "-o", str(output)]
    assert demo.main(argv) == 1
    out, err = capsys.readouterr()
    assert err.startswith(f"test_demo.py: error: checkpoint {path}{message}") and err.count("\n") == 1
    assert err.endswith(": use a checkpoint saved by main.py or released by the authors\n") or "train again" in err
    assert "Traceback" not in err and out == ""
    assert not output.exists() and sha256(path) == before


def test_the_authors_layout_with_tensors_for_k_and_b_still_scores(weights, images, tmp_path):
    """Their files: model, optimizer, k, b, apex's amp state, no settings; k and b as 0-d and 1-element tensors."""
    plain, authors = tmp_path / "plain.pth", tmp_path / "p1q2.pth"
    torch.save({"model": dict(weights), "k": [50.0, 1.0, 1.0], "b": [10.0, 0.0, 0.0]}, plain)
    torch.save(
        {
            "model": dict(weights),
            "optimizer": {"state": {}, "param_groups": []},
            "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 0}},
            "k": [torch.tensor(50.0), torch.tensor([1.0]), torch.tensor(1.0)],
            "b": [torch.tensor([10.0]), torch.tensor(0.0), torch.tensor(0.0)],
        },
        authors,
    )
    small = ["--arch", "resnet18", "--resize", "-rs_h", "48", "-rs_w", "64", "--img", str(images)]
    for checkpoint in (plain, authors):
        assert demo.main([*small, "--trained_model_file", str(checkpoint), "-o", str(checkpoint) + ".csv"]) == 0
    scores = Path(str(authors) + ".csv").read_text()
    assert scores == Path(str(plain) + ".csv").read_text() and "nan" not in scores


def test_test_dataset_refuses_a_nan_checkpoint_before_testing(weights, koniq, tmp_path, capsys):
    path = tmp_path / "nan.pth"
    torch.save({"model": {**weights, "regression.bias": torch.full((1,), NAN)}, "k": [1.0] * 3, "b": [0.0] * 3}, path)
    results = tmp_path / "results"
    argv = ["--dataset", "KonIQ-10k", *koniq, "--trained_model_file", str(path), "--results_dir", str(results)]
    assert test_dataset.main(argv) == 1
    err = capsys.readouterr().err
    assert err == (f"test_dataset.py: error: checkpoint {path}: weight 'regression.bias' holds NaN or infinite "
                   f"values: the run that saved it diverged; use an earlier checkpoint or train again\n")  # fmt: skip
    assert not results.exists() or not any(results.iterdir())  # its folder is checked first, nothing written


# --resume: one run of two epochs stopped after the first, whose state is kept; each test that
# changes it works on a copy.


def run_argv(koniq, folder, *options) -> list[str]:
    command = "--dataset KonIQ-10k --resize -rs_h 48 -rs_w 64 --arch resnet18 --pretrained none -bs 4 --lr 1e-3 -e 2"
    outputs = ["--trained_model_file", str(folder / "model.pth"), "--results_dir", str(folder / "results"),
               "--log_dir", str(folder / "runs")]  # fmt: skip
    return [*command.split(), "--num_workers", "0", *outputs, *koniq, *options]


def stopping_after_epoch_1(build_trainer):
    """main.build_trainer, whose trainer stops once its first epoch is saved (as if killed then)."""

    def build(*args, **kwargs):
        trainer, epoch_log = build_trainer(*args, **kwargs)
        trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), lambda engine: engine.terminate())
        return trainer, epoch_log

    return build


@pytest.fixture(scope="module")
def interrupted(koniq, tmp_path_factory):
    """The folder of a run stopped after its first epoch, with the state saved then."""
    folder = tmp_path_factory.mktemp("interrupted")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(main, "build_trainer", stopping_after_epoch_1(main.build_trainer))
        patch.setattr(main, "remove_resume_state", lambda settings: None)  # a finished run removes it
        assert main.main(run_argv(koniq, folder)) == 0
    return folder


@pytest.fixture
def run_copy(interrupted, tmp_path):
    """A copy of the interrupted run's folder, for a test that changes it."""
    return Path(shutil.copytree(interrupted, tmp_path / "run"))


def resume_file(folder: Path) -> Path:
    return Path(latest_resume_file(resume_folder(str(folder / "model.pth"))))


@pytest.mark.parametrize(
    ("option", "saved", "asked"),
    [(["--arch", "resnet34"], "arch='resnet18'", "arch='resnet34'"), (["-bs", "2"], "batch_size=4", "batch_size=2")],
    ids=["arch", "batch size"],
)
def test_resume_with_other_options_names_the_first_that_differs(option, saved, asked, interrupted, koniq, capsys):
    before = folder_state(interrupted)
    capsys.readouterr()
    assert main.main(run_argv(koniq, interrupted, "--resume", *option)) == 1
    out, err = capsys.readouterr()
    state = resume_file(interrupted)
    assert err == (f"main.py: error: --resume: the saved state at {state} was trained with {saved}, this run "
                   f"asks for {asked}: pass the same options, or start anew without --resume\n")  # fmt: skip
    assert "epoch 2" not in out and folder_state(interrupted) == before


def loaders_that_must_not_run(monkeypatch) -> list:
    """main's loaders, which decode and cache the images, made to fail: the calls they got."""
    calls = []

    def load(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the images are loaded before --resume is checked")

    monkeypatch.setattr(main, "get_data_loaders", load)
    return calls


def test_resume_with_other_options_is_refused_before_any_image_is_loaded(interrupted, koniq, monkeypatch, capsys):
    before = folder_state(interrupted)
    loaded = loaders_that_must_not_run(monkeypatch)
    capsys.readouterr()
    assert main.main(run_argv(koniq, interrupted, "--resume", "--arch", "resnet34")) == 1
    assert capsys.readouterr().err == (
        f"main.py: error: --resume: the saved state at {resume_file(interrupted)} was trained with arch='resnet18', "
        f"this run asks for arch='resnet34': pass the same options, or start anew without --resume\n"
    )
    assert loaded == [] and folder_state(interrupted) == before


def test_resume_with_nothing_to_resume_is_refused_before_any_image_is_loaded(koniq, tmp_path, monkeypatch, capsys):
    loaded = loaders_that_must_not_run(monkeypatch)
    assert main.main(run_argv(koniq, tmp_path, "--resume")) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"main.py: error: nothing to resume in {tmp_path / 'model.pth.resume'}: ")
    assert "run without --resume" in err and err.count("\n") == 1
    assert loaded == [] and not (tmp_path / "model.pth").exists()


def test_a_resume_state_cut_short_is_one_line_that_names_it(run_copy, koniq, capsys):
    state = resume_file(run_copy)
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    before = folder_state(run_copy)
    assert main.main(run_argv(koniq, run_copy, "--resume")) == 1
    out, err = capsys.readouterr()
    assert err.startswith(f"main.py: error: --resume: the saved state at {state} is damaged (") and err.count("\n") == 1
    assert "delete it to resume from the state before it" in err and "Traceback" not in err
    assert "epoch 2" not in out and folder_state(run_copy) == before


def without_settings(state: Path) -> None:
    """Make `state` a state as saved before states recorded their run's settings."""
    saved = torch.load(state, weights_only=True)
    del saved["settings"]
    torch.save(saved, state)


def test_a_state_saved_without_settings_for_another_model_is_one_line(run_copy, koniq, capsys):
    state = resume_file(run_copy)
    without_settings(state)
    assert main.main(run_argv(koniq, run_copy, "--resume", "--arch", "resnet34")) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"main.py: error: --resume: the saved state at {state} does not fit this run (")
    assert err.endswith("pass the options it was trained with (--arch, --pool, --P6, --P7, --use_bn_end ...), "
                        "or start anew without --resume\n") and err.count("\n") == 1  # fmt: skip


@pytest.mark.parametrize("recorded", [True, False], ids=["with settings", "saved without settings"])
def test_resume_with_the_same_options_goes_on(recorded, run_copy, koniq, capsys):
    state = resume_file(run_copy)
    if not recorded:
        without_settings(state)
    # progress bars and evaluation batches do not change what is trained
    assert main.main(run_argv(koniq, run_copy, "--resume", "--pbar", "-ebs", "2")) == 0
    out = capsys.readouterr().out
    assert f"resuming from {state} after epoch 1" in out and "epoch 2:" in out


def test_a_longer_run_resumed_keeps_the_epochs_so_far(run_copy, koniq, run_name, capsys):
    """-e 3 resumes the run of -e 2, whose name (e= is part of it) is another: its epochs so far
    are carried from its file into the longer run's, and its own file is left as it was."""
    shorter, longer = run_argv(koniq, run_copy), run_argv(koniq, run_copy, "--resume", "-e", "3")
    earlier = Path(epochs_file(str(run_copy / "results"), run_name(shorter)))
    before = earlier.read_text()
    capsys.readouterr()
    assert main.main(longer) == 0
    later = Path(epochs_file(str(run_copy / "results"), run_name(longer)))
    out = capsys.readouterr().out
    assert f"note: the state was saved by the run {run_name(shorter)}; its epochs so far are kept in {later}\n" in out
    assert earlier.read_text() == before
    rows = later.read_text().splitlines()[1:]
    first_epoch = [line for line in before.splitlines()[1:] if line.startswith(("1,train,", "1,val,"))]
    assert first_epoch and [row for row in rows if row.startswith(("1,train,", "1,val,"))] == first_epoch
    assert {row.split(",")[0] for row in rows if ",val," in row} == {"1", "2", "3"}


def test_fewer_epochs_than_the_state_finished_is_one_line_before_any_image(run_copy, koniq, monkeypatch, capsys):
    state = resume_file(run_copy)
    saved = torch.load(state, weights_only=True)
    saved["trainer"].update(max_epochs=5, iteration=3 * saved["trainer"]["epoch_length"])  # 3 of 5 finished
    torch.save(saved, state)
    loaded = loaders_that_must_not_run(monkeypatch)
    assert main.main(run_argv(koniq, run_copy, "--resume")) == 1
    assert capsys.readouterr().err == (
        f"main.py: error: --resume: the saved state at {state} has finished 3 epochs, more than the 2 asked for "
        f"(-e): pass -e 3 or more\n"
    )
    assert loaded == []
