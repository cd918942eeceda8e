"""The code keeps the formatting and lint rules of `pyproject.toml`."""

import inspect
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def public_classes():
    import callbacks
    import zoo

    modules = (zoo, zoo.layers, zoo.effort, zoo.profiles, callbacks)
    classes = {
        obj
        for module in modules
        for obj in vars(module).values()
        if inspect.isclass(obj) and obj.__module__.split(".")[0] in ("zoo", "callbacks")
    }
    return sorted(classes, key=lambda c: c.__qualname__)


def takes_arguments(cls):
    return len(inspect.signature(cls).parameters) > 0


def test_every_public_class_has_args_and_an_example():
    missing = [
        f"{c.__module__}.{c.__qualname__}: {section}"
        for c in public_classes()
        for section in ("Args:", "Example:")
        if section not in (c.__doc__ or "") and (section == "Example:" or takes_arguments(c))
    ]
    assert not missing, missing
