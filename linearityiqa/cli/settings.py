"""From parsed options to what the library takes: a run's settings, and the model's, the loss's and the data's
arguments. The options arrive as a mapping of plain types (`vars(args)`, or the settings a checkpoint records, which
so rebuild what its run built); the library never sees an argparse namespace.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import torch

from linearityiqa.acceleration import evaluation_batch_size
from linearityiqa.data.dataset_registry import KONIQ_HW, DataSource, Split
from linearityiqa.data.image_store import ImageLoading
from linearityiqa.data.image_transforms import TrainAugmentation, checked_resize_hw
from linearityiqa.options import LOSS_SETTINGS, MODEL_SETTINGS
from linearityiqa.paper import IQAdataset
from linearityiqa.records.run_records import default_checkpoint, run_name
from linearityiqa.training.evaluation import val_criterion_for


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """main.py's options as plain types, with the validation criterion, run name and checkpoint path they give."""
    settings = with_stored_size(vars(args))
    settings["val_criterion"] = val_criterion_for(args.val_criterion, args.beta)
    settings["run_name"] = run_name(settings)
    settings["trained_model_file"] = args.trained_model_file or default_checkpoint(settings["run_name"])
    return settings


def with_stored_size(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options, with KonIQ-10k's stored size as the size when they do not resize: the run name records it."""
    settings = dict(options)
    if settings["dataset"] == "KonIQ-10k" and not settings["resize"]:
        settings["resize_size_h"], settings["resize_size_w"] = KONIQ_HW
    return settings


def koniq_run_checkpoint(options: Mapping[str, Any]) -> str:
    """The checkpoint main.py saves for a KonIQ-10k run with these model, loss and schedule options:
    what the authors' test_dataset.py tested when no checkpoint was named."""
    return default_checkpoint(run_name(with_stored_size({**options, "dataset": "KonIQ-10k"})))


def model_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    return {name: options[name] for name in MODEL_SETTINGS}


def pretrained_weights(options: Mapping[str, Any]) -> bool | str:
    return {"imagenet": True, "none": False}.get(options["pretrained"], options["pretrained"])


def loss_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    return {name: options[name] for name in LOSS_SETTINGS}


def data_source(options: Mapping[str, Any]) -> DataSource:
    return DataSource.open(options["dataset"], data_info=options["data_info"], im_dir=options["im_dir"])


def training_split(options: Mapping[str, Any], source: DataSource) -> Split:
    """The experiment's split: the data set's own (KonIQ-10k's official one), or else the ratios."""
    if source.has_own_split:
        return Split(exp_id=options["exp_id"])
    return Split(options["exp_id"], options["train_ratio"], options["train_and_val_ratio"])


def image_loading(
    options: Mapping[str, Any], *, resize_hw: tuple[int, int] | None, verbose: bool = True
) -> ImageLoading:
    """How the data set's images are decoded and cached, at `resize_hw` (None: their own size)."""
    return ImageLoading(
        resize_hw=resize_hw,
        cache_dir=None if options["cache_dir"] == "none" else options["cache_dir"],
        max_pixels=options["max_pixels"],
        verbose=verbose,
    )


def resize_hw(options: Mapping[str, Any]) -> tuple[int, int] | None:
    if not options["resize"]:
        return None
    return checked_resize_hw(options["resize_size_h"], options["resize_size_w"], max_pixels=options["max_pixels"])


def train_augmentation(options: Mapping[str, Any]) -> TrainAugmentation | None:
    if not options["augmentation"]:
        return None
    return TrainAugmentation(
        angle=options["angle"], hflip_p=options["hflip_p"], crop_h=options["crop_size_h"], crop_w=options["crop_size_w"]
    )


def batching(options: Mapping[str, Any], device: torch.device) -> IQAdataset.Batching:
    """How the loaders batch: -bs for training, --eval_batch_size (or the device's default) elsewhere."""
    return IQAdataset.Batching(
        batch_size=options["batch_size"],
        eval_batch_size=evaluation_batch_size(options["eval_batch_size"], device),
        num_workers=options["num_workers"],
        debug=options["debug"],
    )
