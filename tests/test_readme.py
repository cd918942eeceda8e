"""The front page's quickstart runs as written."""

import os
import re

from conftest import real_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quickstart_code():
    with open(os.path.join(ROOT, "README.md")) as file:
        readme = file.read()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))


def test_the_quickstart_runs_as_written(tmp_path, monkeypatch, capsys):
    real_dataset("mnist", "test[:1]")
    if os.environ.get("ZOO_DATA_DIR"):
        monkeypatch.setenv("ZOO_DATA_DIR", os.path.abspath(os.environ["ZOO_DATA_DIR"]))
    monkeypatch.chdir(tmp_path)
    exec(compile(quickstart_code(), "README.md quickstart", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"ratio 0\.25: \d+\.\d+% at [\d,]+ multiply-adds", printed)
    assert os.path.isdir("logs/finetune/r=0.5") and os.path.isdir("mlp_half")
