"""The machinery behind the paper's scripts, grouped by concern.

The repository root holds what a user types and what the paper named (main.py,
test_dataset.py, test_demo.py, IQAmodel.py, IQAloss.py, IQAperformance.py, IQAdataset.py);
this package holds everything they are built on: the data sets (`data`), a training run
(`training`), what a run writes to disk (`records`), how the model runs fast
(`acceleration`), scoring images (`scoring`), what the scripts share (`cli`) and the errors a
user can cause (`errors`). Nothing here imports an entry script.

`linearityiqa.load(checkpoint, ...)` is the Python API (`api`): a trained model that scores
paths, PIL images, arrays and tensors as test_demo.py does.
"""

from __future__ import annotations

__all__ = ["Prediction", "QualityModel", "load"]


def __getattr__(name: str):
    # The Python API (api.py) on first use: importing the package itself stays free of torch.
    if name in __all__:
        from linearityiqa import api

        return getattr(api, name)
    raise AttributeError(f"module 'linearityiqa' has no attribute {name!r}")
