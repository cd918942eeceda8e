import time

from zoo.latency import paired_speedup


class Sleeper:
    """Stands in for a compiled forward pass that takes `seconds`."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.calls = 0

    def __call__(self):
        self.calls += 1
        time.sleep(self.seconds)
        return self

    def numpy(self):
        return None


def test_paired_speedup_times_both_in_turns_and_brackets_the_ratio():
    reference, candidate = Sleeper(0.006), Sleeper(0.002)
    result = paired_speedup(reference, candidate, repeats=12, warmup=1)
    assert reference.calls == candidate.calls == 13
    assert result["low"] <= result["speedup"] <= result["high"]
    assert 1.5 < result["speedup"] < 4.5
    assert result["reference"] > result["candidate"]
