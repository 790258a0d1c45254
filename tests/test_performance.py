"""IQAperformance: metrics and mappings derived by hand, batching, instances that share
nothing, use inside an ignite engine, and gathering across processes."""

from __future__ import annotations

import math
import warnings

import ignite.distributed as idist
import numpy as np
import pytest
import torch
from ignite.engine import Engine

from IQAperformance import IQAPerformance, correlations, logistic_4
from linearityiqa.errors import ConfigError
from linearityiqa.training.distributed import ProcessPlan, start_processes

MOS = torch.tensor([1.0, 2.0, 3.0, 4.0])
# the model's output order: first side head, second side head, fused head
OUTPUT = (
    [
        torch.tensor([[1.0], [3.0], [2.0], [4.0]]),  # one pair swapped
        torch.tensor([[4.0], [3.0], [2.0], [1.0]]),  # reversed
        torch.tensor([[2.0], [4.0], [6.0], [8.0]]),
    ],  # 2 * MOS
    (MOS, torch.full((4,), 0.5)),
)


def evaluate(metric, *outputs):
    metric.reset()
    for output in outputs:
        metric.update(output)
    return metric.compute()


def test_training_status_fits_the_linear_mapping_by_least_squares():
    results = evaluate(IQAPerformance(status="train"), OUTPUT)
    # fused: 2 * MOS maps back exactly with k = 1/2, b = 0
    assert results["k"][0] == pytest.approx(0.5) and results["b"][0] == pytest.approx(0, abs=1e-12)
    assert (results["SROCC"], results["KROCC"], results["PLCC"]) == pytest.approx((1, 1, 1))
    assert results["RMSE"] == pytest.approx(0, abs=1e-12)
    # first side head [1, 3, 2, 4]: k = cov / var = 0.8, b = 2.5 - 0.8 * 2.5; mapped [1.3, 2.9, 2.1, 3.7]
    assert (results["k"][1], results["b"][1]) == pytest.approx((0.8, 0.5))
    assert results["SROCC1"] == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert results["KROCC1"] == pytest.approx(4 / 6)  # 5 concordant pairs, 1 discordant
    assert results["PLCC1"] == pytest.approx(0.8)
    assert results["RMSE1"] == pytest.approx(math.sqrt(0.45))
    np.testing.assert_allclose(results["pq1"], [1.3, 2.9, 2.1, 3.7])
    # second side head, reversed: k = -1, b = 5 maps it onto MOS
    assert (results["k"][2], results["b"][2]) == pytest.approx((-1, 5))
    assert (results["SROCC2"], results["PLCC2"], results["RMSE2"]) == pytest.approx((1, 1, 0), abs=1e-12)


def test_arrays_are_reported_as_the_authors_code_did():
    results = evaluate(IQAPerformance(status="train"), OUTPUT)
    np.testing.assert_array_equal(results["sq"], [1, 2, 3, 4])
    np.testing.assert_array_equal(results["sq_std"], [0.5] * 4)
    assert results["pq_before"].shape == (4, 1) and results["pq"].shape == (4,)
    np.testing.assert_array_equal(results["pq_before"].ravel(), [2, 4, 6, 8])
    np.testing.assert_array_equal(results["pq2_before"].ravel(), [4, 3, 2, 1])
    assert isinstance(results["k"], list) and len(results["k"]) == len(results["b"]) == 3


def test_other_statuses_apply_the_given_mapping():
    results = evaluate(IQAPerformance(status="test", k=[0.25, 1, 1], b=[1, 0, 0]), OUTPUT)
    np.testing.assert_allclose(results["pq"], [1.5, 2, 2.5, 3])
    assert results["RMSE"] == pytest.approx(math.sqrt((0.25 + 0 + 0.25 + 1) / 4))
    assert results["k"] == [0.25, 1, 1] and results["b"] == [1, 0, 0]
    # a reversed head stays reversed under an identity mapping
    assert results["SROCC2"] == pytest.approx(-1) and results["PLCC2"] == pytest.approx(-1)


def test_without_mapping_raw_predictions_are_compared():
    results = evaluate(IQAPerformance(status="train", mapping=False), OUTPUT)
    np.testing.assert_array_equal(results["pq"], [2, 4, 6, 8])
    assert results["RMSE"] == pytest.approx(math.sqrt(30 / 4))
    assert results["k"] == [1, 1, 1] and results["b"] == [0, 0, 0]


def test_batches_give_the_same_results_as_one_update():
    torch.manual_seed(0)
    mos = torch.rand(10) * 100
    heads = [mos.view(-1, 1) + 20 * torch.randn(10, 1) for _ in range(3)]
    whole = evaluate(IQAPerformance(), (heads, (mos, torch.ones(10))))
    parts = [([h[i : i + 4] for h in heads], (mos[i : i + 4], torch.ones(10)[i : i + 4])) for i in range(0, 10, 4)]
    batched = evaluate(IQAPerformance(), *parts)
    for key in ("SROCC", "PLCC", "RMSE", "KROCC", "SROCC1", "PLCC2", "k", "b"):
        assert batched[key] == pytest.approx(whole[key])
    np.testing.assert_array_equal(batched["pq_before"], whole["pq_before"])


def test_instances_share_no_mapping():
    first, second = IQAPerformance(status="train"), IQAPerformance(status="train")
    evaluate(first, OUTPUT)
    assert second.k == [1, 1, 1] and second.b == [0, 0, 0]
    given = [2.0, 2.0, 2.0]
    evaluate(IQAPerformance(status="train", k=given), OUTPUT)
    assert given == [2.0, 2.0, 2.0]


def test_reset_forgets_earlier_batches():
    metric = IQAPerformance(status="test", mapping=False)
    evaluate(metric, OUTPUT)
    shifted = ([h + 100 for h in OUTPUT[0]], OUTPUT[1])
    assert evaluate(metric, shifted)["pq_before"].ravel().tolist() == [102, 104, 106, 108]


def test_logistic_mapping_straightens_a_monotone_curve():
    # subjective scores that are an exact logistic function of the predictions
    predicted = torch.linspace(0, 10, 50)
    mos = torch.tensor(logistic_4(predicted.numpy(), 100.0, 0.0, 5.0, 0.7), dtype=torch.float32)
    results = evaluate(IQAPerformance(logistic=True), ([predicted.view(-1, 1)] * 3, (mos, torch.ones(50))))
    assert results["PLCC"] < 0.96
    assert results["PLCC_logistic"] > 0.9999 and results["RMSE_logistic"] < 0.01
    assert {"PLCC1_logistic", "RMSE1_logistic", "PLCC2_logistic", "RMSE2_logistic"} <= set(results)
    assert "PLCC_logistic" not in evaluate(IQAPerformance(), OUTPUT)


def test_runs_as_an_ignite_metric():
    evaluator = Engine(lambda engine, batch: batch)
    IQAPerformance(status="test").attach(evaluator, "IQA_performance")
    state = evaluator.run([OUTPUT, OUTPUT])
    results = state.metrics["IQA_performance"]
    assert results["SROCC"] == pytest.approx(1) and len(results["sq"]) == 8


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown status 'testing'"):
        IQAPerformance(status="testing")
    with pytest.raises(ConfigError, match="one value per head"):
        IQAPerformance(k=[1, 1])
    with pytest.raises(ConfigError, match="no data"):
        IQAPerformance().compute()


def _rank_share(rank):
    """Rank 0 sees 3 of the 8 samples, rank 1 the other 5."""
    torch.manual_seed(0)
    mos = torch.rand(8) * 100
    heads = [mos.view(-1, 1) + 10 * torch.randn(8, 1) for _ in range(3)]
    part = slice(0, 3) if rank == 0 else slice(3, 8)
    return ([h[part] for h in heads], (mos[part], torch.ones(8)[part])), (heads, (mos, torch.ones(8)))


def _distributed_evaluation(local_rank, result_file):
    share, _ = _rank_share(idist.get_rank())
    results = evaluate(IQAPerformance(), share)
    if idist.get_rank() == 0:
        torch.save({key: results[key] for key in ("SROCC", "PLCC", "RMSE", "k", "b", "sq")}, result_file)


def test_gathers_the_samples_of_every_process(tmp_path):
    result_file = str(tmp_path / "rank0.pt")
    start_processes(_distributed_evaluation, (result_file,), ProcessPlan(processes=2, backend="gloo", gpus=0))
    gathered = torch.load(result_file, weights_only=False)
    _, everything = _rank_share(0)
    single = evaluate(IQAPerformance(), everything)
    np.testing.assert_allclose(gathered["sq"], single["sq"], rtol=1e-6)
    for key in ("SROCC", "PLCC", "RMSE", "k", "b"):
        assert gathered[key] == pytest.approx(single[key])


@pytest.mark.parametrize("constant", ["predictions", "scores"])
def test_a_constant_side_has_no_correlation_and_no_warning(constant):
    """A model whose predictions collapsed, or scores all alike: NaN (printed n/a), quietly."""
    varied, flat = np.array([1.0, 2.0, 4.0, 3.0]), np.full(4, 5.0)
    score, mapped = (varied, flat) if constant == "predictions" else (flat, varied)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = correlations(score, mapped)
    assert all(math.isnan(results[name]) for name in ("SROCC", "KROCC", "PLCC"))
    assert results["RMSE"] == pytest.approx(math.sqrt(np.mean((score - mapped) ** 2)))
