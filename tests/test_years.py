"""Multi-year runs: commitments follow the claimants that earned them (closed forms), a one-year run is
today's run bit for bit, unpaid claims cross the year end, a budget per year, clear messages."""

import copy
import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim.pipeline as pipeline
import sim.policy
from sim import process, years
from sim.awards import evaluate
from sim.cli import main
from sim.errors import FiscalsimError

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "binjiang-2024"
POLICY = sim.policy.load("binjiang-2024")
YEARS = years.load_years("binjiang-2024", POLICY)
RAW = tomllib.loads((MODEL / "years.toml").read_text(encoding="utf-8"))
SHARE = {r.id: float(r.district_share.value) for r in POLICY.rules}


def _values(survival: float, entrants: float = 1.0) -> years.YearsValues:
    """Every continuation's survival and every term's entrant share at the given values (one draw)."""
    numbers = {k: np.array([p.value]) for k, p in YEARS.numbers().items()}
    for key in YEARS.continuations:
        numbers[f"continuations.{key}.survival"] = np.array([survival])
    for rule, term in YEARS.terms.items():
        if term.entrants is not None:
            numbers[f"terms.{rule}.entrants"] = np.array([entrants])
    return years.YearsValues(numbers, per_draw=10 ** 9)


def _cohorts(horizon: int, first: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict[str, years.Cohort]]:
    empty = years.Cohort(np.zeros(0), np.zeros(0))
    out = [{rule: empty for rule in years.sources(YEARS)} for _ in range(horizon)]
    for rule, (award, district) in first.items():
        out[0][rule] = years.Cohort(award, district)
    return out


def _liabilities(first: dict, survival: float, replications: int, horizon: int = 3) -> pd.DataFrame:
    rows = []
    for r in range(replications):
        carried = years.carry(YEARS, POLICY, _cohorts(horizon, first), _values(survival), seed=11, replication=r,
                              share=SHARE)
        rows += [{**row, "replication": r} for row in carried.rows if row["origin"] == "commitment"]
    return pd.DataFrame(rows)


def _within_3se(values: np.ndarray, expected: float) -> None:
    se = values.std(ddof=1) / math.sqrt(len(values))
    assert abs(values.mean() - expected) <= 3 * se, (values.mean(), expected, se)
    assert se > 0


# ----------------------------------------------------------------------------- the cohort test
@pytest.mark.parametrize("survival", [0.6, 0.85])
def test_cohort_of_a_three_year_rule_leaves_N_s_a_and_N_s2_a(survival):
    n, amount, reps = 300, 500.0, 400  # N centres of article 15's yearly 500萬 support
    rule = "a15-poc-centre-performance"
    first = {r: (np.zeros(0), np.zeros(0)) for r in years.sources(YEARS)}
    first[rule] = (np.full(n, amount), np.full(n, amount * SHARE[rule]))
    table = _liabilities(first, survival, reps)
    table = table[table["rule"] == rule]
    by_year = table.pivot_table(index="replication", columns="year", values="award", aggfunc="sum")
    _within_3se(by_year[1].to_numpy(), n * survival * amount)
    _within_3se(by_year[2].to_numpy(), n * survival ** 2 * amount)
    claimants = table.pivot_table(index="replication", columns="year", values="claimants", aggfunc="sum")
    assert (claimants[2] <= claimants[1]).all()  # the third year's claimants are survivors of the second's
    assert set(table["year"]) == {1, 2}  # a three-year award: nothing in a fourth year, nothing before the second


def test_cohort_of_the_rent_subsidy_with_its_cap():
    rule = "a16-incubated-rent"
    rng = np.random.default_rng(3)
    rent = np.exp(rng.normal(np.log(30.0), 0.6, 500))  # rents around 30萬: the 20萬 cap binds for many
    columns = {a.name: np.zeros(len(rent)) for a in POLICY.input_attributes()}
    columns["incubated_rent"] = rent
    award = evaluate(POLICY, columns).frame()[rule].to_numpy()
    r = POLICY.rule(rule)
    expected_award = np.minimum(r.number("rate").value * rent, r.number("cap").value)
    assert np.allclose(award, expected_award) and (award == r.number("cap").value).sum() > 50
    first = {x: (np.zeros(0), np.zeros(0)) for x in years.sources(YEARS)}
    first[rule] = (award, award * SHARE[rule])
    survival = 0.7
    table = _liabilities(first, survival, 400)
    by_year = table[table["rule"] == rule].pivot_table(index="replication", columns="year", values="district",
                                                       aggfunc="sum")
    total = float(np.sum(award * SHARE[rule]))
    _within_3se(by_year[1].to_numpy(), survival * total)
    _within_3se(by_year[2].to_numpy(), survival ** 2 * total)


def test_only_the_first_years_entrants_start_a_full_rent_subsidy_term():
    # Issue 30, item 3: of 2024's incubated claimants only the entrants start a three-year term; the others are in
    # its second or third year (weights 1 : s).  Closed form per claimant: due in 2025 with probability
    # (e + (1 - e) / (1 + s)) s, in 2026 with probability e s^2.
    rule, n, entrants, survival, reps = "a16-incubated-rent", 400, 0.35, 0.7, 300
    first = {x: (np.zeros(0), np.zeros(0)) for x in years.sources(YEARS)}
    first[rule] = (np.ones(n), np.full(n, SHARE[rule]))
    rows = []
    for r in range(reps):
        carried = years.carry(YEARS, POLICY, _cohorts(3, first), _values(survival, entrants), seed=7, replication=r,
                              share=SHARE)
        rows += [{**row, "replication": r} for row in carried.rows if row["origin"] == "commitment"
                 and row["rule"] == rule and row["grant"] == 0]
    by_year = pd.DataFrame(rows).pivot_table(index="replication", columns="year", values="claimants", aggfunc="sum")
    _within_3se(by_year[1].to_numpy(), n * (entrants + (1 - entrants) / (1 + survival)) * survival)
    _within_3se(by_year[2].to_numpy(), n * entrants * survival ** 2)


def test_proof_of_concept_support_has_no_end():
    # Issue 30, item 6: 「每年給予最高500萬元補助」 sets no end: the term is every year, not an unmarked three.
    term = YEARS.terms["a15-poc-centre-performance"]
    assert term.years is None and "years" not in RAW["terms"]["a15-poc-centre-performance"]
    assert RAW["terms"]["a15-poc-centre-performance"]["no_end"] is True
    first = {x: (np.zeros(0), np.zeros(0)) for x in years.sources(YEARS)}
    first["a15-poc-centre-performance"] = (np.full(5, 500.0), np.full(5, 500.0))
    carried = years.carry(YEARS, POLICY, _cohorts(5, first), _values(1.0, 0.35), seed=1, replication=0, share=SHARE)
    due = {row["year"]: row["claimants"] for row in carried.rows
           if row["rule"] == "a15-poc-centre-performance" and row["origin"] == "commitment" and row["grant"] == 0}
    assert due == {1: 5, 2: 5, 3: 5, 4: 5}  # every later year of a five-year horizon, nobody dropping out


def test_above_size_award_falls_due_after_two_more_years_to_the_firms_still_above_size():
    source, rule = "a28-first-above-size", "a28-above-size-three-years"
    n, survival = 200, 0.8
    first = {x: (np.zeros(0), np.zeros(0)) for x in years.sources(YEARS)}
    first[source] = (np.full(n, 20.0), np.full(n, 20.0 * SHARE[source]))
    table = _liabilities(first, survival, 400)
    part = table[table["rule"] == rule]
    assert set(part["year"]) == {2}
    amount = POLICY.rule(rule).number("amount").value
    _within_3se(part.groupby("replication")["award"].sum().to_numpy(), n * survival ** 2 * amount)


def test_later_years_new_awards_of_a_term_rule_are_its_entrants_only():
    rule = "a16-incubated-rent"
    empty = years.Cohort(np.zeros(0), np.zeros(0))
    cohorts = [{x: empty for x in years.sources(YEARS)} for _ in range(2)]
    cohorts[1][rule] = years.Cohort(np.full(1000, 6.0), np.full(1000, 6.0))
    values = _values(0.7, entrants=0.3)
    new = [sum(row["claimants"] for row in years.carry(YEARS, POLICY, cohorts, values, 5, r, SHARE).rows
               if row["rule"] == rule and row["origin"] == "new" and row["year"] == 1) for r in range(50)]
    assert abs(np.mean(new) - 300) <= 3 * math.sqrt(1000 * 0.3 * 0.7 / 50)
    assert years.replaced(YEARS, 0) == set()
    assert years.replaced(YEARS, 1) == {"a16-incubated-rent", "a15-poc-centre-performance", "a49-assisted-reproduction"}
    assert "a28-above-size-three-years" in years.replaced(YEARS, 2)


def test_survival_draws_are_seeded_and_independent_of_other_replications():
    first = {x: (np.full(50, 10.0), np.full(50, 10.0)) for x in years.sources(YEARS)}
    one = years.carry(YEARS, POLICY, _cohorts(3, first), _values(0.5), seed=1, replication=4, share=SHARE)
    two = years.carry(YEARS, POLICY, _cohorts(3, first), _values(0.5), seed=1, replication=4, share=SHARE)
    other = years.carry(YEARS, POLICY, _cohorts(3, first), _values(0.5), seed=2, replication=4, share=SHARE)
    assert one.rows == two.rows and one.rows != other.rows


# ----------------------------------------------------------------------------- the pipeline
SETTINGS = pipeline.Settings(replications=6, seed=3, n=30_000, per_draw=2, process_replications=3,
                             stages=("claims", "process", "budget"))


@pytest.fixture(scope="module")
def one_year():
    return pipeline.run(settings=SETTINGS, progress=False)


@pytest.fixture(scope="module")
def three_years():
    from dataclasses import replace
    return pipeline.run(settings=replace(SETTINGS, years=(2024, 2025, 2026)), progress=False)


def test_a_one_year_run_is_todays_run_bit_for_bit(one_year):
    from dataclasses import replace
    explicit = pipeline.run(settings=replace(SETTINGS, years=(2024,)), progress=False)
    assert set(explicit.tables) == set(one_year.tables)
    for name, table in one_year.tables.items():
        assert explicit[name].equals(table), name
    assert "liabilities" not in one_year and "years" not in one_year.manifest


def test_the_first_year_of_a_multi_year_run_is_the_one_year_run(one_year, three_years):
    for name, table in one_year.tables.items():
        if name != "calibration":
            assert three_years[name].equals(table), name
    liabilities = three_years["liabilities"]
    first = liabilities[liabilities["year"] == 2024].reset_index(drop=True)
    rules = one_year["rules"]
    assert (first["origin"] == "new").all() and len(first) == len(rules)
    assert np.array_equal(first["district"].to_numpy(), rules["district"].to_numpy())  # bit for bit
    assert np.array_equal(first["award"].to_numpy(), rules["award"].to_numpy())


def test_multi_year_tables_add_up(three_years):
    liabilities = three_years["liabilities"]
    assert set(liabilities["year"]) == {2024, 2025, 2026}
    assert set(liabilities["origin"].astype(str)) == {"new", "commitment"}
    owed = liabilities[liabilities["origin"] == "commitment"]
    assert (owed["granted"] < owed["year"]).all() and (owed["district"] >= 0).all()
    assert set(owed["rule"].astype(str)) <= set(YEARS.terms)
    summary = three_years["years_summary"]
    total = liabilities.groupby(["replication", "year"])["district"].sum().groupby("year").mean()
    assert np.allclose(summary.groupby("year")["mean"].sum().to_numpy(), total.to_numpy())
    commitments = three_years["commitments"]
    assert set(zip(commitments["granted"], commitments["year"])) == {(2024, 2025), (2024, 2026), (2025, 2026)}
    assert (commitments["p5"] <= commitments["p50"]).all() and (commitments["p50"] <= commitments["p95"]).all()
    budget = three_years["years_budget"]
    b24 = budget[budget["year"] == 2024].set_index("domain")["claims_budget"]
    b25 = budget[budget["year"] == 2025].set_index("domain")["claims_budget"]
    assert b25["science_technology"] == pytest.approx(1.1592 * b24["science_technology"])
    assert three_years.manifest["years"] == [2024, 2025, 2026] and "years.json" in three_years.texts


def test_unpaid_claims_cross_the_year_end(three_years):
    p = three_years["years_process"].set_index(["replication", "year", "domain"]).sort_index()
    for year in (2025, 2026):
        carried_in = p.xs(year, level="year")["carried_in"]
        carried_out = p.xs(year - 1, level="year")["carried_out"]
        assert np.allclose(carried_in.to_numpy(), carried_out.reindex(carried_in.index).to_numpy())
    assert (p.xs(2024, level="year")["carried_in"] == 0).all()
    out = p["deferred"] + p["unpaid"]
    assert np.allclose(out.to_numpy(), p["carried_out"].to_numpy())
    assert p["carried_out"].sum() > 0  # the science-and-technology budget runs out in some replications


def test_carried_claims_are_paid_at_the_first_payment_run_before_the_years_own():
    model = process.load_process("template")
    rule = list(model.rules).index("t04-new-high-tech")
    carried = (np.array([rule]), np.array([7.0]))
    claims = pd.DataFrame({"rule": ["t04-new-high-tech"] * 2, "amount": [20.0, 20.0]})
    result = process.simulate(claims, model, seed=1, carried=carried)
    apps = result.apps
    assert apps.amount[0] == 7.0 and apps.parts["paid"][0] == 7.0
    assert apps.paid_day[0] == min(d for d in model.payment_days if d >= 0)
    plain = process.simulate(claims, model, seed=1)
    assert np.array_equal(plain.apps.submit, apps.submit[1:])  # the year's own draws do not change


def test_a_budget_per_year_funds_the_commitments_first(three_years):
    cover = three_years["years_coverage"]
    assert set(cover["year"]) == {2024, 2025, 2026}
    fits = cover[cover["commitments_fit"]]
    assert (fits["funded"] >= fits["commitments"] - 1e-6).all()
    assert (cover["funded"] <= cover["claims_budget"] + 1e-6).all()
    liabilities = three_years["liabilities"]
    for year, part in cover.groupby("year"):
        losses = (liabilities[liabilities["year"] == year].pivot_table(
            index="replication", columns="domain", values="district", aggfunc="sum", observed=False)
            .reindex(columns=list(POLICY.domain_keys)).to_numpy())
        sized = part.set_index("domain")["cvar_budget"].reindex(list(POLICY.domain_keys)).to_numpy()
        short = np.sort(np.maximum(losses - sized, 0.0).sum(axis=1))[::-1]
        tail = max(1, math.ceil(0.05 * len(short)))  # the worst 5% of replications (at least one)
        limit = 0.01 * losses.sum(axis=1).mean()
        assert short[:tail].mean() <= limit * (1 + 1e-6) + 1e-6, year  # the CVaR limit holds
        assert sized.sum() <= losses.max(axis=0).sum() + 1e-6  # and no more than the worst year of each needs


# ----------------------------------------------------------------------------- messages
def _years_problem(tmp_path, change) -> str:
    data = copy.deepcopy(RAW)
    change(data)
    import tomli_w
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("policy.toml", "source.txt"):
        (folder / name).write_bytes((MODEL / name).read_bytes())
    (folder / "years.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    with pytest.raises(years.YearsError) as caught:
        years.load_years(folder, POLICY)
    return str(caught.value)


@pytest.mark.parametrize("change, words", [
    (lambda d: d["terms"]["a16-incubated-rent"].update(yearz=3), ["[terms.a16-incubated-rent]", "unknown key 'yearz'"]),
    (lambda d: d["terms"].update({"a99-nothing": {"years": 2, "continues": "incubated", "quote": "x", "why": "y"}}),
     ["[terms.a99-nothing]", "no rule 'a99-nothing'"]),
    (lambda d: d["terms"]["a16-incubated-rent"].update(quote="給予五年房租補貼"), ["not found verbatim"]),
    (lambda d: d["terms"]["a16-incubated-rent"].update(follows="a28-first-above-size"), ["give one of years = N"]),
    (lambda d: d["terms"]["a16-incubated-rent"].update(continues="nowhere"), ["continues = 'nowhere'"]),
    (lambda d: d["continuations"]["incubated"].update(survival=1.4), ["survival must be <= 1"]),
    (lambda d: d["terms"].update({"a16-incubated-rent": {"follows": "a28-first-above-size", "after": 1,
                                                         "continues": "incubated", "quote": "給予三年房租補貼",
                                                         "why": "x"}}), ["pays a fixed amount", "'rate'"]),
    (lambda d: d["groups"].pop("years-poc"), ["group 'years-poc' is not in [groups]"]),
    (lambda d: d["budgets"]["by_year"].update({"2o25": {}}), ["'2o25' is not a year"]),
    (lambda d: d["budgets"].update(later_years=-1.0), ["[budgets]: later_years must be >= 0"]),
    (lambda d: d["renewal"].update(quote="本文件長期有效"), ["[renewal]: quote", "not found verbatim"]),
    (lambda d: d["budgets"]["by_year"]["2025"].update(science_technology={"value": 12.0, "derived": "x"}),
     ["[budgets.by_year.2025]: science_technology must be <= 10"]),
    (lambda d: d["growth"].update(claimants=2.0), ["[growth]: claimants must be <= 1"]),
])
def test_a_bad_years_file_gets_one_clear_message(tmp_path, change, words):
    message = _years_problem(tmp_path, change)
    assert "years.toml" in message
    for word in words:
        assert word in message, message


def test_a_follower_rule_with_a_drawn_amount_is_refused(tmp_path):
    from tests.models import model_copy
    folder = model_copy(tmp_path, MODEL, {"policy.toml": (
        'base = "above_size_three_years"\namount = 30\n',
        'base = "above_size_three_years"\namount = { value = 30, assumed = true, why = "x", uncertainty = '
        '{ range = [20, 30], group = "recognitions-industry", why = "x" } }\n')})
    policy = sim.policy.load(folder)
    with pytest.raises(years.YearsError, match="taken as written in policy.toml"):
        years.load_years(folder, policy)


def test_a_multi_year_run_of_a_model_without_a_years_file_says_what_to_add():
    with pytest.raises(FiscalsimError, match="no years.toml in the model folder"):
        pipeline.run(model="template", settings=pipeline.Settings(replications=2, years=(2024, 2025),
                                                                   stages=("claims",)), progress=False)


@pytest.mark.parametrize("text, words", [("2023-2025", "policy is for 2024"), ("2026-2024", "before the first"),
                                         ("next year", "span of years"), ("2024-2040", "at most")])
def test_a_bad_years_option_gets_one_clear_message(tmp_path, capsys, text, words):
    code = main(["run", "--years", text, "-r", "2", "-o", str(tmp_path / "r"), "--no-progress"])
    assert code != 0
    assert words in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_parse_years():
    assert years.parse_years("2024-2026") == (2024, 2025, 2026)
    assert years.parse_years("2024") == (2024,)


def test_cli_prints_the_commitments_and_the_report_shows_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--years", "2024-2025", "-r", "4", "--n", "20000", "--per-draw", "2",
                 "--process-replications", "2", "--no-sensitivity", "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "多年度" in printed and "以前年度决定带来的承诺" in printed and "2025" in printed
    page = (out / "report" / "report.zh-Hans.html").read_text(encoding="utf-8")
    assert "多年度" in page and 'alt="years"' in page
    assert main(["budget", str(out), "--no-save", "--solver", "highs"]) == 0
    printed = capsys.readouterr().out
    assert "Coverage of each year's expected claims" in printed and " 2025 " in printed
    assert main(["export", str(out), "-o", str(tmp_path / "x.xlsx")]) == 0
    sheets = pd.read_excel(tmp_path / "x.xlsx", sheet_name=None)
    owed = sheets["多年度承诺"]
    assert np.allclose(owed["mean (萬元)"].to_numpy(), pd.read_parquet(out / "commitments.parquet")["mean"].to_numpy())


def test_multi_year_tables_are_the_same_bytes_on_two_dask_workers(tmp_path, three_years):
    distributed = pytest.importorskip("dask.distributed")
    from dataclasses import replace

    from sim.executors import Dask, local_cluster

    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        run = pipeline.run(settings=replace(SETTINGS, years=(2024, 2025, 2026)), executor=Dask(client),
                           progress=False)
    for name in ("liabilities", "years_summary", "commitments", "years_process", "years_coverage", "rules"):
        assert run[name].equals(three_years[name]), name


def test_commitments_do_not_depend_on_renewal(tmp_path, three_years):
    from dataclasses import replace

    from tests.models import model_copy
    folder = model_copy(tmp_path, MODEL, {"years.toml": ("renewed = true", "renewed = false")})
    run = pipeline.run(model=str(folder), settings=replace(SETTINGS, years=(2024, 2025, 2026)), progress=False)
    assert run.manifest["renewed"] is False
    liabilities = run["liabilities"]
    later = liabilities[liabilities["year"] > 2024]
    assert (later["origin"] == "commitment").all() and len(later)
    assert (later["granted"] == 2024).all()
    mine = later.reset_index(drop=True)
    theirs = three_years["liabilities"]
    theirs = theirs[(theirs["year"] > 2024) & (theirs["granted"] == 2024)].reset_index(drop=True)
    assert np.array_equal(mine["district"].to_numpy(), theirs["district"].to_numpy())  # the same survivors
    assert set(zip(run["commitments"]["granted"], run["commitments"]["year"])) == {(2024, 2025), (2024, 2026)}
    budget = run["years_budget"].set_index(["year", "domain"])
    assert np.isfinite(budget["claims"]).all() and budget.loc[(2025, "investment"), "claims"] == 0.0
    assert budget.loc[(2025, "science_technology"), "claims"] == budget.loc[(2025, "science_technology"),
                                                                            "commitments"] > 0


def test_summary_counts_a_replication_without_rows_as_zero():
    table = pd.DataFrame({"replication": [0, 0, 1], "year": [2025, 2025, 2025],
                          "domain": ["industry", "industry", "industry"],
                          "origin": ["commitment", "new", "new"], "district": [30.0, 5.0, 7.0]})
    summary = years.summary_table(table, 1).set_index("origin")
    assert summary.loc["commitment", "mean"] == 15.0 and summary.loc["new", "mean"] == 6.0


def test_between_share_by_hand():
    # draws of two replications: means 1, 11, 21 (variance 100 with ddof 1); within each pair variance 2;
    # between = 100 - 2 / 2 = 99, share = 99 / (99 + 2)
    values = np.array([0.0, 2.0, 10.0, 12.0, 20.0, 22.0])
    assert years.between_share(values, 2) == pytest.approx(99 / 101, rel=1e-12)


def test_driver_finds_a_falling_relation_and_names_none_without_variation():
    x = np.arange(12.0)
    assert years.driver(np.repeat(-x, 3), 3, {"flat": np.ones(12), "falling": x}) == ("falling", 1.0)
    key, share = years.driver(np.repeat(-x, 3), 3, {"flat": np.ones(12)})
    assert key == "" and math.isnan(share)


def test_draw_values_use_each_number_s_own_distribution():
    data = copy.deepcopy(RAW)
    data["growth"]["amounts"]["uncertainty"].update(distribution="triangular", range=[0.0, 0.10])
    model = years.years_from_dict(data, POLICY, "years.toml")
    values = years.draw_values(model, 50, 5, seed=4, vary=True)
    from sim import assumptions
    p = model.amount_growth
    rows = values.groups["years-growth"]
    expected = [assumptions.quantile(p.uncertainty, p.value, x) for x in rows]
    assert np.allclose(values.values["growth.amounts"], expected)
    assert not np.allclose(values.values["growth.amounts"], 0.1 * rows)  # not the uniform's
    point = years.draw_values(model, 3, 5, seed=4, vary=False)
    assert (point.values["growth.amounts"] == p.value).all() and point.of("growth.amounts", 14) == p.value


def test_between_share_recovers_the_variance_between_draws():
    rng = np.random.default_rng(8)
    draws, per_draw = 400, 5
    values = np.repeat(rng.normal(0, 2.0, draws), per_draw) + rng.normal(0, 1.0, draws * per_draw)
    assert years.between_share(values, per_draw) == pytest.approx(0.8, abs=0.04)
    assert years.between_share(rng.normal(0, 1.0, 2000), per_draw) == pytest.approx(0.0, abs=0.04)
    assert math.isnan(years.between_share(values, 1))


def test_no_character_of_the_years_labels_renders_as_a_box():
    from sim import language, report
    text = "".join(zh for zh, _ in YEARS.groups.values()) + "".join(c.label_zh for c in YEARS.continuations.values())
    text += "".join(language.labels("zh-Hans").values())
    assert report.missing_glyphs(text + language.simplified(text)) == set()


# ----------------------------------------------------------------------------- scenarios of the years model
def test_a_scenario_holds_years_numbers_and_the_other_draws_stay(three_years):
    from dataclasses import replace

    longer = pipeline.run("years-incubation-longer", settings=replace(SETTINGS, years=(2024, 2025, 2026)),
                          progress=False)
    numbers = longer["years_numbers"].set_index("number")
    assert numbers.loc["continuations.incubated.survival", "value"] == 0.9
    assert math.isnan(numbers.loc["continuations.incubated.survival", "low"])  # held: a decision, no range
    base = three_years["commitments"].set_index(["domain", "granted", "year"])["mean"]
    more = longer["commitments"].set_index(["domain", "granted", "year"])["mean"]
    # More of 2024's claimants stay (survival 0.9), and with fewer entrants more are mid-term: 2025's commitments
    # grow; 2026's are the 2024 entrants' alone (e s^2: 0.25 x 0.81 against about 0.19 drawn), about the same.
    assert more[("science_technology", 2024, 2025)] > base[("science_technology", 2024, 2025)]
    assert more[("industry", 2024, 2026)] == base[("industry", 2024, 2026)]  # the same draws elsewhere
    assert longer["rules"].equals(three_years["rules"])


def test_a_years_scenario_in_a_one_year_run_is_checked_and_warned(tmp_path):
    run = pipeline.run("years-no-renewal", settings=SETTINGS, progress=False)
    assert any("[years] overrides act only in a multi-year run" in w for w in run.manifest["warnings"])
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nmodel = "binjiang-2024"\n[years.continuations.nowhere]\nsurvival = 0.5\n',
                   encoding="utf-8")
    with pytest.raises(FiscalsimError, match="years.continuations.nowhere: no such entry"):
        pipeline.run(bad, settings=SETTINGS, progress=False, allow_outside=True)
    added = tmp_path / "added.toml"
    added.write_text('name = "added"\nmodel = "binjiang-2024"\n[years.budgets.by_year.2026]\nservices = 1.5\n',
                     encoding="utf-8")
    from sim import scenario
    chosen = scenario.load(added, allow_outside=True)
    model = scenario.apply_years(chosen, scenario.apply(chosen)[0])
    assert model.by_year[2026]["services"].value == 1.5 and model.by_year[2026]["services"].scenario == "added"


def test_compare_shows_the_years_of_two_multi_year_runs(tmp_path, capsys):
    for name in ("baseline", "years-no-renewal"):
        assert main(["run", name, "--years", "2024-2025", "-r", "4", "--n", "20000", "--per-draw", "2",
                     "--no-process", "--no-sensitivity", "-o", str(tmp_path / name), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "baseline"), str(tmp_path / "years-no-renewal"),
                 "--out", str(tmp_path / "c")]) == 0
    printed = capsys.readouterr().out
    assert "各年度兑现额" in printed and "以前年度决定带来的承诺" in printed
    years_table = pd.read_parquet(tmp_path / "c" / "years.parquet")
    later_new = years_table[(years_table["year"] == 2025) & (years_table["origin"] == "new")]
    assert later_new.set_index("scenario")["d_mean"]["baseline"] == 0.0
    assert "years-no-renewal" not in set(later_new["scenario"])  # no new awards when not renewed
    page = (tmp_path / "c" / "compare.zh-Hans.html").read_text(encoding="utf-8")
    assert 'alt="years"' in page


def test_a_renewed_year_has_no_rule_the_text_dates_to_2024(three_years, tmp_path):
    # Issue 30, item 4: 「除標明具體實施期限外,均為2024年全年實施有效」 excepts the dated 「2024年一季度」 items: a renewed
    # package has no new claims of them in 2025 or 2026, and the first year keeps them.
    dated = {r.id for r in POLICY.rules if r.valid is not None}
    assert dated == {"a41-q1-booth-fees", "a41-q1-airfare"}
    assert all(POLICY.rule(r).valid.until == "2024-03-31" and POLICY.rule(r).valid.quote in POLICY.source_text
               for r in dated)
    liabilities = three_years["liabilities"]
    mine = liabilities[liabilities["rule"].isin(dated)]
    by_year = mine.groupby("year")["district"].sum()
    assert by_year[2024] > 0 and by_year.get(2025, 0.0) == 0.0 and by_year.get(2026, 0.0) == 0.0
    others = liabilities[~liabilities["rule"].isin(dated) & (liabilities["origin"] == "new")]
    assert (others.groupby("year")["district"].sum() > 0).all()
    import shutil  # the validity's date is checked

    shutil.copytree(MODEL, tmp_path / "m")
    text = (MODEL / "policy.toml").read_text(encoding="utf-8").replace('until = "2024-03-31"', 'until = "Q1"', 1)
    (tmp_path / "m" / "policy.toml").write_text(text, encoding="utf-8")
    with pytest.raises(FiscalsimError, match=r"rule a41-q1-booth-fees, valid: until must be a date as YYYY-MM-DD, "
                                             r"got 'Q1'"):
        sim.policy.load(tmp_path / "m")


def test_article_49s_cap_holds_for_a_family_over_the_years():
    # Issue 30, item 9: 「累計最高不超過1萬元」 is per family over all years: a family paid its 1萬 in 2024 gets nothing
    # more; a later year pays in full only its new families (share e), the returning ones what they have left.
    rule, n, entrants, reps = "a49-assisted-reproduction", 400, 0.6, 200
    assert YEARS.terms[rule].cumulative and rule in years.replaced(YEARS, 1)
    first = {x: (np.zeros(0), np.zeros(0)) for x in years.sources(YEARS)}
    first[rule] = (np.ones(n), np.full(n, SHARE[rule]))  # every 2024 family at the 1萬 cap
    paid = []
    for r in range(reps):
        cohorts = _cohorts(3, first)
        cohorts[1][rule] = years.Cohort(np.ones(n), np.full(n, SHARE[rule]))
        cohorts[2][rule] = years.Cohort(np.full(n, 0.5), np.full(n, 0.5 * SHARE[rule]))
        carried = years.carry(YEARS, POLICY, cohorts, _values(0.9, entrants), seed=3, replication=r, share=SHARE)
        mine = {row["year"]: row["award"] for row in carried.rows if row["rule"] == rule}
        assert {row["origin"] for row in carried.rows if row["rule"] == rule} == {"new"}  # a year's own claims
        paid.append([mine[1], mine[2]])
    paid = np.array(paid)
    _within_3se(paid[:, 0], n * entrants)  # only the new families of 2025 are paid (each 1萬)
    # 2026: the new families are paid their 0.5萬; a returning 2025 newcomer has 0 left, and so has every 2024 family
    _within_3se(paid[:, 1], n * entrants * 0.5)
    assert (paid[:, 0] <= n).all()


@pytest.mark.parametrize("vary", [True, False])
def test_one_assumption_draw_gives_one_value_per_number(vary):
    # A mutation survivor of sim/years.py (seed 53): the draws asked for are the draws given, one at least.
    for asked in (0, 1):
        values = years.draw_values(YEARS, asked, 5, 2024, vary)
        assert {len(v) for v in values.values.values()} == {1}
    assert {len(v) for v in years.draw_values(YEARS, 3, 5, 2024, vary).values.values()} == {3}
