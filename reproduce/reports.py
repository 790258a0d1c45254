"""The figures (PNG) and tables (Markdown) of the paper, drawn from what the runs recorded.

Every number comes from a run's own files (run_records.py): curves from its -epochs.csv, test
metrics and scatter plots from its -scores.csv. A report draws the runs that finished and counts
the others, so it can be looked at while an experiment is still going.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import product
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from IQAperformance import correlations
from linearityiqa.data.info_files import SPLITS
from linearityiqa.records.run_records import first_epoch_reaching, read_scores
from linearityiqa.records.writing import replacing
from reproduce.experiments import BACKBONES, LOSSES, SWEEPS, Experiment
from reproduce.runs import CROSS_DATASET, RunResult

METRICS = ("SROCC", "PLCC")
ADVICE = "free space, or pass another --out"
DEFAULT_THRESHOLDS = (0.8, 0.9)
# The colours of the paper's figures, one per loss.
COLOURS = {"MAE": "tab:orange", "MSE": "tab:blue", "MSE + BN": "tab:purple", "Norm-in-Norm": "tab:green"}


def write_report(
    experiment: Experiment,
    results: list[RunResult],
    *,
    out: Path,
    description: str,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> tuple[Path, Path | None]:
    """Write `experiment`'s table and draw its figure (none for a table of the paper) from its finished
    runs under `out`, headed by `description` (the data and training); the paths of both. `thresholds`:
    the validation PLCC levels whose first epoch the curves' table reports."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {experiment.title}", "", f"{description}; {len(results)} of {len(experiment.runs)} runs finished.", ""]
    drawing, table = REPORTS[experiment.report]
    figure = None
    if drawing is not None and results:
        figure = out / f"{experiment.name}.png"
        with replacing(figure, what="figure", advice=ADVICE, binary=True) as file:
            drawing(results, thresholds).savefig(file, dpi=120, format="png")
    lines += table(results, thresholds) if results else ["No run has finished yet."]
    path = out / f"{experiment.name}.md"
    with replacing(path, what="table", advice=ADVICE) as file:
        file.write("\n".join(lines) + "\n")
    return path, figure


def tested(result: RunResult, dataset: str) -> dict[str, float]:
    """SROCC, KROCC, PLCC and RMSE of a run's test on `dataset`, from its per-image scores."""
    scores = read_scores(result.scores[dataset])
    return correlations(scores["score"], scores["mapped"])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [f"| {' | '.join(cells)} |" for cells in (header, *rows)]
    return [lines[0], "|" + " --- |" * len(header), *lines[1:]]


def _label(result: RunResult) -> str:
    return result.run.labels["loss"]


def _found(results: list[RunResult], key: str) -> list[str]:
    """The values of label `key` among `results`, in the paper's order (losses, backbones, sweeps)."""
    order = {"loss": list(LOSSES), "backbone": list(BACKBONES), "sweep": list(SWEEPS)}[key]
    found = {result.run.labels[key] for result in results}
    return [name for name in order if name in found] + sorted(found - set(order))


def _epoch_axis(ax, title: str, ylabel: str) -> None:
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def draw_curves(results: list[RunResult], thresholds: Sequence[float]) -> Figure:
    """Figures 1 and 4: the metrics of each split during training, one line per loss."""
    splits = [split for split in SPLITS if any(result.metrics.series(split, "PLCC").epochs for result in results)]
    figure = Figure(figsize=(4.2 * len(splits), 7), layout="constrained")
    axes = figure.subplots(len(METRICS), len(splits), squeeze=False)
    for ax, (metric, split) in zip(axes.flat, product(METRICS, splits)):
        for result in results:
            series, label = result.metrics.series(split, metric), _label(result)
            ax.plot(series.epochs, series.values, marker=".", label=label, color=COLOURS.get(label))
        if (split, metric) == ("val", "PLCC"):
            for threshold in thresholds:  # the levels the table counts epochs to
                ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
        _epoch_axis(ax, f"{split} {metric}", metric)
    axes[0][0].legend()
    return figure


def curves_table(results: list[RunResult], thresholds: Sequence[float]) -> list[str]:
    """Epochs to each val PLCC threshold and, as the paper measured convergence, to the val PLCC
    that norm-in-norm reached after its first epoch; best val PLCC; the best model's test."""
    levels = [(f"epochs to val PLCC {threshold}", threshold) for threshold in thresholds]
    ours = [result.metrics.series("val", "PLCC").values for result in results if _label(result) == "Norm-in-Norm"]
    if ours and ours[0]:
        first = ours[0][0]
        levels.append((f"epochs to norm-in-norm's epoch-1 val PLCC ({first:.3f})", first))
    header = ["loss"] + [title for title, _ in levels] + ["best val PLCC (epoch)", "test SROCC", "test PLCC"]
    rows = []
    for result in results:
        val = result.metrics.series("val", "PLCC")
        best = int(np.argmax(val.values))
        rows.append(
            [_label(result)]
            + [str(first_epoch_reaching(val, level) or "not reached") for _, level in levels]
            + [f"{val.values[best]:.3f} ({val.epochs[best]})"]
            + [f"{result.metrics.final(metric):.3f}" for metric in METRICS]
        )
    return markdown_table(header, rows)


def draw_sweeps(results: list[RunResult], thresholds: Sequence[float]) -> Figure:
    """Figure 5: validation PLCC while one setting varies, one panel per loss."""
    sweeps, losses = _found(results, "sweep"), _found(results, "loss")
    figure = Figure(figsize=(4.2 * len(losses), 3.4 * len(sweeps)), layout="constrained")
    axes = figure.subplots(len(sweeps), len(losses), squeeze=False)
    for ax, (sweep, loss) in zip(axes.flat, product(sweeps, losses)):
        for result in results:
            if result.run.labels["sweep"] == sweep and _label(result) == loss:
                series = result.metrics.series("val", "PLCC")
                ax.plot(series.epochs, series.values, marker=".", label=f"{sweep} {result.run.labels['value']}")
        _epoch_axis(ax, f"{loss}: {sweep}", "val PLCC")
        ax.legend(fontsize="small")
    return figure


def sweeps_table(results: list[RunResult], thresholds: Sequence[float]) -> list[str]:
    losses = _found(results, "loss")
    by_setting: dict[tuple[str, str], dict[str, RunResult]] = defaultdict(dict)
    for result in results:
        by_setting[result.run.labels["sweep"], result.run.labels["value"]][_label(result)] = result
    rows = [
        [sweep, value] + [f"{runs[loss].metrics.final('PLCC'):.3f}" if loss in runs else "missing" for loss in losses]
        for (sweep, value), runs in by_setting.items()
    ]
    return markdown_table(["setting", "value"] + [f"{loss} test PLCC" for loss in losses], rows)


def draw_bars(results: list[RunResult], thresholds: Sequence[float]) -> Figure:
    """Figure 6: test metrics on KonIQ-10k and across data sets on CLIVE, a bar per loss and backbone."""
    backbones, losses = _found(results, "backbone"), _found(results, "loss")
    by_run = {(_label(result), result.run.labels["backbone"]): result for result in results}
    figure = Figure(figsize=(11, 4), layout="constrained")
    width = 0.8 / len(losses)
    for ax, (dataset, metric) in zip(figure.subplots(1, 2), (("KonIQ-10k", "PLCC"), (CROSS_DATASET, "SROCC"))):
        for offset, loss in enumerate(losses):
            values = [
                tested(by_run[loss, backbone], dataset)[metric] if (loss, backbone) in by_run else np.nan
                for backbone in backbones
            ]
            at = np.arange(len(backbones)) + (offset - (len(losses) - 1) / 2) * width
            bars = ax.bar(at, values, width * 0.9, label=loss, color=COLOURS.get(loss))
            ax.bar_label(bars, fmt="%.3f", fontsize="x-small")
        ax.set(title=f"{dataset} {metric}", ylabel=metric, xticks=np.arange(len(backbones)), xticklabels=backbones)
        ax.legend(fontsize="small", loc="lower right")
    return figure


def tests_table(results: list[RunResult], thresholds: Sequence[float]) -> list[str]:
    """Figures 6, 7 and Table 2: a run's labels, its test on KonIQ-10k and across data sets on CLIVE."""
    keys, datasets = list(results[0].run.labels), list(results[0].scores)
    header = keys + [f"{dataset} {metric}" for dataset in datasets for metric in METRICS]
    rows = []
    for result in results:
        tests = [tested(result, dataset) for dataset in datasets]
        rows.append(list(result.run.labels.values()) + [f"{test[metric]:.3f}" for test in tests for metric in METRICS])
    return markdown_table(header, rows)


def draw_scatter(results: list[RunResult], thresholds: Sequence[float]) -> Figure:
    datasets = list(results[0].scores)
    figure = Figure(figsize=(4 * len(results), 3.8 * len(datasets)), layout="constrained")
    axes = figure.subplots(len(datasets), len(results), squeeze=False)
    for ax, (dataset, result) in zip(axes.flat, product(datasets, results)):
        scores, metrics = read_scores(result.scores[dataset]), tested(result, dataset)
        order = np.argsort(scores["prediction"])
        ax.scatter(scores["prediction"], scores["score"], s=6, alpha=0.5, color=COLOURS.get(_label(result)))
        ax.plot(scores["prediction"][order], scores["mapped"][order], color="black", label="k x + b")
        title = f"{_label(result)} on {dataset}\nSROCC {metrics['SROCC']:.3f}, PLCC {metrics['PLCC']:.3f}"
        ax.set(title=title, xlabel="predicted quality", ylabel="MOS")
        ax.legend(fontsize="small", loc="upper left")
    return figure


def pq_table(results: list[RunResult], thresholds: Sequence[float]) -> list[str]:
    """Table 1: rows backbones, columns (p, q); each cell KonIQ-10k test SROCC / PLCC."""
    orders = [(p, q) for p in ("1", "2") for q in ("1", "2")]
    cells = {}
    for result in results:
        metrics, labels = tested(result, "KonIQ-10k"), result.run.labels
        cells[labels["backbone"], labels["p"], labels["q"]] = f"{metrics['SROCC']:.3f} / {metrics['PLCC']:.3f}"
    rows = [
        [backbone] + [cells.get((backbone, p, q), "missing") for p, q in orders]
        for backbone in _found(results, "backbone")
    ]
    header = ["backbone"] + [f"p={p}, q={q}" for p, q in orders]
    return ["KonIQ-10k test SROCC / PLCC.", "", *markdown_table(header, rows)]


def ttest_table(results: list[RunResult], thresholds: Sequence[float]) -> list[str]:
    """Test PLCC over the CLIVE splits for each loss, and paired t-tests of norm-in-norm against the others."""
    plcc: dict[str, dict[str, float]] = defaultdict(dict)
    for result in results:
        plcc[_label(result)][result.run.labels["split"]] = tested(result, result.run.dataset)["PLCC"]
    rows = []
    for loss in _found(results, "loss"):
        values = np.array(list(plcc[loss].values()))
        row = [loss, str(len(values)), f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"]
        rows.append(row + list(_paired_test(plcc["Norm-in-Norm"], plcc[loss]) if loss != "Norm-in-Norm" else ("", "")))
    header = ["loss", "splits", "PLCC mean ± std", "norm-in-norm minus it (mean)", "t-test p"]
    note = "Test PLCC per CLIVE split (exp_id); the t-test pairs the splits both losses finished."
    return [note, "", *markdown_table(header, rows)]


def _paired_test(ours: dict[str, float], theirs: dict[str, float]) -> tuple[str, str]:
    splits = sorted(set(ours) & set(theirs), key=int)
    if len(splits) < 2:
        return "n/a", "n/a (fewer than 2 shared splits)"
    a, b = np.array([ours[split] for split in splits]), np.array([theirs[split] for split in splits])
    return f"{np.mean(a - b):+.3f}", f"{stats.ttest_rel(a, b).pvalue:.2g}"


# Each report: how it draws its figure (None: a table of the paper) and how it writes its table.
REPORTS = {
    "curves": (draw_curves, curves_table),
    "sweeps": (draw_sweeps, sweeps_table),
    "bars": (draw_bars, tests_table),
    "scatter": (draw_scatter, tests_table),
    "pq_table": (None, pq_table),
    "variants_table": (None, tests_table),  # its runs are in the paper's order
    "ttest_table": (None, ttest_table),
}
