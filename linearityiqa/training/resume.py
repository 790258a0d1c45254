"""A run's whole state after each epoch, for --resume: saved beside its checkpoint, whole, one at a time, in the
layout of ignite's Checkpoint; read and checked against the run's options before the model is built and the images
decoded; removed when the run has finished (--resume of a finished run then says where its results are).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from linearityiqa.errors import BadFileError, ConfigError, IQAError, MissingFileError, first_line
from linearityiqa.options import RESUMED
from linearityiqa.records.checkpoint import save_file
from linearityiqa.records.run_records import (
    FINAL_TEST,
    EpochMetrics,
    epochs_file,
    latest_resume_file,
    results_file,
    resume_folder,
)
from linearityiqa.training.handlers import RunParts, say


class RandomStates:
    """Python's, NumPy's and PyTorch's random generators, kept in the resume state: a run resumed
    from the state of its last epoch fits k, b on the training batches the unbroken run drew."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss)
        return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        random.setstate(state["python"])
        kind, keys, *rest = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
        torch.set_rng_state(state["torch"])


def resume_state(trainer: Engine, parts: RunParts, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The objects whose state --resume restores, and the settings it must agree with."""
    state = {
        "trainer": trainer,
        "model": parts.model,
        "optimizer": parts.optimizer,
        "lr_scheduler": parts.scheduler,
        "progress": parts.progress,
        # the options that decide what is trained (options.RESUMED), and the run's name, under which its
        # files so far are (a longer run resumed takes another)
        "settings": {name: settings[name] for name in (*RESUMED, "run_name") if name in settings},
        "random": RandomStates(),
    }
    if parts.precision.scaler is not None:
        state["scaler"] = parts.precision.scaler
    return state


@dataclass(frozen=True)
class SavedState:
    """Each object's state read from `path`, by the names of `resume_state`; `finished` where the
    run had finished (no state was left; `path` is its test's metrics)."""

    path: str
    saved: dict[str, Any]
    finished: bool = False


def read_resume_state(settings: Mapping[str, Any]) -> SavedState:
    """The latest whole state saved beside the run's checkpoint, readable and saved with the same
    settings (ConfigError names the first that differs, or -e below its finished epochs); for a
    run that finished, where its results are is said and the state is `finished`."""
    folder = resume_folder(settings["trained_model_file"])
    path = latest_resume_file(folder)
    if path is None:
        return _finished_run(settings, folder)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or not isinstance(saved.get("settings", {}), dict):
            raise TypeError(f"it holds a {type(saved).__name__}, not a dict of states with a dict of settings")
    except Exception as error:  # a file cut short, or not a state
        raise BadFileError(
            f"--resume: the saved state at {path} is damaged ({first_line(error)}): delete it to resume from the "
            f"state before it, if any (or delete its folder to start over), or pass the right --trained_model_file"
        ) from None
    recorded = saved.get("settings", {})  # a setting it does not record (an older state) is not compared
    for name in RESUMED:
        if name in settings and name in recorded and recorded[name] != settings[name]:
            raise ConfigError(
                f"--resume: the saved state at {path} was trained with {name}={recorded[name]!r}, this run asks "
                f"for {name}={settings[name]!r}: pass the same options, or start anew without --resume"
            )
    try:  # ignite's Engine.state_dict; where it records no epochs, restoring it says what is wrong
        finished = int(saved["trainer"]["iteration"]) // int(saved["trainer"]["epoch_length"])
    except (TypeError, KeyError, ValueError, ZeroDivisionError):
        finished = 0
    if finished > settings["epochs"]:
        raise ConfigError(
            f"--resume: the saved state at {path} has finished {finished} epochs, more than the "
            f"{settings['epochs']} asked for (-e): pass -e {finished} or more"
        )
    return SavedState(path, saved)


def _finished_run(settings: Mapping[str, Any], folder: str) -> SavedState:
    """A run without a resume state finished when its checkpoint, its test's metrics and the final
    test in its -epochs.csv are there (a run killed before its first saved epoch has none of the last)."""
    checkpoint, results = settings["trained_model_file"], results_file(settings["results_dir"], settings["run_name"])
    if os.path.isfile(checkpoint) and os.path.isfile(results):
        with contextlib.suppress(IQAError):  # an epochs file unreadable: not a finished run's
            if EpochMetrics(epochs_file(settings["results_dir"], settings["run_name"])).has(FINAL_TEST):
                say(f"--resume: the run finished already: its best model is {checkpoint}, its test's metrics {results}")
                return SavedState(results, {}, finished=True)
    raise MissingFileError(
        f"nothing to resume in {folder}: no epoch of the run was saved there and it has no test's metrics "
        f"({results}); run without --resume to train it from the start (a run of another -e saves under its "
        f"own name: pass its --trained_model_file to train it longer)"
    )


def load_resume_state(state: dict[str, Any], resumed: SavedState) -> str | None:
    """Restore `state` (of `resume_state`) from `resumed`; the name the run had (None in a state
    saved before states recorded it). BadFileError where the state does not fit this run's objects."""
    path, saved = resumed.path, resumed.saved
    # a state saved before states kept the random generators restores the rest
    restored = {
        name: item for name, item in state.items() if name != "settings" and (name != "random" or name in saved)
    }
    try:
        Checkpoint.load_objects(to_load=restored, checkpoint=saved)
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        # states saved before they recorded their settings: a model of other options fails here
        raise BadFileError(
            f"--resume: the saved state at {path} does not fit this run ({first_line(error)}): pass the options "
            f"it was trained with (--arch, --pool, --P6, --P7, --use_bn_end ...), or start anew without --resume"
        ) from None
    say(f"resuming from {path} after epoch {state['trainer'].state.epoch}")
    name = saved.get("settings", {}).get("run_name")
    saved.clear()  # the states are in the run's objects now: no second copy for the whole run
    return name if isinstance(name, str) else None


def attach_resume_saver(trainer: Engine, state: dict[str, Any], trained_model_file: str) -> None:
    """Save the whole state after each epoch, for --resume (in the first process only)."""
    if idist.get_rank() == 0:
        trainer.add_event_handler(Events.EPOCH_COMPLETED, save_resume_state, state, resume_folder(trained_model_file))


def save_resume_state(engine: Engine, state: Mapping[str, Any], folder: str) -> None:
    """Save each object's state to <folder>/checkpoint_<epoch>.pt, whole, and only then remove the earlier states,
    another run's too (--resume would take a later epoch of it) and saves a kill cut short: one whole state (1 GB for
    resnext101_32x8d) is on the disk at any moment, and only one. A failed save leaves the folder as it was."""
    path = os.path.join(folder, f"checkpoint_{engine.state.epoch}.pt")
    # ignite's Checkpoint's layout, which --resume reads with Checkpoint.load_objects
    states = {name: item if isinstance(item, dict) else item.state_dict() for name, item in state.items()}
    advice = "free space (the states are saved beside --trained_model_file), then run again with --resume"
    try:
        save_file(path, states, what="the resume state", advice=f"{advice}, which goes on from the last state saved")
    except BaseException:
        with contextlib.suppress(OSError):  # only an empty folder can be removed so
            os.rmdir(folder)
        raise
    # the earlier states, and the temporary files (records/writing.py) of saves a kill cut short
    for name in os.listdir(folder):
        if name != os.path.basename(path) and re.fullmatch(r"\.?checkpoint_\d+\.pt(\..+\.partial)?", name):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))


def remove_resume_state(settings: Mapping[str, Any]) -> None:
    """A finished run needs no resume state, which would take the checkpoint's space again."""
    if idist.get_rank() == 0:
        shutil.rmtree(resume_folder(settings["trained_model_file"]), ignore_errors=True)
