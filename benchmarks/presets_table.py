"""Writes the table and plot of the presets from the registry
(`zoo/presets.json`): the table in `README.md` and `zoo/README.md`, the plot
in `benchmarks/results/presets.png`.

Usage:
    python benchmarks/presets_table.py
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo  # noqa: E402
from benchmarks.common import RESULTS, ROOT, embed_in_readme  # noqa: E402


def markdown():
    lines = [
        "| preset | dataset | recipe | test accuracy (%) per ratio | multiply-adds per ratio | weights |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in zoo.list_presets():
        recipe = zoo.presets.get_preset(row["name"])["recipe"]
        if not row["trained"]:
            accuracy, mult_adds, size = "not trained yet", "", ""
        else:
            ratios = sorted(row["accuracy"], key=float, reverse=True)
            accuracy = " / ".join(f"{r}: {row['accuracy'][r]:.1f}" for r in ratios)
            mult_adds = " / ".join(f"{_millions(row['mult_adds'][r])}" for r in ratios)
            size = f"{row['weights_bytes'] / 1e6:.1f} MB"
        method = f"{recipe['method']}, {recipe['epochs']} epochs"
        lines.append(
            f"| `{row['name']}` | {row['dataset']} | {method} | {accuracy} | {mult_adds} | {size} |"
        )
    lines.append("")
    lines.append("Test accuracy on the full test set, after batch-norm calibration at each ratio.")
    return "\n".join(lines) + "\n"


def plot(path):
    """Accuracy against multiply-adds of every trained preset, one line each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    figure, panels = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for axes, dataset, scale, unit in (
        (panels[0], "mnist", 1e3, "thousands"),
        (panels[1], "cifar10", 1e6, "millions"),
    ):
        for row in zoo.list_presets():
            if row["dataset"] != dataset or not row["trained"]:
                continue
            ratios = sorted(row["accuracy"], key=float)
            x = [row["mult_adds"][r] / scale for r in ratios]
            y = [row["accuracy"][r] for r in ratios]
            axes.plot(x, y, "o-", label=row["name"])
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axes.xaxis.set_minor_formatter(ticker.NullFormatter())
        axes.set_xlabel(f"multiply-adds per image ({unit}, log scale)")
        axes.set_ylabel("test accuracy (%)")
        axes.set_title(f"{dataset} presets: a point per compute ratio")
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _millions(value):
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}k"


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    for readme in ("README.md", os.path.join("zoo", "README.md")):
        embed_in_readme("presets", markdown(), path=os.path.join(ROOT, readme))
    plot(os.path.join(RESULTS, "presets.png"))
    print(markdown())
