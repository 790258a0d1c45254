"""The fast paths compute what the plain path computes: uint8 batches normalized on the device,
batched evaluation, channels_last, autocast and torch.compile, each against the plain
float32, one-image-at-a-time, contiguous, eager path on the CPU."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from IQAdataset import IQADataset, evaluation_loader
from IQAloss import IQALoss
from IQAmodel import IQAModel
from linearityiqa import acceleration as A
from linearityiqa.data.dataset_registry import ALL_FOR_TESTING, DataSource
from linearityiqa.data.image_store import ImageLoading
from linearityiqa.data.image_transforms import normalize
from linearityiqa.errors import ConfigError
from linearityiqa.training.evaluation import Evaluation
from main import create_optimizer, create_trainer

CPU = torch.device("cpu")
HEADS = (("", "pq"), ("1", "pq1"), ("2", "pq2"))  # a head's metric suffix and its mapped predictions
# The backbone of the models that torch.compile compiles: AlexNet, the smallest, five convolutions
# where resnet18 has twenty and their BatchNorms. The compiler's cost (tens of CPU seconds on a cold
# cache) grows with the layers, each a kernel of its own; the parts of this project's making, the
# taps' spatial pyramid pooling, the heads (with their BatchNorm's running statistics) and the
# loss, are the same on any backbone.
COMPILED_ARCH = "alexnet"


def assert_metrics_agree(actual, expected):
    """Metrics of predictions computed along two paths (kernels, batch sizes, memory layouts) agree
    as far as float32 rounding lets them: the predictions within float32 tolerance, and each
    correlation within what moving every prediction by the largest difference d can do to it.

    PLCC moves by at most d / std(predictions) (the norm of its gradient). A rank correlation
    moves only when two predictions closer than 2 d swap: by at most 24 / (n^2 - 1) (SROCC) or
    4 / (n (n - 1)) (KROCC) for each such pair of neighbours, and not at all without one.
    """
    np.testing.assert_array_equal(actual["sq"], expected["sq"])  # the same images, in the same order
    for suffix, key in HEADS:
        mine, theirs = np.ravel(actual[key]), np.ravel(expected[key])
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5, err_msg=key)
        moved, count = np.max(np.abs(mine - theirs)), len(theirs)
        near_ties = int(np.sum(np.diff(np.sort(theirs)) <= 2 * moved))
        bounds = {
            "PLCC": moved / np.std(theirs),
            "SROCC": near_ties * 24 / (count**2 - 1),
            "KROCC": near_ties * 4 / (count * (count - 1)),
        }
        for name, bound in bounds.items():
            assert abs(actual[name + suffix] - expected[name + suffix]) <= bound + 1e-12, name + suffix


def make_model(seed=0, arch="resnet18"):
    torch.manual_seed(seed)
    return IQAModel(arch=arch, pretrained=False)


def uint8_batch(count=4, height=64, width=96, seed=1):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, height, width), dtype=torch.uint8, generator=generator)
    mos = torch.rand(count, generator=generator) * 100
    return images, (mos, torch.ones(count))


@pytest.fixture(scope="module")
def test_images(koniq):
    """The 30 images of the synthetic KonIQ-10k, at 64x96, all as one test split."""
    paths = dict(zip(koniq[::2], koniq[1::2]))
    source = DataSource.open("KonIQ-10k", data_info=paths["--data_info"], im_dir=paths["--im_dir"])
    loading = ImageLoading(resize_hw=(64, 96), cache_dir=paths["--cache_dir"], verbose=False)
    return IQADataset(source, status="test", split=ALL_FOR_TESTING, loading=loading)


def test_every_level_runs_in_float32_on_a_cpu():
    for level in A.OPT_LEVELS:
        precision = A.choose_precision(level, CPU)
        assert precision.autocast_dtype is None and precision.scaler is None
    with pytest.raises(ConfigError, match="unknown opt_level 'O2': use one of O0, O1, bf16"):
        A.choose_precision("O2", CPU)


def test_levels_on_cuda_are_the_papers_o1_and_bfloat16():
    cuda = torch.device("cuda")
    with warnings.catch_warnings():  # a GradScaler on a machine without CUDA warns that it is disabled
        warnings.simplefilter("ignore")
        o1 = A.choose_precision("O1", cuda)
    assert o1.autocast_dtype == torch.float16 and isinstance(o1.scaler, torch.amp.GradScaler)
    bf16 = A.choose_precision("bf16", cuda)
    assert bf16.autocast_dtype == torch.bfloat16 and bf16.scaler is None
    assert A.choose_precision("O0", cuda).autocast_dtype is None
    assert A.uses_channels_last(cuda) and A.uses_channels_last(CPU)


def test_uint8_batches_are_normalized_where_they_arrive():
    images, (mos, std) = uint8_batch()
    x, (mos_out, std_out) = A.batch_preparation(channels_last=True)((images, (mos, std)), CPU)
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, normalize(images)) and torch.equal(mos_out, mos) and torch.equal(std_out, std)
    already = normalize(images)
    assert A.prepare_images(already, CPU, channels_last=False) is already  # float input is taken as normalized


def test_a_training_step_on_uint8_equals_one_on_normalized_floats():
    """The trainer normalizes on the device what the paper's loader normalized per image."""
    images, targets = uint8_batch()
    results = []
    for batch in ((images, targets), (normalize(images), targets)):
        model = make_model()
        optimizer = create_optimizer(model, lr=1e-3, ft_lr_ratio=1, weight_decay=0)
        trainer = create_trainer(
            model, optimizer, IQALoss(), device=CPU, precision=A.Precision("float32"), accumulation_steps=1
        )
        trainer.run([batch], max_epochs=1)
        results.append((trainer.state.output, model.state_dict()))
    (loss, state), (float_loss, float_state) = results
    assert loss == float_loss
    for name, value in state.items():
        assert torch.equal(value, float_state[name]), name


def test_bfloat16_autocast_gives_float32_outputs_that_follow_float32():
    model = make_model().eval()
    x = normalize(uint8_batch(count=16)[0])
    with torch.no_grad():
        plain = A.forward_fn(A.Precision("float32"), CPU)(model, x)
        mixed = A.forward_fn(A.Precision("bf16", torch.bfloat16), CPU)(model, x)
    for exact, approximate in zip(plain, mixed):
        assert approximate.dtype == torch.float32 and approximate.shape == exact.shape == (16, 1)
        # bfloat16 keeps 8 bits of mantissa: values move, their order across images hardly does
        assert np.corrcoef(exact.view(-1), approximate.view(-1))[0, 1] > 0.99


def evaluate(model, images, *, batch_size, channels_last=False):
    if channels_last:
        A.set_memory_format(model, channels_last=True)
    evaluation = Evaluation(model.eval(), status="test", device=CPU, channels_last=channels_last)
    return evaluation.run(evaluation_loader(images, batch_size=batch_size, num_workers=0))


def test_batched_channels_last_evaluation_gives_the_metrics_of_one_image_at_a_time(test_images):
    alone = evaluate(make_model(), test_images, batch_size=1)
    batched = evaluate(make_model(), test_images, batch_size=8, channels_last=True)
    assert len(batched["sq"]) == len(alone["sq"]) == 30
    assert_metrics_agree(batched, alone)


def test_no_compile_mode_compiles_nothing():
    model = make_model()
    assert A.compile_model(model, None) is model


def test_a_compiled_model_evaluates_as_the_eager_one(test_images):
    """torch.compile (inductor, which needs a C++ compiler on the CPU) changes the kernels, not the results."""
    # batches of 10: the 30 images in batches of one shape, compiled once
    results = [
        Evaluation(A.compile_model(make_model(arch=COMPILED_ARCH), mode), status="test", device=CPU).run(
            evaluation_loader(test_images, batch_size=10, num_workers=0)
        )
        for mode in (None, "default")
    ]
    eager, compiled = results
    assert_metrics_agree(compiled, eager)


def test_a_compiled_model_takes_the_training_step_of_the_eager_one():
    # In float64: the loss divides by the spread of 4 predictions, which would magnify float32
    # rounding (a different order of sums in the fused kernels) past any tight tolerance. Nobody
    # trains in float64, so its kernels are compiled without vector instructions (simdlen 1): a third
    # less compiler time, and the same graph, fusions and state handling as a float32 run's.
    images, (mos, std) = uint8_batch(count=4, height=64, width=96)
    batch = (normalize(images).double(), (mos.double(), std.double()))
    runs = []
    for mode in (None, "default"):
        model = make_model(arch=COMPILED_ARCH).double()
        optimizer = create_optimizer(model, lr=1e-3, ft_lr_ratio=1, weight_decay=0)
        trainer = create_trainer(
            A.compile_model(model, mode),
            optimizer,
            IQALoss(),
            device=CPU,
            precision=A.Precision("float32"),
            accumulation_steps=1,
        )
        with torch._inductor.config.patch({"cpp.simdlen": 1}):
            trainer.run([batch], max_epochs=1)
        runs.append((trainer.state.output, {name: p.grad for name, p in model.named_parameters()}, model.state_dict()))
    (eager_loss, eager_gradients, eager_state), (loss, gradients, state) = runs
    assert loss == pytest.approx(eager_loss, rel=1e-10)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, eager_gradients[name], rtol=1e-7, atol=1e-10, msg=name)
    assert set(state) == set(eager_state)  # checkpoints keep their names (no _orig_mod.)


def test_the_model_compiles_whole_under_autocast():
    """The float32 heads inside an autocast region break no graph (fullgraph=True would raise).
    Graph breaks are TorchDynamo's, whatever the backend: aot_eager traces as inductor would,
    without compiling kernels."""
    model = make_model(arch=COMPILED_ARCH).eval()
    x = normalize(uint8_batch(count=16)[0])
    forward = A.forward_fn(A.Precision("bf16", torch.bfloat16), CPU)
    with torch.no_grad():
        eager = forward(model, x)
        compiled = forward(torch.compile(model, fullgraph=True, backend="aot_eager"), x)
    for exact, approximate in zip(eager, compiled):
        assert approximate.dtype == torch.float32
        assert np.corrcoef(exact.view(-1), approximate.view(-1))[0, 1] > 0.99


def test_a_cudnn_mode_holds_for_its_block_only():
    backend = torch.backends.cudnn
    before = backend.deterministic, backend.benchmark
    with A.cudnn_mode(deterministic=False):
        assert (backend.deterministic, backend.benchmark) == (False, True)  # benchmark mode: timed kernels
        with A.cudnn_mode(deterministic=True):
            assert (backend.deterministic, backend.benchmark) == (True, False)  # the paper's
        assert (backend.deterministic, backend.benchmark) == (False, True)
    assert (backend.deterministic, backend.benchmark) == before
