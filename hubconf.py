"""torch.hub entry point: a trained LinearityIQA model in one line.

model = torch.hub.load("path/to/LinearityIQA", "linearityiqa", source="local",
                       trained_model_file="checkpoints/p1q2.pth", arch="resnext101_32x8d", resize=True)
model.score("data/1000.JPG")

The entry point is linearityiqa.load under the name users type: its arguments, and its docstring
in torch.hub.help.
"""

from __future__ import annotations

from linearityiqa.scoring import load as linearityiqa

# torch.hub lists every public callable here as an entry point: the one above.
__all__ = ["linearityiqa"]
# What torch.hub checks is importable before it loads an entry point.
dependencies = ["torch", "torchvision", "PIL", "numpy", "scipy", "h5py", "tqdm"]
