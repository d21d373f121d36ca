"""Timing helpers shared by the benchmarks (run them as `python benchmarks/bench_*.py`)."""

from __future__ import annotations

import statistics
import time
from typing import Callable, List, Tuple


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def paired_ms(
    ours: Callable[[], object], theirs: Callable[[], object], repeats: int, warmup: int = 3
) -> Tuple[float, float]:
    """Medians of two functions timed alternately, so load on the machine hits both alike."""
    for _ in range(warmup):
        ours()
        theirs()
    a: List[float] = []
    b: List[float] = []
    for _ in range(repeats):
        for fn, out in ((ours, a), (theirs, b)):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(a), statistics.median(b)
