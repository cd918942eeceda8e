"""The project as a package: a wheel built from the checkout works from
anywhere, without the checkout on the path."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel, installed into a fresh target folder outside the checkout."""
    work = tmp_path_factory.mktemp("package")
    source = work / "source"
    # A copy: building writes `build/` and `*.egg-info` beside the sources.
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "benchmarks", "notebooks", "__pycache__"),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (work / "dist").glob("*.whl")
    target = work / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    return work, target


def run_outside(installed, *command):
    work, target = installed
    environment = dict(
        os.environ,
        PYTHONPATH=str(target),
        TF_CPP_MIN_LOG_LEVEL="2",
        ZOO_WEIGHTS_URL=os.path.join(ROOT, "saved_models"),  # a local mirror: no network here
        KERAS_HOME=str(work / "keras_home"),
    )
    return subprocess.run(
        [sys.executable, *command], cwd=work, env=environment, capture_output=True, text=True
    )


def test_the_installed_package_imports_and_loads_a_preset(installed):
    result = run_outside(
        installed,
        "-c",
        "import numpy, zoo, callbacks; print(zoo.__file__); m = zoo.load('mlp_mnist'); "
        "print(tuple(m(numpy.zeros((1, 28, 28, 1)), compute_ratio=0.5).shape))",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    location, shape = result.stdout.splitlines()[-2:]
    assert location.startswith(str(installed[1])) and shape == "(1, 10)"


def test_the_installed_cli_answers_help(installed):
    result = run_outside(installed, "-m", "zoo", "--help")
    assert result.returncode == 0 and "train" in result.stdout, result.stderr[-2000:]
