"""Smoke tests: the benchmark scripts still run, at a tiny size (no timing is asserted)."""

from benchmarks import bench_awards


def test_bench_awards_runs_tiny(tmp_path):
    results = bench_awards.main(["--sizes", "2000", "--chunks", "512", "--repeat", "1",
                                 "--json", str(tmp_path / "b.json")])
    assert results[0]["firms"] == 2000 and results[0]["evals_per_s_median"] > 0
    assert (tmp_path / "b.json").exists()
