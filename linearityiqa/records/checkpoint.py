"""Checkpoints: the trained model with its linear mapping and the settings that built it.

A checkpoint is a dict with the authors' keys (`model`, `optimizer`, `k`, `b`; their
released files also hold apex's `amp` state) plus `settings`, the run's options as plain
Python types, so test_dataset.py and test_demo.py rebuild the model without repeating
flags. Everything in it loads with `torch.load(weights_only=True)`: opening a checkpoint
cannot run code. Files are written to a temporary name and renamed, so a crash during a
save never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from linearityiqa.errors import BadFileError, ConfigError, MissingFileError
from linearityiqa.records.writing import replacing

# What test_dataset.py and test_demo.py read when no checkpoint is named: the authors' released model.
RELEASED_CHECKPOINT = "checkpoints/p1q2.pth"
# Settings that determine the model's architecture; a checkpoint's own win over defaults.
MODEL_SETTINGS = ("arch", "pool", "use_bn_end", "P6", "P7")
# Prefixes that wrappers (DistributedDataParallel, torch.compile) put before parameter names.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def training_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    k: Sequence[float],
    b: Sequence[float],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """What main.py saves of its best model: the authors' keys, the loss scaler's state (if it
    scales the loss) and the run's settings."""
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "k": list(k),
        "b": list(b),
        "settings": dict(settings),
    }
    if scaler is not None:
        checkpoint["scaler"] = scaler.state_dict()
    return checkpoint


def save_checkpoint(path: str, checkpoint: Mapping[str, Any]) -> None:
    """Write `checkpoint` to `path` whole or not at all (records/writing.py)."""
    advice = "free space, or write it elsewhere (--trained_model_file)"
    with replacing(path, what="checkpoint", advice=advice, binary=True) as file:
        torch.save(dict(checkpoint), file)


def load_checkpoint(path: str, map_location: Any = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint of this project or of the authors' code.

    Args:
        path: the checkpoint file.
        map_location: where its tensors go.
        mmap: map the file's tensors into memory instead of reading them into new memory; the
            file must stay unchanged while they are in use (save_checkpoint replaces a file, it
            never rewrites one). A file in the legacy format, which cannot be mapped, is read.
    """
    if not os.path.isfile(path):
        raise MissingFileError(
            f"checkpoint {path} does not exist: check --trained_model_file, or train a model with main.py first"
        )
    try:
        # torch.save writes zip archives since PyTorch 1.6; older files are read as before.
        checkpoint = torch.load(
            path, map_location=map_location, weights_only=True, mmap=mmap and zipfile.is_zipfile(path)
        )
    except Exception as error:
        raise BadFileError(
            f"cannot read checkpoint {path} ({_first_line(error)}): the file is damaged or not a PyTorch checkpoint"
        ) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise BadFileError(f"checkpoint {path} holds no 'model' state: it is not a checkpoint of this model")
    checkpoint["model"] = _without_wrapper_prefixes(checkpoint["model"])
    return checkpoint


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _without_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    cleaned = {}
    for name, tensor in state.items():
        for prefix in _WRAPPER_PREFIXES:
            while name.startswith(prefix):
                name = name[len(prefix) :]
        cleaned[name] = tensor
    return cleaned


def model_settings(
    checkpoint: Mapping[str, Any], requested: Mapping[str, Any], defaults: Mapping[str, Any], path: str
) -> dict[str, Any]:
    """The model settings to build for a checkpoint.

    A checkpoint that records its settings supplies them; a setting the user asked for
    explicitly (a value other than the default) must then agree. The authors' files
    record none, so the requested settings are used as they are.
    """
    recorded = checkpoint.get("settings") or {}
    settings = {}
    for name in MODEL_SETTINGS:
        asked = requested[name]
        if name not in recorded:
            settings[name] = asked
        elif asked != defaults[name] and asked != recorded[name]:
            raise ConfigError(
                f"checkpoint {path} was trained with {name}={recorded[name]!r}, but "
                f"{name}={asked!r} was asked for: drop the option or use another checkpoint"
            )
        else:
            settings[name] = recorded[name]
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
            f"checkpoint {path} does not fit the model built with {described} "
            f"({_first_line(error)}): pass the --arch, --pool, --P6, --P7 and "
            f"--use_bn_end it was trained with"
        ) from None
