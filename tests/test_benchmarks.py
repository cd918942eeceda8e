"""The benchmark scripts import cleanly (they are run by hand, not by CI), and
their recipes hold together."""

import importlib
import pathlib

import pytest

SCRIPTS = sorted(p.stem for p in (pathlib.Path(__file__).parent.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_imports(script):
    module = importlib.import_module(f"benchmarks.{script}")
    assert module.__doc__, f"benchmarks/{script}.py needs a docstring saying what it measures"


@pytest.mark.parametrize("architecture", ["resnet20", "mobilenet", "vgg16"])
def test_cifar10_tesla_gives_every_task_its_share_of_the_budget(architecture):
    cifar10 = importlib.import_module("benchmarks.cifar10")
    recipe = cifar10.recipe_for(architecture, "tesla", quick=False)
    steps_per_epoch = -(-45_000 // recipe["batch_size"])
    assert recipe["round"] * cifar10.ROUNDS_PER_EPOCH == steps_per_epoch
    rounds = recipe["epochs"] * cifar10.ROUNDS_PER_EPOCH
    assert recipe["max_rounds_per_task"] * len(recipe["ratios"]) <= rounds
    assert recipe["max_rounds_per_task"] >= rounds // len(recipe["ratios"])
