"""The run's protocol, apart from the servers: the order of the cold starts."""

from __future__ import annotations

from bench.run import cold_start_orders


def test_each_round_of_cold_starts_begins_with_another_system():
    """Whoever starts first after the in-process phase starts slower (13.3 s against 8.4-8.6 s alone, session 6):
    rotated, every system takes its turn first, and the median is not the draw of one place."""
    orders = cold_start_orders(["tlserve", "naive", "bentoml"], 3)
    assert orders == [["tlserve", "naive", "bentoml"], ["naive", "bentoml", "tlserve"],
                      ["bentoml", "tlserve", "naive"]]
    assert cold_start_orders(["a", "b"], 3) == [["a", "b"], ["b", "a"], ["a", "b"]]
