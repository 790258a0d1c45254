"""LinearityIQA (Li, Jiang, Jiang, ACM MM 2020): the paper's model, loss and metrics, and the
machinery behind its scripts, grouped by concern.

    from linearityiqa import IQAModel, IQALoss, norm_loss_with_normalization, IQAPerformance, load

gives the objects the paper's modules define (IQAmodel.py, IQAloss.py, IQAperformance.py: the
files at a clone's root, or their copies in an installed wheel; see `paper`), and `load`, the
Python API (`api`): a trained model that scores paths, PIL images, arrays and tensors as
test_demo.py does. The subpackages hold what the scripts are built on: the data sets (`data`), a
training run (`training`), what a run writes to disk (`records`), how the model runs fast
(`acceleration`), scoring images (`scoring`), what the scripts share and the `linearityiqa`
command (`cli`), and the errors a user can cause (`errors`). Nothing here imports an entry script.
"""

from __future__ import annotations

__version__ = "0.9.0"

# Each name and the module that defines it; imported on first use, so that importing the package
# itself stays free of PyTorch (the ONNX path never loads it).
_EXPORTS = {
    "IQAModel": "IQAmodel",
    "IQALoss": "IQAloss",
    "norm_loss_with_normalization": "IQAloss",
    "IQAPerformance": "IQAperformance",
    "load": "api",
    "QualityModel": "api",
    "Prediction": "api",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'linearityiqa' has no attribute {name!r}")
    if _EXPORTS[name] == "api":
        from linearityiqa import api as module
    else:
        from linearityiqa import paper

        module = getattr(paper, _EXPORTS[name])
    return getattr(module, name)
