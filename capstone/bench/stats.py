"""The benchmarks' arithmetic, pure: latency percentiles, medians, and the order check."""

from __future__ import annotations

from array import array
from collections import defaultdict


def latency_summary(latencies: array) -> dict[str, float]:
    """p50, p99 and max in milliseconds of latencies in nanoseconds."""
    if not latencies:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(latencies)

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6, 3)

    return {"p50": at(0.50), "p99": at(0.99), "max": round(ordered[-1] / 1e6, 3)}


def total_order_violations(orders: dict[int, array]) -> int:
    """How many messages no single order can place: 0 when one total order explains every member.

    Each member's arrival order says "x came before y" for each neighbouring pair. If the
    server kept one order, all those statements fit together (the graph they draw has no
    cycle), even though a sender never sees its own messages. A topological sort (Kahn's
    algorithm) places every message it can; the ones it cannot are caught in a
    contradiction (two members saw two messages in opposite orders) or come after one.
    """
    successors: dict[int, list[int]] = defaultdict(list)
    waiting_for: dict[int, int] = defaultdict(int)  # message -> predecessors not yet placed
    for before, after in {pair for order in orders.values() for pair in zip(order, order[1:], strict=False)}:
        successors[before].append(after)
        waiting_for[after] += 1
    messages = set().union(*orders.values())
    ready = [message for message in messages if not waiting_for[message]]
    placed = 0
    while ready:
        placed += 1
        for after in successors[ready.pop()]:
            waiting_for[after] -= 1
            if not waiting_for[after]:
                ready.append(after)
    return len(messages) - placed



def latency_summary_ms(samples_ms: list[float]) -> dict[str, float]:
    """p50/p99/max of millisecond samples (latency_summary works in ns)."""
    return latency_summary(array("q", (int(sample * 1e6) for sample in samples_ms)))


def median(values: list[float]) -> float:
    return round(sorted(values)[len(values) // 2], 3)
