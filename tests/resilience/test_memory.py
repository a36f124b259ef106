"""Refining a shard streams: peak RSS does not grow with the number of documents (``benchmarks/bench_memory.py``
measures 10k vs 100k; this is the small version)."""

from __future__ import annotations

import pytest

from benchmarks import bench_memory


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["execute", "annotate"])
def test_peak_rss_is_flat_in_the_number_of_documents(tmp_path, mode):
    small = bench_memory.measure(mode, 2_000, tmp_path)
    large = bench_memory.measure(mode, 20_000, tmp_path)
    assert small["written"] > 0 and large["written"] > 5 * small["written"]
    # 18,000 more documents of ~1.3 KB (23 MB of text) may not cost more than a few MB
    assert large["peak_rss_mb"] - small["peak_rss_mb"] < 8, (small, large)
