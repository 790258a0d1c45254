"""The values that the options offer and the library accepts, named once and free of PyTorch,
so that the command line can be built without loading it (test_demo.py --onnx never does)."""

from __future__ import annotations

# IQAloss.py: the training losses, and the names the paper's commands use for two of them
# (norm-in-norm by the norm it takes, MAE by its torch name).
LOSS_TYPES = ("norm-in-norm", "mae", "mse", "linearity", "min-max-norm", "mean-norm", "scaling")
LOSS_TYPE_ALIASES = {"Lp": "norm-in-norm", "l1": "mae"}
# IQAmodel.py: how SPSP pools each cell of the pyramid.
POOLING_METHODS = ("avg", "max", "min", "std", "maxmin", "mean-std")
# IQAmodel.py: the torchvision backbones the model is built on: these by name, ResNets by family.
FEATURES_ONLY_ARCHS = ("alexnet", "vgg16")
RESNET_FAMILIES = ("resnet", "resnext", "wide_resnet")
# acceleration.py: float32, float16 autocast with loss scaling (the paper's apex O1), bfloat16.
OPT_LEVELS = ("O0", "O1", "bf16")
# acceleration.py: torch.compile's modes.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# IQAperformance.py: samples below which a metric is not defined: a correlation needs two, the
# logistic's four parameters four (curve_fit refuses fewer). Below them the metric is NaN, "n/a" when printed.
LEAST_FOR_CORRELATION = 2
LEAST_FOR_LOGISTIC = 4
