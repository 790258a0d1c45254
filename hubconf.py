"""torch.hub entry point: a trained LinearityIQA model in one line.

model = torch.hub.load("path/to/LinearityIQA", "linearityiqa", source="local",
                       trained_model_file="checkpoints/p1q2.pth", arch="resnext101_32x8d", resize=True)
model.score("data/1000.JPG")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from linearityiqa.scoring import load as _load

if TYPE_CHECKING:  # torch.hub lists every public callable here as an entry point: only the one below
    from typing import Any

    from linearityiqa.scoring import QualityModel

# What torch.hub checks is importable before it loads an entry point.
dependencies = ["torch", "torchvision", "PIL", "numpy", "scipy", "h5py", "tqdm"]


def linearityiqa(trained_model_file: str | None = None, **settings: Any) -> QualityModel:
    """A LinearityIQA model (Li, Jiang, Jiang, ACM MM 2020) that scores image quality.

    Args:
        trained_model_file: a checkpoint saved by main.py or released by the paper's authors
            (checkpoints/p1q2.pth); None gives the model with random weights, for trying the API.
        **settings: those of linearityiqa.load (arch, resize, device, ...).

    Returns a model whose `score(images, heads=False)` takes paths, PIL images, arrays or tensors
    and gives the score k[0] * y + b[0] of each image, as test_demo.py prints it.
    """
    return _load(trained_model_file, **settings)
