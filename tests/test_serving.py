import pytest

import zoo

TABLE = zoo.LatencyTable(
    [
        {"ratio": 1.0, "batch_size": 1, "median_ms": 1.8, "p95_ms": 2.0},
        {"ratio": 0.5, "batch_size": 1, "median_ms": 0.8, "p95_ms": 1.0},
        {"ratio": 0.25, "batch_size": 1, "median_ms": 0.4, "p95_ms": 0.5},
    ]
)


@pytest.mark.parametrize(
    "waiting, oldest_wait_ms, ratio",
    [
        (1, 0.0, 1.0),  # idle: full width
        (3, 0.0, 1.0),  # 2 ms, then 2 x 0.5 ms: within 5 ms
        (8, 0.0, 0.5),  # 2 + 7 x 0.5 ms would not be; 1 + 7 x 0.5 is
        (10, 0.0, 0.25),  # 1 + 9 x 0.5 ms would not be either
        (1, 3.5, 0.5),  # the oldest has 1.5 ms left
        (20, 0.0, 0.25),  # overloaded: the fastest catches up
        (1, 10.0, 0.25),  # already late: the fastest
    ],
)
def test_the_controller_narrows_as_the_queue_grows(waiting, oldest_wait_ms, ratio):
    controller = zoo.serving.RatioController(TABLE, deadline_ms=5.0, margin=0.0)
    assert controller.choose(waiting, oldest_wait_ms) == ratio


def test_the_margin_keeps_part_of_the_deadline():
    assert zoo.serving.RatioController(TABLE, 4.0, margin=0.0).choose(1, 1.5) == 1.0
    assert zoo.serving.RatioController(TABLE, 4.0, margin=0.25).choose(1, 1.5) == 0.5


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"deadline_ms": 0}, "`deadline_ms` must be > 0"),
        ({"deadline_ms": 5, "batch_size": 8}, "no measurements at batch size 8"),
        ({"deadline_ms": 5, "margin": 1.0}, r"`margin` must be in \[0, 1\)"),
    ],
)
def test_bad_controller_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        zoo.serving.RatioController(TABLE, **arguments)


def test_the_arrival_rate_narrows_the_choice_near_saturation():
    controller = zoo.serving.RatioController(TABLE, deadline_ms=5.0, margin=0.0)
    assert controller.choose(3) == 1.0
    # Arrivals keeping the fastest ratio 60% busy: the queue drains slowly.
    assert controller.choose(3, arrivals_per_ms=1.2) == 0.5
    # Beyond the fastest ratio's capacity: only the fastest.
    assert controller.choose(1, arrivals_per_ms=2.5) == 0.25
