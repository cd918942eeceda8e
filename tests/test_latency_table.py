import pytest

import zoo

SYNTHETIC = zoo.LatencyTable(
    [
        {"ratio": r, "batch_size": b, "median_ms": ms * 0.8, "p95_ms": ms}
        for b, scale in ((1, 1.0), (8, 4.0))
        for r, ms in ((1.0, 2.0 * scale), (0.5, 0.9 * scale), (0.25, 0.4 * scale))
    ]
)


@pytest.mark.parametrize(
    "deadline, batch_size, ratio",
    [(5.0, 1, 1.0), (2.0, 1, 1.0), (1.99, 1, 0.5), (0.5, 1, 0.25), (4.0, 8, 0.5)],
)
def test_ratio_for_picks_the_widest_ratio_meeting_the_deadline(deadline, batch_size, ratio):
    assert SYNTHETIC.ratio_for(deadline, batch_size) == ratio


def test_no_ratio_meeting_the_deadline_is_an_error_naming_the_fastest():
    with pytest.raises(
        ValueError, match=r"No ratio meets 0.1 ms .* the fastest, 0.25, takes 0.400"
    ):
        SYNTHETIC.ratio_for(0.1)
    with pytest.raises(ValueError, match=r"measured: \[1, 8\]"):
        SYNTHETIC.ratio_for(1.0, batch_size=4)


def test_a_measured_table_saves_and_loads(tmp_path):
    model = zoo.build("mlp", input_shape=(8, 8, 1), operating_points=[0.25, 1.0])
    table = zoo.latency_table(model, batch_sizes=[1, 4], repeats=5)
    assert {(r["ratio"], r["batch_size"]) for r in table.rows} == {
        (1.0, 1),
        (0.25, 1),
        (1.0, 4),
        (0.25, 4),
    }
    assert all(0 < r["median_ms"] <= r["p95_ms"] for r in table.rows)
    table.save(tmp_path / "table.json")
    again = zoo.LatencyTable.load(tmp_path / "table.json")
    assert again.rows == table.rows and again.ratio_for(1e9) == 1.0


def test_a_litert_file_is_measured_per_signature(tmp_path):
    model = zoo.build("mlp", input_shape=(8, 8, 1), operating_points=[0.5, 1.0])
    path = str(tmp_path / "mlp.tflite")
    zoo.export_litert(model, path)
    table = zoo.latency_table(path, repeats=5)
    assert sorted(r["ratio"] for r in table.rows) == [0.5, 1.0]
    with pytest.raises(ValueError, match="no signature for ratios"):
        zoo.latency_table(path, ratios=[0.25])
