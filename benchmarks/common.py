"""Helpers shared by the benchmark scripts: results files and the README."""

import json
import os
import platform
import re

import keras
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def machine():
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def write_results(name, data, markdown, readme=True):
    """Writes `results/<name>.json` and `results/<name>.md`, then the README."""
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as file:
        json.dump(data, file, indent=2)
        file.write("\n")
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as file:
        file.write(markdown)
    if readme:
        embed_in_readme(name, markdown)


def embed_in_readme(name, markdown):
    """Replaces the README's `<!-- NAME table -->` section with `markdown`."""
    path = os.path.join(ROOT, "README.md")
    with open(path) as file:
        readme = file.read()
    start, end = f"<!-- {name} table -->", f"<!-- end {name} table -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?(" + re.escape(end) + r"|$)", re.S)
    if start in readme:
        readme = pattern.sub(lambda _: block, readme, count=1)
    else:
        readme = readme.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as file:
        file.write(readme)
