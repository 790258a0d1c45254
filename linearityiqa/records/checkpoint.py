"""Checkpoints: the trained model with its linear mapping and the settings that built it, as docs/training.md ("What a
run writes") lists their keys. One loads with `torch.load(weights_only=True)`: opening it runs no code.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import torch

from linearityiqa import options
from linearityiqa.errors import BadFileError, ConfigError, OutputError, first_line, read_torch_file, value_kind
from linearityiqa.records.scale import TrainingScale, recorded_scale
from linearityiqa.records.writing import replacing

# What test_dataset.py and test_demo.py read when no checkpoint is named: the authors' released model.
RELEASED_CHECKPOINT = "checkpoints/p1q2.pth"
# What to do about a file that no code of this project or of the authors' wrote.
_USE_ANOTHER = "use a checkpoint saved by main.py or released by the authors"


def training_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    k: Sequence[float],
    b: Sequence[float],
    settings: Mapping[str, Any],
    *,
    scale: TrainingScale,
) -> dict[str, Any]:
    """What main.py saves of its best model: the authors' keys, the loss scaler's state, settings and scale."""
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "k": list(k),
        "b": list(b),
        "settings": dict(settings),
        "scale": asdict(scale),  # plain Python types, which torch.load(weights_only=True) reads
    }
    if scaler is not None:
        checkpoint["scaler"] = scaler.state_dict()
    return checkpoint


def save_checkpoint(path: str, checkpoint: Mapping[str, Any]) -> None:
    """Write `checkpoint` to `path` whole or not at all."""
    save_file(path, checkpoint, what="checkpoint", advice="free space, or write it elsewhere (--trained_model_file)")


def save_file(path: str, contents: Mapping[str, Any], *, what: str, advice: str) -> None:
    """torch.save `contents` to `path` whole or not at all; a full disk is one OutputError, Ctrl-C stays Ctrl-C.
    PyTorch's zip writer turns whatever its file's write raised (an OSError for a full disk, Ctrl-C's
    KeyboardInterrupt) into its own "[enforce fail at inline_container.cc] unexpected pos" error, whose
    __context__ is the failure."""
    with replacing(path, what=what, advice=advice, binary=True) as file:
        try:
            torch.save(dict(contents), file)
        except RuntimeError as error:
            cause = error.__context__
            while cause is not None and not isinstance(cause, (KeyboardInterrupt, OSError)):
                cause = cause.__context__
            if cause is not None:  # replacing() makes the OSError its one line; Ctrl-C ends the script as Ctrl-C does
                raise cause from None
            if "inline_container" not in str(error):  # not torch's zip writer: a bug, not the disk
                raise
            # the writer's own words, where it writes to a path: "unexpected pos", "file write failed"
            raise OutputError(
                f"cannot write {what} {path}: PyTorch's writer failed ({first_line(error)}), most often for "
                f"a full disk; {advice}; a file there before is kept"
            ) from None


def load_checkpoint(path: str, *, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint of this project or of the authors', read as data, not trusted: what fails to read, or would score
    wrongly without a word (NaN weights, k or b not three finite numbers), is a BadFileError naming the field. k and b
    become lists of floats, weight names lose wrapper prefixes. With `mmap` the tensors are mapped from the file, which
    must stay unchanged while in use (save_checkpoint replaces a file, never rewrites one)."""
    checkpoint = read_torch_file(
        path,
        what="checkpoint",
        option="--trained_model_file",
        advice="check --trained_model_file, or train a model with main.py first",
        expected="a checkpoint saved by main.py or released by the authors",
        mmap=mmap,
    )
    if "model" not in checkpoint:
        weights_only = checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values())
        hint = "it holds weights alone (a state_dict): save {'model': state_dict, 'k': k, 'b': b}, as main.py does"
        raise BadFileError(f"checkpoint {path} holds no 'model' state: {hint if weights_only else _USE_ANOTHER}")
    with _field(path, "'model'"):
        checkpoint["model"] = _finite_weights(checkpoint["model"], path)
    # The authors' files hold k and b as floats or as 1-element tensors; from here on they are floats.
    for name in ("k", "b"):
        if name in checkpoint:
            with _field(path, name):
                checkpoint[name] = _mapping_values(checkpoint[name], name, path)
    if "settings" in checkpoint:
        with _field(path, "'settings'"):
            _check_settings(checkpoint["settings"], path)
    if "scale" in checkpoint:
        recorded_scale(checkpoint["scale"], f"checkpoint {path}: 'scale'", _USE_ANOTHER)
    return checkpoint


def training_scale(checkpoint: Mapping[str, Any]) -> TrainingScale | None:
    """The scale of a checkpoint that `load_checkpoint` has checked; None where it records none."""
    scale = checkpoint.get("scale")
    return None if scale is None else recorded_scale(scale, "'scale'", _USE_ANOTHER)


def linear_mapping(checkpoint: Mapping[str, Any], path: str) -> tuple[list[float], list[float]]:
    """The k and b of a checkpoint that `load_checkpoint` has checked (at `path`); scoring needs them."""
    if "k" not in checkpoint or "b" not in checkpoint:
        raise BadFileError(f"checkpoint {path} holds no linear mapping (k, b) of its three heads: {_USE_ANOTHER}")
    return checkpoint["k"], checkpoint["b"]


@contextmanager
def _field(path: str, field: str) -> Iterator[None]:
    """Any failure to read `field` as main.py saves it as one line naming the checkpoint and the field."""
    try:
        yield
    except BadFileError:
        raise
    except (AttributeError, TypeError, ValueError, RuntimeError) as error:
        raise BadFileError(
            f"checkpoint {path}: {field} is not what main.py saves ({first_line(error)}): {_USE_ANOTHER}"
        ) from None


def _finite_weights(state: Mapping[str, torch.Tensor], path: str) -> dict[str, torch.Tensor]:
    """The weights, without the prefixes that wrappers put before their names; NaN or infinite ones are refused."""
    weights = {}
    for name, tensor in state.items():
        # one vectorized pass per tensor: 80 ms for resnext101_32x8d's 350 MB on 2 CPU cores
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise BadFileError(
                f"checkpoint {path}: weight {name!r} holds NaN or infinite values: the run that saved it "
                f"diverged; use an earlier checkpoint or train again"
            )
        for prefix in ("module.", "_orig_mod."):  # DistributedDataParallel's, torch.compile's
            while name.startswith(prefix):
                name = name[len(prefix) :]
        weights[name] = tensor
    return weights


def _mapping_values(values: Any, name: str, path: str) -> list[float]:
    """k or b as three finite floats, from numbers or 1-element tensors, or a tensor of three."""
    items = values.reshape(-1).tolist() if isinstance(values, torch.Tensor) else list(values)
    if len(items) != 3:
        raise TypeError(f"{len(items)} values, not 3 numbers (one for each head's linear mapping)")
    if any(isinstance(item, (bool, str)) for item in items):  # float() would take True and "1"
        raise TypeError(f"{value_kind(values)} holding {[type(item).__name__ for item in items]}, not 3 numbers")
    numbers = [float(item) for item in items]
    if not all(math.isfinite(number) for number in numbers):
        raise BadFileError(
            f"checkpoint {path}: {name} holds NaN or infinite values: its linear mapping was fitted to a model "
            f"that diverged; use an earlier checkpoint or train again"
        )
    return numbers


def _check_settings(settings: Mapping[str, Any], path: str) -> None:
    """The settings that rebuild the model have their options' types."""
    kinds = {str: "a string", bool: "true or false", int: "a positive integer"}
    for name, value in settings.items():
        if not isinstance(name, str):
            raise TypeError(f"the key {_shown(name)} is not an option name")
        kind = options.RECORDED_TYPES.get(name)
        # type(), not isinstance(): True is an int, but no size; the int options are positive
        if kind is not None and not (type(value) is kind and (kind is not int or value >= 1)):
            raise BadFileError(
                f"checkpoint {path}: setting {name} is {_shown(value)}, not {kinds[kind]}: {_USE_ANOTHER}"
            )


def _shown(value: Any) -> str:
    """A value as a message shows it: its repr and kind where that is short and one line, else its kind."""
    text = repr(value)
    return f"{text} ({value_kind(value)})" if len(text) <= 40 and "\n" not in text else value_kind(value)


def model_settings(
    checkpoint: Mapping[str, Any], requested: Mapping[str, Any], defaults: Mapping[str, Any], path: str
) -> dict[str, Any]:
    """The model settings to build for a checkpoint: those it records (the authors' record none),
    with which a setting asked for explicitly (other than its default) must agree."""
    recorded = checkpoint.get("settings") or {}
    settings = {}
    for name in options.MODEL_SETTINGS:
        asked = requested[name]
        if name in recorded and asked != defaults[name] and asked != recorded[name]:
            raise ConfigError(
                f"checkpoint {path} was trained with {name}={recorded[name]!r}, but "
                f"{name}={asked!r} was asked for: drop the option or use another checkpoint"
            )
        settings[name] = recorded.get(name, asked)
    return settings


def load_model_state(
    model: torch.nn.Module, checkpoint: Mapping[str, Any], path: str, settings: Mapping[str, Any] | None = None
) -> None:
    """Load the checkpoint's weights into `model`, strictly; a mismatch names the settings to check."""
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        described = ", ".join(f"{k}={v}" for k, v in (settings or {}).items())
        raise BadFileError(
            f"checkpoint {path} does not fit the model built with {described} ({first_line(error)}): pass the --arch, "
            "--pool, --P6, --P7 and --use_bn_end it was trained with"
        ) from None
