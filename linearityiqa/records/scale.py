"""The scale a model's scores are on: that of its training set's mean opinion scores (MOS), which
main.py's final test fits k * y + b of the fused head's output y to. A score is not clipped to
their range (an image unlike the training ones can score outside it). Checkpoints and ONNX files
record it as `scale` (the authors' checkpoints record none). Free of PyTorch: ONNX scoring reads it.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from linearityiqa.errors import BadFileError

# how a bad scale is shown in its message: whole (its five fields, or one more), unless it is large
_SHOWN = reprlib.Repr()
_SHOWN.maxdict = 6


@dataclass(frozen=True)
class TrainingScale:
    """The scale of a model's scores: the data set trained on (--dataset), the lowest, highest and
    mean MOS of its training images, and whether a higher score is a better quality (true of a MOS;
    difference scores, DMOS, would have it the other way round)."""

    dataset: str
    mos_min: float
    mos_max: float
    mos_mean: float
    higher_is_better: bool = True

    @classmethod
    def of(cls, dataset: str, mos: Iterable[Any]) -> TrainingScale:
        """The scale of the training MOS `mos` (numbers, an array or a tensor) of `dataset`."""
        values = [float(value) for value in mos]
        return cls(dataset, min(values), max(values), math.fsum(values) / len(values))

    def words(self) -> str:
        """The scale as a sentence's end: "KonIQ-10k's training MOS (3.91 to 88.39, mean 58.73), higher is better"."""
        direction = "higher is better" if self.higher_is_better else "lower is better"
        numbers = f"{self.mos_min:.4g} to {self.mos_max:.4g}, mean {self.mos_mean:.4g}"
        return f"{self.dataset}'s training MOS ({numbers}), {direction}"


def recorded_scale(fields: Any, where: str, advice: str) -> TrainingScale:
    """A file's recorded scale `fields`, checked: a data set's name, three finite numbers in order
    (min <= mean <= max) and whether higher is better; else a BadFileError that begins with `where`
    (the file and field: "checkpoint x.pth: 'scale'") and ends with `advice`."""
    try:
        dataset, higher_is_better = fields["dataset"], fields["higher_is_better"]
        low, high, mean = fields["mos_min"], fields["mos_max"], fields["mos_mean"]
        valid = isinstance(dataset, str) and isinstance(higher_is_better, bool)
        numbers = all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in (low, high, mean))
        valid = valid and numbers and all(map(math.isfinite, (low, high, mean))) and low <= mean <= high
    except (KeyError, TypeError):  # not a dict, or a field missing
        valid = False
    if not valid:
        raise BadFileError(
            f"{where} is {_SHOWN.repr(fields)}, not a dict of dataset (a name), mos_min <= mos_mean <= mos_max "
            f"(finite numbers) and higher_is_better (true or false): {advice}"
        )
    return TrainingScale(dataset, float(low), float(high), float(mean), higher_is_better)


def score_meaning(scale: TrainingScale | None) -> str:
    """What a score is, in one line: "k*y+b of the fused head, on <the scale>; not clipped to that range"."""
    on = f"on {scale.words()}" if scale else "on the scale of the training MOS, which this model does not record"
    return " ".join(f"k*y+b of the fused head, {on}; not clipped to that range".split())  # one line, whatever the name
