"""Writes the README's table of presets from the registry (`zoo/presets.json`).

Usage:
    python benchmarks/presets_table.py
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo  # noqa: E402
from benchmarks.common import embed_in_readme  # noqa: E402


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


def _millions(value):
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}k"


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    embed_in_readme("presets", markdown())
    print(markdown())
