"""Tests written for mutants that survived the rest of the suite (see tools/mutation.py)."""

import tomllib

import pytest

import sim.policy
from sim.errors import PolicyError
from tests.models import TEMPLATE, model_copy


@pytest.mark.parametrize("model", ["binjiang-2024", "template"])
def test_load_examples_reads_every_case_as_written(model):
    """The examples are read at collection time to parametrise test_examples.py; read them again here (at test
    time) and compare with a plain reading of the files, so a wrong reader cannot hide behind the collection."""
    folder = sim.policy.resolve_model(model) / "examples"
    expected = []
    for file in sorted(folder.glob("*.toml")):
        data = tomllib.loads(file.read_text(encoding="utf-8"))
        for case in data["cases"]:
            expected.append((file.name, data["article"], case["name"], case.get("firm", {}), case["expect"],
                             case.get("expect_district", {})))
    got = sim.policy.load_examples(model)
    assert len(got) == len(expected) > 10
    for example, (file, article, name, firm, expect, district) in zip(got, expected):
        assert (example.file.rpartition("/")[2], example.article, example.name) == (file, article, name)
        assert dict(example.firm) == {k: float(v) for k, v in firm.items()}
        assert dict(example.expect) == {k: float(v) for k, v in expect.items()}
        assert dict(example.expect_district) == {k: float(v) for k, v in district.items()}
        assert all(type(v) is float for v in [*example.firm.values(), *example.expect.values()])


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('name = "', 'note = 1\nname = "', 1), "note"),
    (lambda t: t.replace("expect = { ", "expect = { a99-nothing = 1, ", 1), "expects unknown rule 'a99-nothing'"),
    (lambda t: t.replace("firm = { ", "firm = { no_such_attribute = 1, ", 1),
     "firm names unknown attribute 'no_such_attribute'"),
    (lambda t: t.replace("expect = { t01-rd-increase = 0 }", "expect = {}", 1), "a case needs `expect`"),
])
def test_load_examples_rejects_a_wrong_case(tmp_path, edit, message):
    text = (TEMPLATE / "examples" / "article-01.toml").read_text(encoding="utf-8")
    assert edit(text) != text
    folder = model_copy(tmp_path, edits={"examples/article-01.toml": edit})
    file = folder / "examples" / "article-01.toml"
    with pytest.raises(PolicyError) as info:
        sim.policy.load_examples(str(folder))
    assert message in str(info.value) and file.name in str(info.value)


def _value(raw):
    return float(raw["value"] if isinstance(raw, dict) else raw)


@pytest.mark.parametrize("model", ["binjiang-2024", "template"])
def test_every_rule_loads_as_its_toml_says(model):
    """Each rule as loaded (at test time, not at collection) against a plain reading of policy.toml: the
    loader may add defaults but must not change or drop what the file says."""
    raw = tomllib.loads((sim.policy.resolve_model(model) / "policy.toml").read_text(encoding="utf-8"))
    policy = sim.policy.load(model)
    assert policy.rule_ids == tuple(r["id"] for r in raw["rules"])
    for r in raw["rules"]:
        rule = policy.rule(r["id"])
        for field in ("article", "kind", "claimant", "domain", "recurrence", "base", "quote"):
            assert getattr(rule, field) == r[field], (r["id"], field)
        for name in ("amount", "rate", "cap", "threshold"):
            param = rule.number(name)
            assert (param.value if param else None) == (_value(r[name]) if name in r else None), (r["id"], name)
            if isinstance(r.get(name), dict):
                assert param.assumed == r[name].get("assumed", False) and param.derived == r[name].get("derived", "")
        assert rule.tier_base == r.get("tier_base")
        assert [(t.at, t.value.value) for t in rule.tiers] == [
            (float(t["at"]), float(t.get("amount", t.get("rate", t.get("value"))))) for t in r.get("tiers", [])]
        assert [(c.attribute, c.op, c.value) for c in rule.eligibility] == [
            (c["attribute"], op, float(c[op])) for c in r.get("eligibility", []) for op in c if op != "attribute"]
        assert rule.district_share.value == (_value(r["district_share"]) if "district_share" in r else 1.0)
        assert rule.subline == r.get("subline") and rule.judgement == r.get("judgement", "")
        assert rule.intensity.value == (_value(r["intensity"]) if "intensity" in r else 1.0)
        assert rule.priority.value == (_value(r["priority"]) if "priority" in r else 1.0)


@pytest.mark.parametrize("model", ["binjiang-2024", "template"])
def test_domains_attributes_and_uncertainty_load_as_the_toml_says(model):
    raw = tomllib.loads((sim.policy.resolve_model(model) / "policy.toml").read_text(encoding="utf-8"))
    policy = sim.policy.load(model)
    assert list(policy.domain_keys) == list(raw["domains"])
    for key, d in raw["domains"].items():
        domain = policy.domain(key)
        assert (domain.name_zh, domain.name_en, domain.lead, domain.budget, domain.budget_article) == (
            d["name_zh"], d["name_en"], d["lead"], float(d["budget"]), d.get("budget_article"))
        assert (domain.first_article, domain.last_article) == tuple(d["articles"])
        assert domain.claims_budget.value == _value(d["claims_budget"])
        assert domain.claims_budget.assumed == d["claims_budget"].get("assumed", False)
        u = d["claims_budget"].get("uncertainty")
        if u:
            got = domain.claims_budget.uncertainty
            assert (got.low, got.high, got.distribution, got.group) == (
                float(u["range"][0]), float(u["range"][1]), u["distribution"], u["group"])
    assert [a.name for a in policy.attributes] == list(raw["attributes"])
    for name, a in raw["attributes"].items():
        got = next(x for x in policy.attributes if x.name == name)
        assert (got.claimant, got.type, got.unit, got.description) == (a["claimant"], a["type"], a["unit"],
                                                                        a["description"])
        assert got.default == (float(a["default"]) if "default" in a else None)
        assert got.min == float(a.get("min", 0.0))
        assert (got.label_zh, got.aliases) == (a.get("label_zh", ""), tuple(a.get("aliases", ())))


@pytest.mark.parametrize("model", ["binjiang-2024", "template"])
def test_the_process_model_loads_as_process_toml_says(model):
    """Windows, bureaus, payment days and per-rule settings against a plain reading with datetime."""
    import datetime as dt

    import sim.process

    raw = tomllib.loads((sim.policy.resolve_model(model) / "process.toml").read_text(encoding="utf-8"))
    policy = sim.policy.load(model)
    m = sim.process.load_process(model, policy)
    year = raw["calendar"]["year"]
    day = lambda text: float((dt.date.fromisoformat(text) - dt.date(year, 1, 1)).days)  # noqa: E731
    assert (m.year, m.issued_day) == (year, day(raw["calendar"]["issued"]))
    assert m.horizon == float((dt.date(year + 1, 1, 1) - dt.date(year, 1, 1)).days)
    pay = raw["payment"]
    assert m.payment_days == tuple(day(f"{year}-{month:02d}-{pay['day_of_month']:02d}") for month in range(1, 13))
    assert m.exhaustion == pay["exhaustion"]
    assert m.cutoff_day == (day(pay["pro_rata_cutoff"]) if "pro_rata_cutoff" in pay else m.cutoff_day)
    assert list(m.windows) == list(raw["windows"])
    for name, w in raw["windows"].items():
        if w["kind"] == "continuous":
            expected = ((day(w["open"]), day(w["close"])),)
        else:
            expected = tuple((day(o), day(o) + w["length_days"]) for o in w["opens"])
        assert m.windows[name].intervals == expected, name
    assert list(m.bureaus) == list(raw["bureaus"])
    for name, b in raw["bureaus"].items():
        got = m.bureaus[name]
        assert (got.reviewers, got.review_days, got.window, got.name_en) == (
            b["reviewers"], b["review_days"], b["window"], b.get("name_en", ""))
    defaults = raw["defaults"]
    assert set(m.rules) == set(policy.rule_ids)
    for rule in policy.rules:
        settings = {**defaults, **raw.get("rules", {}).get(rule.id, {})}
        got = m.rules[rule.id]
        assert (got.domain, got.bureau) == (rule.domain, settings.get("bureau", policy.article(rule.article).lead))
        assert (got.expert_days, got.notice_days, got.approval) == (
            float(settings.get("expert_days", 0)), float(settings.get("notice_days", 0)),
            float(settings.get("approval", 1.0))), rule.id
        if "window" in settings:
            assert got.window == settings["window"]
        else:
            assert got.window == m.bureaus[got.bureau].window
    assert dict(m.budgets) == {d.key: d.claims_budget.value for d in policy.domains}


NUMBER_KEYS = {"median", "sigma", "tail_from", "tail_alpha", "probability", "multiplier", "mean", "sd", "limit", "rate",
               "low", "high", "value"}


@pytest.mark.parametrize("model", ["binjiang-2024", "template"])
def test_the_population_spec_loads_as_population_toml_says(model):
    """Segments and every generator step of each claimant programme against a plain reading of the file."""
    import sim.population

    raw = tomllib.loads((sim.policy.resolve_model(model) / "population.toml").read_text(encoding="utf-8"))
    spec = sim.population.load_spec(model)
    assert [s.id for s in spec.segments] == [s["id"] for s in raw["segments"]]
    for segment, r in zip(spec.segments, raw["segments"]):
        assert (segment.claimant, segment.count) == (r["claimant"], r["count"])
        programme = raw["claimants"].get(r["claimant"], {})
        assert dict(segment.classes) == {d: r[d] for d in programme.get("dimensions", {})}
    for claimant, programme in raw["claimants"].items():
        got = spec.programmes[claimant]
        assert {k: tuple(v) for k, v in programme.get("dimensions", {}).items()} == dict(got.dimensions)
        assert [s.attribute for s in got.steps] == list(programme.get("attributes", {}))
        for step in got.steps:
            r = programme["attributes"][step.attribute]
            loading = float(r.get("loading", 0.0))  # a loading without a factor loads on the event factor
            factor = r.get("factor", programme.get("event_factor") if loading else None)
            assert (step.kind, step.factor, step.loading) == (r["kind"], factor, loading), step.attribute
            of = r.get("of", ())
            assert (step.only_if, step.when, tuple(step.of)) == (r.get("only_if"), r.get("when"),
                                                                 (of,) if isinstance(of, str) else tuple(of))
            assert step.internal == r.get("internal", False)
            assert {k: tuple(v) for k, v in step.only.items()} == {k: tuple(v) for k, v in r.get("only", {}).items()}
            for name in NUMBER_KEYS & set(r):
                level = step.numbers[name]
                if isinstance(r[name], dict):
                    assert dict(level.values) == {k: float(v) for k, v in r[name].items()}, (step.attribute, name)
                else:
                    assert level.by is None and level.values == float(r[name]), (step.attribute, name)


# ----------------------------------------------------------------------------- scenarios
def test_a_scenario_from_a_table_keeps_every_field_and_defaults_the_rest():
    import json

    import sim.scenario as scenario

    full = scenario.from_dict({"name": "s", "model": "template", "description": "d", "title_zh": "情景",
                               "title_en": "S", "policy": {"rules": {}}, "population": {"shocks": {}},
                               "process": {"payment": {}}}, origin="here.toml")
    assert (full.name, full.description, full.title_zh, full.title_en, full.path) == ("s", "d", "情景", "S",
                                                                                     "here.toml")
    assert full.model == "template"
    assert json.loads(full.overrides) == {"policy": {"rules": {}}, "population": {"shocks": {}},
                                          "process": {"payment": {}}}
    bare = scenario.from_dict({"name": "b"})
    assert (bare.description, bare.title_zh, bare.title_en, bare.path) == ("", "", "", "<scenario>")
    assert json.loads(bare.overrides) == {} and bare.model == sim.policy.default_model() == "binjiang-2024"
    assert full.section("process") == {"payment": {}} and full.section("policy") == {"rules": {}}
    assert bare.section("population") == {}


@pytest.mark.parametrize("data, message", [
    ({}, "`name` is required"), ({"name": "  "}, "`name` is required"), ({"name": 3}, "`name` is required"),
    ({"name": "x", "description": 1}, "description must be text"), ({"name": "x", "title_zh": 1}, "title_zh must be text"),
    ({"name": "x", "title_en": []}, "title_en must be text"), ({"name": "x", "policy": []}, "[policy] must be a table"),
    ({"name": "x", "population": 1}, "[population] must be a table"), ({"name": "x", "process": "p"}, "[process] must be a table"),
    ({"name": "x", "policy": {"rules": {}, "targets": {}}}, "policy.targets cannot be overridden"),
])
def test_a_scenario_table_with_a_mistake_names_it(data, message):
    import sim.scenario as scenario
    from sim.errors import ScenarioError

    with pytest.raises(ScenarioError) as info:
        scenario.from_dict(data, origin="mine.toml")
    assert message in str(info.value) and str(info.value).startswith("mine.toml: ")


def _template_apply(data):
    import sim.scenario as scenario

    return scenario.apply(scenario.from_dict({"name": "t", "model": "template", **data}))


def test_scenario_tiers_and_budgets_replace_the_baselines_and_are_marked():
    policy, _ = _template_apply({"policy": {"rules": {"t01-rd-increase": {"tiers": [{"at": 4000, "amount": 60}]}},
                                            "domains": {"innovation": {"budget": 12345, "claims_budget": 6000}}}})
    tiers = policy.rule("t01-rd-increase").tiers
    assert [(t.at, t.value.value, t.value.scenario) for t in tiers] == [(4000.0, 60.0, "t")]
    domain = policy.domain("innovation")
    assert domain.budget == 12345 and domain.claims_budget.value == 6000 and domain.claims_budget.scenario == "t"
    assert domain.sublines == ()


@pytest.mark.parametrize("tiers, message", [
    ({"at": 1, "amount": 2}, "must be a list of tables"), ([1, 2], "must be a list of tables"),
    ([{"amount": 2}], "tier 1: give `at` and one value"), ([{"at": 1}], "tier 1: give `at` and one value"),
    ([{"at": 1, "amount": 2}, {"at": 2, "amount": 3, "rate": 0.1}], "tier 2: give `at` and one value"),
])
def test_scenario_tiers_that_are_not_at_and_one_value(tiers, message):
    from sim.errors import ScenarioError

    with pytest.raises(ScenarioError) as info:
        _template_apply({"policy": {"rules": {"t01-rd-increase": {"tiers": tiers}}}})
    assert message in str(info.value) and "policy.rules.t01-rd-increase.tiers" in str(info.value)


@pytest.mark.parametrize("data, message", [
    ({"policy": {"rules": []}}, "policy.rules must be a table"),
    ({"policy": {"rules": {"t01-rd-increase": 5}}}, "policy.rules.t01-rd-increase must be a table"),
    ({"policy": {"domains": {"innovation": {"name_zh": "x"}}}}, "only budget and claims_budget"),
    ({"policy": {"domains": {"innovation": 1}}}, "policy.domains.innovation must be a table"),
    ({"population": {"segments": []}}, "population.segments must be a table"),
    ({"population": {"claimants": {"enterprise": {"attributes": {"revenue": {"median": {"huge": {"x": 1}}}}}}}},
     "no such entry"),
])
def test_scenario_overrides_of_the_wrong_shape(data, message):
    from sim.errors import FiscalsimError

    with pytest.raises(FiscalsimError) as info:
        _template_apply(data)
    assert message in str(info.value)


def test_a_scenario_value_replaces_the_number_and_drops_its_own_range_only():
    _, spec = _template_apply({"population": {"claimants": {"enterprise": {"attributes": {
        "revenue": {"sigma": {"small": 1.5, "large": 1.1}}}}}, "shocks": {"rd_spending": 1.2}}})
    revenue = next(s for s in spec.programme("enterprise").steps if s.attribute == "revenue")
    assert dict(revenue.numbers["sigma"].values) == {"small": 1.5, "large": 1.1}
    assert dict(revenue.numbers["median"].values) == {"small": 300.0, "large": 20000.0}  # untouched
    assert spec.shocks == {"rd_spending": 1.2}


def test_a_cap_below_the_direct_award_warns_once_and_only_then():
    import sim.scenario as scenario

    base = sim.policy.load()

    def warnings(cap_sme, cap_large=None):
        rules = {"a13-rd-increase-sme": {"cap": cap_sme}}
        if cap_large is not None:
            rules["a13-rd-increase-large"] = {"cap": cap_large}
        chosen = scenario.from_dict({"name": "w", "policy": {"rules": rules}})
        policy, _ = scenario.apply(chosen)
        return scenario.warnings_of(chosen, policy, base)

    assert warnings(300) == [] and warnings(200) == []  # at or above the direct 200萬 award: nothing to say
    (message,) = warnings(150)
    assert message.startswith("scenario w: rule a13-rd-increase-sme (article 13): the cap 150 萬元 is below")
    assert "direct award of 200 萬元 (at rd_spending >= 10000)" in message
    both = warnings(150, 250)
    assert len(both) == 2 and "a13-rd-increase-large" in both[1] and "direct award of 300" in both[1]


# ----------------------------------------------------------------------------- catalogue and explanations
def test_the_catalogue_rows_say_what_the_text_says():
    policy = sim.policy.load()
    table = sim.policy.catalogue_table(policy)
    assert len(table) == 45 + 37 and (table["rule"] == "—").sum() == 54 - 17  # 45 rules, 37 articles without
    rows = table.set_index("rule")
    assert rows.loc["a13-rd-increase-sme"].to_dict() == {
        "art": 13, "domain": "science_technology", "heading": "更大力度實施企業研發投入補助政策", "lead": "區科技局",
        "kind": "rate", "base": "rd_increase", "numbers": "rate 5%, cap 200, threshold 200",
        "tiers": "rd_spending >=10000: 200", "district": "", "recurs": "annual", "latitude": "不超過 >= 50%"}
    assert rows.loc["a15-national-first-prize", "latitude"] == ""  # 「給予500萬元獎勵」 fixes the amount
    assert rows.loc["a16-maker-space-rating", ["numbers", "tiers"]].tolist() == ["", ">=1: 20; >=2: 30"]
    assert rows.loc["a05-hightech-supply-fee", ["numbers", "district"]].tolist() == ["rate 30%", "0%*"]
    assert rows.loc["a11-major-project", ["numbers", "district", "recurs"]].tolist() == ["amount 1000", "50%",
                                                                                        "one-off"]
    inputs = sim.policy.inputs_table(policy).set_index("attribute")
    assert inputs.loc["rd_spending"].to_dict() == {"claimant": "enterprise", "type": "float", "unit": "萬元",
                                                   "default": "required", "rules": 2,
                                                   "description": "R&D spending in the year"}
    defaulted = next(a for a in policy.attributes if a.default is not None)
    assert inputs.loc[defaulted.name, "default"] == f"{defaulted.default:g}"


def test_format_param_and_condition_words():
    from sim.policy import Condition, Param

    assert sim.policy.format_param(None) == ""
    assert sim.policy.format_param(Param(0.05), percent=True) == "5%"
    assert sim.policy.format_param(Param(200.0)) == "200"
    assert sim.policy.format_param(Param(0.3, assumed=True), percent=True) == "30%*"
    assert sim.policy.format_param(Param(250.0, scenario="s")) == "250†"
    assert [Condition("a", op, 3.0).describe() for op in ("equals", "at_least", "below")] == [
        "a == 3", "a >= 3", "a < 3"]


EXPLAINED = {  # firm -> {rule: (award, district, steps)}; each checked by hand against the policy text
    "binjiang-2024": ({"rd_spending": 12000, "rd_increase": 150, "tech_sme_scale": 0, "natprov_research_funds": 4000,
                       "incubatees_hightech_filed": 4, "incubator_stars": 3, "fv_software_national": 2,
                       "major_tech_project": 1, "hightech_project_supply_fee": 100}, {
        "a05-hightech-supply-fee": (30.0, 0.0, ["30% x hightech_project_supply_fee 100 = 30 -> 30",  # no cap: none shown
                                                "district share 0 -> district pays 0"]),
        "a11-major-project": (1000.0, 500.0, ["major_tech_project is set -> fixed 1,000",
                                              "district share 0.5 -> district pays 500"]),
        "a11-national-provincial-task": (500.0, 250.0, [
            "25% x natprov_research_funds 4,000 = 1,000, cap 500 -> 500", "district share 0.5 -> district pays 250"]),
        "a13-rd-increase-sme": (0.0, 0.0, ["eligibility tech_sme_scale == 1: tech_sme_scale = 0 -> NOT met: no award"]),
        "a13-rd-increase-large": (0.0, 0.0, [
            "eligibility tech_sme_scale == 0: tech_sme_scale = 0 -> met", "rd_increase = 150 >= threshold 500? no",
            "5% x rd_increase 150 = 7.5, cap 300 -> 0",
            "direct tiers (rd_spending >= 50,000: 300); rd_spending = 12,000 -> 0; the larger of the two: 0"]),
        "a16-incubator-rating": (0.0, 0.0, ["incubator_stars = 3 against tiers (>= 4: 20, >= 5: 30) -> 0"]),
        "a16-incubatee-hightech": (60.0, 60.0, ["eligibility incubator_stars >= 3: incubator_stars = 3 -> met",
                                                "4 x 15 per unit -> 60"]),
        "a33-fv-software-national": (100.0, 100.0, ["2 x 50 per unit -> 100"])}),
    "template": ({"export_value": 25000, "rd_increase": 50, "rd_spending": 6000, "patents": 3, "external_funds": 100,
                  "new_high_tech": 1, "home_stars": 4}, {
        "t01-rd-increase": (50.0, 50.0, [
            "rd_increase = 50 >= threshold 100? no", "10% x rd_increase 50 = 5, cap 50 -> 0",
            "direct tiers (rd_spending >= 5,000: 50); rd_spending = 6,000 -> 50; the larger of the two: 50"]),
        "t02-matching": (20.0, 20.0, ["20% x external_funds 100 = 20, cap 100 -> 20"]),
        "t04-new-high-tech": (20.0, 20.0, ["new_high_tech is set -> fixed 20"]),
        "t05-patents": (6.0, 6.0, ["3 x 2 per unit, cap 20 -> 6"]),
        "t06-exports": (30.0, 30.0, ["export_value = 25,000: 1% x 1,000 (the part from 0 to 1,000) + 0.5% x 24,000 "
                                     "(the part from 1,000 up), cap 30 -> 30"]),
        "t08-care-home-stars": (20.0, 20.0, ["home_stars = 4 against tiers (>= 3: 10, >= 4: 20, >= 5: 30) -> 20"])}),
}


@pytest.mark.parametrize("model", list(EXPLAINED))
def test_explain_gives_the_arithmetic_of_every_kind(model):
    import sim.awards

    firm, expected = EXPLAINED[model]
    got = {e["rule"]: (e["award"], e["district"], e["steps"]) for e in sim.awards.explain(sim.policy.load(model), firm)}
    assert got == expected


def test_empty_totals_are_zeros_of_the_policys_shape_and_combine_as_nothing():
    import numpy as np

    import sim.montecarlo as mc

    policy = sim.policy.load("template")
    empty = mc.empty_totals(policy)
    assert empty.award.shape == empty.district.shape == empty.claimants.shape == (len(policy.rules),)
    assert empty.firms.shape == (1 + len(policy.domain_keys),) and empty.claimants.dtype == np.int64
    assert not (empty.award.any() or empty.district.any() or empty.claimants.any() or empty.firms.any())
    one = mc.BlockTotals(np.arange(6.0), np.arange(6.0) / 2, np.arange(6), np.arange(4))
    both = mc.combine([empty, one])
    assert np.array_equal(both.award, one.award) and np.array_equal(both.district, one.district)
    assert np.array_equal(both.claimants, one.claimants) and np.array_equal(both.firms, one.firms)


def test_process_days_and_bureau_names():
    import datetime as dt

    import sim.process

    model = sim.process.load_process()
    assert model.day("2024-01-01") == 0.0 and model.day("2024-12-31") == 365.0  # 2024 is a leap year
    assert model.day(dt.date(2024, 3, 1)) == 60.0 and model.date(60.5) == dt.date(2024, 3, 1)
    assert model.bureau_label("區科技局", "en") == "Science & Technology Bureau"
    assert model.bureau_label("區科技局", "zh-Hans") == "區科技局"


# ----------------------------------------------------------------------------- budget LPs
def _tiny_lp(rhs_le: float, rhs_eq: float | None = None, upper: float = 10.0):
    """min x0 + x1 subject to -x0 - x1 <= rhs_le (x0 + x1 >= -rhs_le), optionally x0 - x1 == rhs_eq, 0 <= x <= upper."""
    import numpy as np
    from scipy import sparse

    from sim.budget import LinearProgram, RowBlock

    lp = LinearProgram("tiny LP", ("x0", "x1"), np.array([1.0, 1.0]), np.zeros(2), np.full(2, upper),
                       [RowBlock("demand", ("d",), sparse.csr_matrix([[-1.0, -1.0]]), np.array([rhs_le]))])
    if rhs_eq is not None:
        lp.equalities.append(RowBlock("balance", ("b",), sparse.csr_matrix([[1.0, -1.0]]), np.array([rhs_eq])))
    return lp


@pytest.mark.parametrize("solver", ["highs", "cbc", "pulp-highs", "scipy"])
def test_a_tiny_lp_solves_to_its_hand_optimum_with_duals_on_every_solver(solver):
    from sim.budget import solve

    s = solve(_tiny_lp(-3.0, rhs_eq=1.0), solver)
    assert s.objective == pytest.approx(3.0) and s.x == pytest.approx([2.0, 1.0])
    assert s.duals["demand"] == pytest.approx([-1.0]) and s.slacks["demand"] == pytest.approx([0.0], abs=1e-9)
    assert s.solver == solver and s.solve_seconds >= 0


@pytest.mark.parametrize("solver", ["highs", "cbc", "pulp-highs", "scipy"])
def test_an_infeasible_lp_names_itself_its_status_and_its_constraint_families(solver):
    from sim.budget import BudgetError, solve

    with pytest.raises(BudgetError) as info:
        solve(_tiny_lp(-30.0, rhs_eq=1.0), solver)  # x0 + x1 >= 30 with both at most 10
    assert str(info.value) == ("tiny LP: infeasible: no budget satisfies every constraint "
                               "(constraint families: demand, balance)")


def test_the_loss_matrix_sums_district_claims_per_replication_and_domain():
    import numpy as np
    import pandas as pd

    from sim.budget import domain_loss_matrix

    rules = pd.DataFrame({"replication": [0, 0, 0, 1, 2], "domain": ["a", "a", "c", "c", "a"],
                          "district": [1.0, 2.0, 4.0, 8.0, 16.0], "award": [9.0] * 5})
    got = domain_loss_matrix(rules, ["a", "b", "c"])
    assert np.array_equal(got, [[3.0, 0.0, 4.0], [0.0, 0.0, 8.0], [16.0, 0.0, 0.0]])


# ----------------------------------------------------------------------------- second round (sampled survivors)
def test_empirical_cvar_is_the_mean_of_the_worst_tail():
    import numpy as np

    from sim.budget import _cvar

    values = np.arange(1.0, 101.0)  # 1 .. 100
    assert _cvar(values, 0.9) == pytest.approx(95.5)  # the mean of the worst 10: 91 .. 100
    assert _cvar(values, 0.0) == pytest.approx(values.mean() + 0.0)  # eta = 1, then the mean excess over 1, + 1
    assert _cvar(np.zeros(10), 0.95) == 0.0


def test_cvar_budgets_keep_the_current_budgets_and_respect_floors():
    import numpy as np

    from sim.budget import build_cvar, cvar_budgets, solve

    rng = np.random.default_rng(3)
    losses = rng.gamma(2.0, 50.0, size=(200, 2))
    table = cvar_budgets(losses, ["a", "b"], 0.9, 5.0, current=np.array([120.0, 80.0]))["budgets"]
    assert table["current_claims_budget"].tolist() == [120.0, 80.0]
    assert cvar_budgets(losses, ["a", "b"], 0.9, 5.0)["budgets"]["current_claims_budget"].isna().all()
    floored = solve(build_cvar(losses, ["a", "b"], 0.9, 5.0, floors=np.array([10_000.0, 0.0])), "highs")
    assert floored.x[0] >= 10_000.0 - 1e-6  # the floor binds far above any claim


def test_reallocation_accepts_an_envelope_between_zero_and_one():
    import numpy as np

    from sim.budget import BudgetError, ClaimsInput, build_reallocation

    policy = sim.policy.load("template")
    data = ClaimsInput.from_policy(policy, {r.id: 1.0 for r in policy.rules})
    def envelope(lp):
        return next(b for b in lp.equalities if b.family == "envelope").rhs.tolist()
    assert envelope(build_reallocation(data, envelope=0.5)) == [0.5]
    assert envelope(build_reallocation(data, envelope=0.0)) == [0.0]
    with pytest.raises(BudgetError, match="envelope must be >= 0"):
        build_reallocation(data, envelope=-0.5)
    assert envelope(build_reallocation(data)) == [float(data.budgets.sum())] and np.isfinite(data.budgets).all()


def test_award_tables_label_gross_and_district_paid():
    import numpy as np

    import sim.awards

    policy = sim.policy.load()
    firms = {a.name: np.array([a.default if a.default is not None else 0.0] * 2) for a in policy.input_attributes()}
    firms["major_tech_project"] = np.array([1.0, 0.0])
    awards = sim.awards.evaluate(policy, firms)
    gross, district = awards.frame(), awards.frame(district=True)
    assert gross.loc[0, "a11-major-project"] == 1000.0 and district.loc[0, "a11-major-project"] == 500.0
    table = awards.rule_table().set_index("rule")
    assert list(table.columns) == ["article", "domain", "claimants", "award", "district"]
    assert table.loc["a11-major-project", ["claimants", "award", "district"]].tolist() == [1, 1000.0, 500.0]


def test_the_monthly_process_table_is_tidy():
    import numpy as np

    from sim.process import _monthly

    class Summary:
        def __init__(self, value):
            self.monthly = np.full((2, 12, 5), value, dtype=float)
    frame = _monthly([Summary(1.0), Summary(2.0)], ["r1", "r2"])
    assert list(frame.columns) == ["replication", "rule", "month", "applications", "claimed", "approvals",
                                   "approved", "paid"]
    assert len(frame) == 2 * 2 * 12 and frame["month"].tolist()[:13] == [*range(1, 13), 1]
    assert frame["replication"].tolist() == [0] * 24 + [1] * 24
    assert frame["rule"].tolist()[:13] == ["r1"] * 12 + ["r2"]
    assert frame["paid"].tolist() == [1.0] * 24 + [2.0] * 24 and frame["approvals"].dtype == np.int64


def test_a_scenario_budget_replaces_the_published_sub_lines():
    import sim.scenario as scenario

    base = sim.policy.load()
    with_lines = next(d for d in base.domains if d.sublines)
    policy, _ = scenario.apply(scenario.from_dict({"name": "b", "policy": {"domains": {
        with_lines.key: {"budget": with_lines.budget + 1000}}}}))
    assert policy.domain(with_lines.key).sublines == () and policy.domain(with_lines.key).budget == with_lines.budget + 1000
    assert any(r.subline for r in base.rules if r.domain == with_lines.key)  # the baseline's rules drew on a line
    assert not any(r.subline for r in policy.rules if r.domain == with_lines.key)  # now on the new total


@pytest.mark.parametrize("data, message", [
    ({"process": {"bureaus": 3}}, "mine.toml: process.bureaus must be a table"),
    ({"process": {"windows": {"continuous": 1}}}, "mine.toml: process.windows.continuous must be a table"),
])
def test_process_overrides_that_are_not_tables_name_the_file_and_path(data, message):
    import sim.scenario as scenario
    from sim.errors import ScenarioError

    chosen = scenario.from_dict({"name": "p", **data}, origin="mine.toml")
    with pytest.raises(ScenarioError) as info:
        scenario.apply_process(chosen, sim.policy.load())
    assert message in str(info.value)


def test_an_unknown_bundled_model_lists_the_bundled_ones():
    import sim.scenario as scenario
    from sim.errors import ScenarioError

    with pytest.raises(ScenarioError) as info:
        scenario.from_dict({"name": "m", "model": "nowhere"}, origin="mine.toml")
    assert "model 'nowhere' is not a bundled model (bundled: binjiang-2024, template)" in str(info.value)


@pytest.mark.parametrize("value, text", [
    (600, "export_value = 600: 1% x 600 (the part from 0 to 1,000), cap 30 -> 6"),
    (1000.5, "export_value = 1,000.5: 1% x 1,000 (the part from 0 to 1,000) + 0.5% x 0.5 (the part from 1,000 up), "
             "cap 30 -> 10.0025"),
])
def test_explaining_bands_counts_only_the_part_in_each_band(value, text):
    import sim.awards

    steps = {e["rule"]: e["steps"] for e in sim.awards.explain(sim.policy.load("template"), {"export_value": value})}
    assert steps["t06-exports"] == [text]


# ----------------------------------------------------------------------------- third round (written, not yet re-run)
def _process_copy(tmp_path, old, new):
    return model_copy(tmp_path, edits={"process.toml": (old, new)})


def test_a_payment_day_past_the_28th_is_refused(tmp_path):
    import sim.process
    from sim.errors import SpecError

    assert sim.process.load_process(_process_copy(tmp_path, "day_of_month = 25", "day_of_month = 28")).payment_days[1] == 58
    with pytest.raises(SpecError, match=r"day_of_month must lie in 1-28, got 29"):
        sim.process.load_process(_process_copy(tmp_path / "b", "day_of_month = 25", "day_of_month = 29"))


def test_process_rules_may_cite_a_source_and_may_be_absent(tmp_path):
    import sim.process

    cited = _process_copy(tmp_path, "[rules.t06-exports]\napproval = 0.9\n",
                          '[rules.t06-exports]\napproval = 0.9\nsource = "customs records"\n')
    assert sim.process.load_process(cited).rules["t06-exports"].approval == 0.9
    defaults = _process_copy(tmp_path / "c", "[defaults]\napproval = 0.95\n",
                             '[defaults]\napproval = 0.9\nsource = "bureau statistics"\n')
    assert sim.process.load_process(defaults).rules["t04-new-high-tech"].approval == 0.9

    folder = model_copy(tmp_path / "b", edits={"process.toml": lambda text: text[:text.index("[rules.")]})
    bare = sim.process.load_process(folder)
    assert bare.rules["t06-exports"].approval == sim.process.load_process("template").rules["t04-new-high-tech"].approval


def test_process_assumptions_are_filed_under_the_process_file():
    import sim.process

    model = sim.process.load_process("template")
    assert model.uncertain and {u.file for u in model.uncertain} == {"process"}
    assert ("payment", "day_of_month") in {u.path for u in model.uncertain}


def test_the_baseline_scenario_is_titled_in_both_languages():
    import sim.scenario as scenario

    base = scenario.baseline()
    assert (base.title_zh, base.title_en, base.is_baseline) == ("基准情景", "Baseline", True)


def test_a_scenario_setting_a_rule_the_process_file_does_not_list():
    import sim.scenario as scenario

    policy = sim.policy.load("template")
    chosen = scenario.from_dict({"name": "p", "model": "template",
                                 "process": {"rules": {"t05-patents": {"approval": 0.5}}}})
    model = scenario.apply_process(chosen, policy)
    assert model.rules["t05-patents"].approval == 0.5


def test_a_scenario_whose_policy_breaks_names_the_scenario():
    import sim.scenario as scenario
    from sim.errors import PolicyError

    chosen = scenario.from_dict({"name": "r", "model": "template",
                                 "policy": {"rules": {"t01-rd-increase": {"rate": 7}}}}, origin="rates.toml")
    with pytest.raises(PolicyError) as info:
        scenario.apply(chosen)
    assert str(info.value).startswith("rates.toml (scenario applied to ")


def test_every_award_kernel_computes_in_float64_whatever_the_input_dtype():
    """Counts and flags may arrive as float32 or int32 columns; the money must still be float64 products (3 x 0.1
    in float32 is 0.30000001, in float64 0.30000000000000004): the kernels convert before multiplying."""
    import numpy as np

    from sim import kinds

    narrow = np.array([3.0, 7.0, 1e4], dtype=np.float32)
    wide = narrow.astype(np.float64)
    pairs = [
        (kinds.capped_rate(narrow, 0.1), wide * 0.1),
        (kinds.capped_rate(narrow, 0.1, cap=np.inf, threshold=5.0), np.where(wide >= 5.0, wide * 0.1, 0.0)),
        (kinds.share_of_external_funds(narrow, 0.1), wide * 0.1),
        (kinds.per_unit_award(narrow, 0.1), wide * 0.1),
        (kinds.per_unit_award(narrow.astype(np.int32), 0.1), wide * 0.1),
        (kinds.marginal_rate(narrow, [0.0], [0.1]), wide * 0.1),
        (kinds.co_funded_share(narrow, 0.1), wide * 0.1),
        (kinds.tiered_award(narrow, [5.0], [0.1]), np.where(wide >= 5.0, 0.1, 0.0)),
    ]
    for got, expected in pairs:
        assert got.dtype == np.float64
        assert got.tobytes() == expected.tobytes()


def test_an_uncertain_tier_is_listed_under_its_rule_and_tier_number(tmp_path):
    folder = model_copy(tmp_path, edits={"policy.toml": (
        "{ at = 4, amount = 20 }",
        '{ at = 4, amount = { value = 20, assumed = true, why = "w", uncertainty = { range = [15, 25], group = "stars", why = "u" } } }')})
    policy = sim.policy.load(folder)
    tiers = [u for u in policy.uncertain() if "tier" in u.where]
    assert len(tiers) == 1
    index = policy.rule_ids.index("t08-care-home-stars")
    assert tiers[0].where == "rule t08-care-home-stars, tier 2"
    assert tiers[0].path == ("rules", index, "tiers", 1, "amount", "value")
    assert (tiers[0].point, tiers[0].uncertainty.low, tiers[0].uncertainty.high) == (20.0, 15.0, 25.0)


def test_a_mistake_in_the_model_table_is_placed_under_model(tmp_path):
    folder = model_copy(tmp_path, edits={"policy.toml": lambda t: t.replace("[model]\n", "[model]\nedition = 2\n", 1)})
    with pytest.raises(PolicyError) as error:
        sim.policy.load(folder)
    assert "policy.toml: [model]: unknown key 'edition'" in str(error.value)


def test_a_domain_without_rules_has_zero_awards_in_the_domain_table(tmp_path):
    import numpy as np

    import sim.awards

    def drop_livelihood(text):
        blocks = text.split("[[rules]]")
        return "[[rules]]".join([blocks[0], *(b for b in blocks[1:] if 'domain = "livelihood"' not in b)])

    folder = model_copy(tmp_path, edits={"policy.toml": drop_livelihood})
    policy = sim.policy.load(folder)
    assert "livelihood" in policy.domain_keys and "livelihood" not in {r.domain for r in policy.rules}
    firms = {a.name: np.full(3, 5.0 if a.type != "bool" else 1.0) for a in policy.input_attributes()}
    table = sim.awards.evaluate(policy, firms).domain_table()
    assert list(table.index) == list(policy.domain_keys)
    assert table.loc["livelihood"].tolist() == [0.0, 0.0] and table["award"].sum() > 0


def test_an_unknown_key_in_a_calibration_statistic_is_refused(tmp_path):
    import sim.population
    from sim.errors import SpecError

    folder = model_copy(tmp_path, edits={"population.toml": (
        'statistic = { kind = "count", attribute = "new_high_tech" }',
        'statistic = { kind = "count", attribute = "new_high_tech", year = 2024 }')})
    with pytest.raises(SpecError) as error:
        sim.population.load_spec(folder)
    assert "calibration new-high-tech, statistic: unknown key 'year'" in str(error.value)


def test_a_count_loaded_on_the_event_factor_follows_it_and_keeps_its_mean():
    """Template patents: Poisson mean 0.5 for large firms, loading 0.5 on the innovation factor (which R&D intensity
    also follows): the counts rise with the factor, and exp(l z - l^2 / 2) leaves the mean unchanged."""
    import numpy as np

    import sim.population as pop

    spec = pop.load_spec(TEMPLATE)
    large = next(i for i, s in enumerate(spec.segments) if s.id == "large-firms")
    m = 200_000
    drawn = pop._draw_block(spec, spec.segments[large], large, m, np.random.default_rng(11))
    patents, innovation = drawn["patents"], np.log(drawn["rd_intensity"])
    assert abs(patents.mean() - 0.5) < 5 * np.sqrt(0.5 * np.exp(0.25) / m)  # variance of a lognormal-mixed Poisson
    high = innovation > np.median(innovation)
    assert patents[high].mean() > 1.3 * patents[~high].mean()


def test_a_bad_issue_date_is_placed_under_calendar(tmp_path):
    import sim.process
    from sim.errors import SpecError

    with pytest.raises(SpecError) as error:
        sim.process.load_process(_process_copy(tmp_path, 'issued = "2024-03-01"', 'issued = "2023-03-01"'))
    assert "process.toml: [calendar]: issued 2023-03-01 is outside 2024" in str(error.value)


def test_explain_reads_defaults_conditions_and_an_exclusive_reading(tmp_path):
    """A model that reads 「以上」 as exclusive, with a default for R&D spending and a rule with two conditions:
    the explanation takes the default for a missing attribute, lists both conditions, and applies '>'."""
    import sim.awards

    folder = model_copy(tmp_path, edits={"policy.toml": lambda text: text.replace(
        "threshold_inclusive = true", "threshold_inclusive = false", 1).replace(
        'type = "float"\nunit = "萬元"\ndescription = "R&D spending in the year"',
        'type = "float"\nunit = "萬元"\ndescription = "R&D spending in the year"\ndefault = 6000', 1).replace(
        'base = "external_funds"\nrate = 0.20',
        'base = "external_funds"\neligibility = [{ attribute = "patents", at_least = 1 }, '
        '{ attribute = "new_high_tech", equals = 1 }]\nrate = 0.20', 1)})
    policy = sim.policy.load(folder)
    assert not policy.reading.threshold_inclusive
    firm = {"rd_increase": 100, "external_funds": 100, "patents": 2, "new_high_tech": 1, "home_stars": 4}
    got = {e["rule"]: (e["award"], e["steps"]) for e in sim.awards.explain(policy, firm)}
    assert got["t01-rd-increase"] == (50.0, [
        "rd_increase = 100 > threshold 100? no", "10% x rd_increase 100 = 10, cap 50 -> 0",
        "direct tiers (rd_spending > 5,000: 50); rd_spending = 6,000 -> 50; the larger of the two: 50"])
    assert got["t02-matching"] == (20.0, [
        "eligibility patents >= 1, new_high_tech == 1: patents = 2, new_high_tech = 1 -> met",
        "20% x external_funds 100 = 20, cap 100 -> 20"])
    assert got["t08-care-home-stars"] == (10.0, ["home_stars = 4 against tiers (> 3: 10, > 4: 20, > 5: 30) -> 10"])


def test_a_bureau_without_an_english_name_is_shown_by_its_own_name(tmp_path):
    import sim.process

    model = sim.process.load_process(_process_copy(tmp_path, 'name_en = "Science and Technology Bureau"\n', ""))
    assert not model.bureaus["區科技局"].name_en
    assert model.bureau_label("區科技局", "en") == "區科技局"
    assert model.bureau_label("區經信局", "en") == "Economy and Information Bureau"


def test_scenario_mistakes_name_the_scenario_and_the_entry(tmp_path):
    import sim.scenario as scenario
    from sim.errors import ScenarioError

    bad = scenario.from_dict({"name": "t", "population": {"claimants": {"enterprise": {"attributes": {
        "no_such": {"mean": 1}}}}}})
    with pytest.raises(ScenarioError) as error:
        scenario.apply(bad)
    assert str(error.value) == ("<scenario>: population.claimants.enterprise.attributes.no_such: no such entry in the "
                                "model's population specification")
    with pytest.raises(ScenarioError) as error:
        scenario.load(tmp_path / "missing.toml")
    assert str(error.value).startswith(f"{tmp_path / 'missing.toml'}: no such scenario file and no bundled scenario")
    assert scenario.baseline().name == "baseline" and scenario.load("baseline").name == "baseline"


@pytest.mark.parametrize("solver", ["cbc", "pulp-highs"])
def test_pulp_hands_the_lp_to_the_solver_asked_for(monkeypatch, solver):
    """Through PuLP, the solver named is the one that solves (PuLP alone would fall back to its default, CBC)."""
    import sim.budget

    chosen = sim.budget._pulp_solver(solver)
    calls = []
    original = type(chosen).actualSolve

    def recording(self, lp, **kwargs):
        calls.append(type(self).__name__)
        return original(self, lp, **kwargs)

    monkeypatch.setattr(type(chosen), "actualSolve", recording)
    monkeypatch.setattr(sim.budget, "_pulp_solver", lambda name: chosen)
    solution = sim.budget.solve(_tiny_lp(-3.0, rhs_eq=1.0), solver)
    assert calls == [type(chosen).__name__] and solution.objective == pytest.approx(3.0)


def test_the_default_solver_is_highs_on_the_lps_own_arrays(monkeypatch):
    """The default hands the matrices to HiGHS itself: PuLP's modelling layer is never touched."""
    import sim.budget

    monkeypatch.setattr(sim.budget, "_solve_pulp", lambda lp, solver: pytest.fail("PuLP was used"))
    solution = sim.budget.solve(_tiny_lp(-3.0, rhs_eq=1.0))
    assert solution.solver == "highs" and solution.objective == pytest.approx(3.0)
    assert solution.slacks["balance"] == pytest.approx([0.0]) and sim.budget.SOLVERS[0] == "highs"


def test_the_membership_matrix_has_a_row_for_a_last_domain_without_rules():
    import numpy as np

    from sim.budget import ClaimsInput

    data = ClaimsInput(rules=("r1", "r2", "r3"), domains=("a", "b", "c"), claims=np.array([1.0, 2.0, 3.0]),
                       rule_domain=np.array([0, 1, 0]), budgets=np.array([5.0, 5.0, 5.0]), weights=np.ones(3),
                       sublines=(), net_total=15.0)
    assert data.membership().toarray().tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert data.domain_claims().tolist() == [4.0, 2.0, 0.0]


def test_tier_bounds_may_go_as_low_as_the_attribute_they_read(tmp_path):
    """Tiers on an attribute that may be negative (an R&D increase, min -1e12) may start below zero; on one that
    may not (R&D spending, min 0) they may not."""
    negative = {"policy.toml": lambda t: t.replace('tier_base = "rd_spending"\ntiers = [{ at = 5000, amount = 50 }]',
                                                   'tier_base = "rd_increase"\ntiers = [{ at = -100, amount = 50 }]', 1)}
    rule = sim.policy.load(model_copy(tmp_path / "a", edits=negative)).rule("t01-rd-increase")
    assert rule.tier_base == "rd_increase" and rule.tiers[0].at == -100.0
    below = {"policy.toml": ("tiers = [{ at = 5000, amount = 50 }]", "tiers = [{ at = -100, amount = 50 }]")}
    with pytest.raises(PolicyError, match=r"rule t01-rd-increase, tier 1: at must be >= 0, got -100"):
        sim.policy.load(model_copy(tmp_path / "b", edits=below))


def test_a_mistake_in_the_budget_total_is_placed_under_budget_total(tmp_path):
    folder = model_copy(tmp_path, edits={"policy.toml": lambda t: t.replace("[budget_total]\n", "[budget_total]\nx = 1\n", 1)})
    with pytest.raises(PolicyError, match=r"policy.toml: \[budget_total\]: unknown key 'x'"):
        sim.policy.load(folder)


def test_population_file_shapes(tmp_path):
    """A categorical may put all its weight on one value; an unknown key of a claimant's table and a segment that is
    not a table are refused by name."""
    import numpy as np

    import sim.population as pop
    from sim.errors import SpecError

    certain = model_copy(tmp_path / "a", edits={"population.toml": (
        "probabilities = [0.15, 0.15, 0.2, 0.3, 0.15, 0.05]", "probabilities = [0, 0, 0, 0, 1, 0]")})
    spec = pop.load_spec(certain)
    homes = next(i for i, s in enumerate(spec.segments) if s.claimant == "care_home")
    assert np.all(pop.draw_block(spec, 1, 0, homes, 0, 50)["home_stars"] == 4)
    unknown = model_copy(tmp_path / "b", edits={"population.toml": (
        'event_factor = "innovation"', 'event_factor = "innovation"\nlabel = "firms"')})
    with pytest.raises(SpecError, match=r"\[claimants.enterprise\]: unknown key 'label'"):
        pop.load_spec(unknown)
    data = tomllib.loads((TEMPLATE / "population.toml").read_text(encoding="utf-8"))
    data["segments"] = [3, *data["segments"]]
    with pytest.raises(SpecError) as error:
        pop.spec_from_dict(data, sim.policy.load("template"), origin="edited.toml")
    assert str(error.value).endswith("edited.toml: segments entry 1: must be a table, got int")
    assert "problems" not in str(error.value)  # one message: the fields of a non-table are not asked for too


def test_a_population_a_scenario_breaks_is_reported_under_the_scenario():
    import sim.scenario as scenario
    from sim.errors import SpecError

    bad = scenario.from_dict({"name": "t", "population": {"segments": {"iot-small": {"count": -5}}}})
    with pytest.raises(SpecError) as error:
        scenario.apply(bad)
    assert str(error.value) == ("<scenario> (scenario applied to models/binjiang-2024/population.toml): segment "
                                "iot-small: count must lie in 0-10,000,000, got -5")


def test_an_in_process_run_records_its_settings():
    import sim.montecarlo as mc
    import sim.scenario as scenario

    policy, spec = scenario.apply(scenario.baseline("template"))
    result = mc.run(policy, spec, replications=2, seed=1, n=500, scale=1.0, progress=False)
    assert result.settings == {"n": 500, "scale": 1.0, "workers": 1}


# ----------------------------------------------------------------------------- seed 23 (montecarlo, process)
def test_two_replications_have_a_standard_deviation():
    import numpy as np

    from sim import montecarlo
    stats = montecarlo._stats(np.array([1.0, 3.0]))
    assert stats["sd"] == pytest.approx(np.sqrt(2.0)) and stats["sem"] == pytest.approx(1.0)
    assert np.isnan(montecarlo._stats(np.array([1.0]))["sd"])


def test_joining_no_kept_claimants_gives_empty_columns():
    from sim import montecarlo
    kept = montecarlo.join_kept([])
    assert len(kept.rule) == len(kept.award) == len(kept.district) == 0


def test_level_totals_are_in_replication_then_key_order_whatever_the_input_order():
    import numpy as np
    import pandas as pd

    from sim import montecarlo
    rules = pd.DataFrame({"replication": [1, 0, 1, 0], "domain": ["b", "b", "a", "a"], "award": [1.0, 2.0, 3.0, 4.0],
                          "district": [1.0, 2.0, 3.0, 4.0]})
    out = montecarlo.level_totals(rules, "domain")
    assert list(zip(out["replication"], out["key"])) == [(0, "a"), (0, "b"), (1, "a"), (1, "b")]
    assert np.array_equal(out["district"].to_numpy(), [4.0, 2.0, 3.0, 1.0])


def test_replication_claims_use_the_population_size_asked_for():
    from sim import montecarlo, population
    policy = sim.policy.load("template")
    spec = population.load_spec("template", policy=policy)
    small = montecarlo.replication_claims(policy, spec, seed=3, replication=0, n=500)
    run = montecarlo.run(policy, spec, 1, seed=3, n=500, progress=False)
    assert small["amount"].sum() == pytest.approx(run.rules["district"].sum(), rel=1e-12)
    assert len(small) < len(montecarlo.replication_claims(policy, spec, seed=3, replication=0))


def test_a_model_without_process_settings_says_so(tmp_path):
    from sim import process
    from sim.errors import SpecError
    folder = model_copy(tmp_path, TEMPLATE)
    (folder / "process.toml").unlink()
    with pytest.raises(SpecError, match="no process settings in the model folder"):
        process.load_process(folder)


# ----------------------------------------------------------------------------- seed 24 (headline, years)
def test_headline_screens_the_driver_by_rank_correlation_without_sobol_indices():
    import numpy as np
    import pandas as pd

    from sim import headline
    draws = np.array([[0.1, 0.5], [0.3, 0.5], [0.6, 0.5], [0.9, 0.5]])  # group "a" moves, group "b" does not
    claims = np.repeat([10.0, 20.0, 30.0, 40.0], 2)  # two replications per draw, rising with "a"
    rules = pd.DataFrame({"replication": np.arange(8), "domain": "d", "district": claims})
    budgets = pd.DataFrame({"replication": np.arange(8), "domain": "d", "claims_budget": 25.0})
    row = headline.table(rules, budgets, ["d"], 2, draws, ("a", "b")).iloc[0]
    assert row["driver"] == "a" and row["driver_measure"] == 1.0
    assert row["driver_source"] == "squared rank correlation with the run's draws"
    assert row["expected_shortfall"] == (5.0 * 2 + 15.0 * 2) / 8  # only the claims above the budget
    assert row["p_overrun"] == 0.5


def test_years_budget_table_counts_a_year_without_commitments_as_zero():
    import pandas as pd

    from sim import years
    liabilities = pd.DataFrame({"replication": [0, 1], "year": [2025, 2025], "domain": ["d", "d"],
                                "origin": ["new", "new"], "district": [10.0, 30.0]})
    budgets = pd.DataFrame({"replication": [0, 1], "year": [2025, 2025], "domain": ["d", "d"],
                            "claims_budget": [20.0, 20.0]})
    row = years.budget_table(liabilities, budgets).iloc[0]
    assert row["commitments"] == 0.0 and row["claims"] == 20.0 and row["p_overrun"] == 0.5
    assert row["mean_shortfall"] == 5.0
