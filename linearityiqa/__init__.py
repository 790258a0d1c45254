"""LinearityIQA (Li, Jiang, Jiang, ACM MM 2020): the paper's model, loss and metrics, and the
machinery behind its scripts, grouped by concern.

    from linearityiqa import IQAModel, IQALoss, norm_loss_with_normalization, IQAPerformance, load

gives the objects of the paper's modules (the files at a clone's root, or their copies in an
installed wheel: `paper`) and `load`, the Python API (`scoring`): a trained model that scores
images as test_demo.py does. The subpackages hold the scripts' machinery: `data`, `training`,
`records` (what a run writes), `cli`; nothing here imports an entry script.
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
    "load": "scoring",
    "QualityModel": "scoring",
    "Prediction": "scoring",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'linearityiqa' has no attribute {name!r}")
    if _EXPORTS[name] == "scoring":
        from linearityiqa import scoring as module
    else:
        from linearityiqa import paper

        module = getattr(paper, _EXPORTS[name])
    return getattr(module, name)
