"""Smoke tests: the benchmark scripts still run, at a tiny size (no timing is asserted)."""

from benchmarks import bench_awards


def test_bench_awards_runs_tiny(tmp_path):
    results = bench_awards.main(["--sizes", "2000", "--chunks", "512", "--repeat", "1",
                                 "--json", str(tmp_path / "b.json")])
    assert results[0]["firms"] == 2000 and results[0]["evals_per_s_median"] > 0
    assert (tmp_path / "b.json").exists()


def test_bench_population_runs_tiny(tmp_path):
    from benchmarks import bench_population

    results = bench_population.main(["--sizes", "3000", "--repeat", "1", "--json", str(tmp_path / "p.json")])
    assert results[0]["claimants"] == 3000 and results[0]["peak_bytes"] > 0


def test_bench_montecarlo_runs_tiny(tmp_path):
    from benchmarks import bench_montecarlo

    results, big = bench_montecarlo.main(["--replications", "2", "--big", "70000", "--json", str(tmp_path / "m.json")])
    assert results[0]["replications"] == 2 and big["peak_bytes"] > 0
    _, large = bench_montecarlo.main(["--replications", "1", "--big", "3000", "--big-replications", "2"])
    assert large["replications"] == 2 and 0 < large["drawing_share"] and large["normals_per_replication"] > 3000


def test_bench_budget_runs_tiny(tmp_path):
    from benchmarks import bench_budget

    results = bench_budget.main(["--scenarios", "200", "--repeat", "1", "--solvers", "scipy",
                                 "--json", str(tmp_path / "b.json")])
    assert results[0]["lp"] == "cvar" and results[0]["total_budget"] > 0


def test_bench_design_runs_tiny():
    from benchmarks import bench_design

    results = bench_design.main(["--scenarios", "200", "--repeat", "1", "--solvers", "scipy", "--base", "4"])
    assert [r["reallocate"] for r in results] == [False, True] and results[0]["variables"] > 45
    assert 0 < results[0]["support_kept"] <= 1


def test_bench_stages_runs_tiny():
    from benchmarks import bench_stages

    rows = bench_stages.main(["--replications", "2", "--runs", "2"])
    assert [r["run"] for r in rows] == ["claims only", "main job"] and rows[0]["ratio"] == 1.0
    assert rows[1]["process"] > 0 == rows[0]["process"] and rows[1]["report"] > 0


def test_bench_years_runs_tiny():
    from benchmarks import bench_years

    rows = bench_years.main(["--replications", "2", "--process", "1", "--horizons", "1", "2"])
    assert [r["horizon"] for r in rows] == [1, 2] and rows[1]["years"] > 0 == rows[0]["years_range"][0]
    assert rows[0]["ratio"] == 1.0 and rows[1]["peak_mib"] > 0


def test_bench_process_runs_tiny(tmp_path):
    from benchmarks import bench_process

    out = bench_process.main(["--applications", "2000", "--repeat", "1", "--json", str(tmp_path / "p.json")])
    assert out["applications"] > 0 and out["ratio"] > 0


def test_bench_sensitivity_runs_tiny(tmp_path):
    from benchmarks import bench_sensitivity

    results = bench_sensitivity.main(["--samples", "2", "--workers", "0", "--n", "3000",
                                      "--json", str(tmp_path / "s.json")])
    assert results[0]["groups"] >= 20 and results[0]["evaluations"] == 2 * (results[0]["groups"] + 3)


def test_benchmark_suite_runs_quick(tmp_path):
    from benchmarks.__main__ import main

    results = main(["--quick", "--json", str(tmp_path / "all.json")])
    assert results["kernels"]["20000"]["fused"][0] > 0 and results["generator"]["ratio"] > 0
    assert (tmp_path / "all.json").exists()


def test_bench_sizing_runs_tiny(tmp_path):
    from benchmarks import bench_sizing

    [row] = bench_sizing.main(["--replications", "5", "--json", str(tmp_path / "s.json")])
    assert row["replications"] == 5 and row["disk_mib"] > 0 and row["estimated_memory_mib"] > 0
    assert row["disk_mib"] <= row["estimated_disk_mib"]  # the free-space check asks for at least what is written
