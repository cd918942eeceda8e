import json
import os

import pytest

from zoo import atomic_files


def test_write_json_replaces_the_file_whole(tmp_path):
    path = str(tmp_path / "nested" / "registry.json")
    atomic_files.write_json(path, {"b": 1, "a": 2})
    atomic_files.write_json(path, {"c": 3})
    with open(path) as file:
        assert json.load(file) == {"c": 3}
    assert os.listdir(tmp_path / "nested") == ["registry.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    path = str(tmp_path / "registry.json")
    atomic_files.write_json(path, {"kept": True})
    with pytest.raises(TypeError):
        atomic_files.write_json(path, {"unserializable": object()})
    with open(path) as file:
        assert json.load(file) == {"kept": True}
    assert os.listdir(tmp_path) == ["registry.json"]
