"""The bundled Binjiang 2024 model against its source text."""

import re

import pytest

import sim.policy

POLICY = sim.policy.load()
SOURCE = POLICY.source_text


def money_forms(value):
    forms = {f"{value:g}萬"}
    if value >= 10000:
        forms.update({f"{value / 10000:g}億", f"{value / 10000:.1f}億"})
    return forms


def test_source_text_is_loaded():
    assert "關于進一步推動經濟高質量發展的若干政策" in SOURCE


def test_all_54_articles_with_their_headings_and_units():
    assert [a.number for a in POLICY.articles] == list(range(1, 55))
    for article in POLICY.articles:
        assert article.heading_zh in SOURCE
        assert f"(責任單位:{'、'.join(article.responsible)})" in SOURCE
        assert article.lead == article.responsible[0]


def test_domains_cover_the_six_sections_and_their_budgets():
    budgets = {d.key: d.budget for d in POLICY.domains}
    assert budgets == {"investment": 611000, "science_technology": 157000, "industry": 102000,
                       "services": 181000, "demand_opening": 102000, "livelihood": 381000}
    assert POLICY.net_total == 1089000
    for domain in POLICY.domains:
        assert domain.budget_quote in SOURCE
        assert money_forms(domain.budget) & {m for m in re.findall(r"[\d.]+[萬億]", domain.budget_quote)}
        for line in domain.sublines:
            assert line.quote in SOURCE
            assert any(form in line.quote for form in money_forms(line.amount))
        assert domain.claims_budget.assumed and domain.claims_budget.why
    assert [len(d.sublines) for d in POLICY.domains] == [5, 0, 0, 0, 0, 6]


@pytest.mark.parametrize("rule", POLICY.rules, ids=POLICY.rule_ids)
def test_every_printed_number_is_in_its_quote(rule):
    assert rule.quote in SOURCE
    for name, param in rule.params().items():
        if param.assumed:
            assert param.why, name
            continue
        if param.derived:
            continue
        if name in ("district_share", "intensity"):
            assert param.value == 1.0  # the reading's default, not a printed number
        elif name == "rate":
            assert f"{param.value * 100:g}%" in rule.quote, name
        else:
            assert any(form in rule.quote for form in money_forms(param.value)), name
    for tier in rule.tiers:
        if POLICY.attribute(rule.tier_base or rule.base).unit == "萬元":
            assert any(form in rule.quote for form in money_forms(tier.at))


def test_articles_named_in_the_issue_all_carry_rules():
    with_rules = {r.article for r in POLICY.rules}
    assert {5, 11, 13, 14, 15, 16, 17, 18, 26, 28, 33, 34, 38, 41, 44, 49} <= with_rules
    assert 40 <= len(POLICY.rules) <= 50


def test_every_claimant_kind_can_claim_something_and_every_attribute_is_read():
    assert {r.claimant for r in POLICY.rules} == set(POLICY.claimants)
    assert {a.name for a in POLICY.input_attributes()} == {a.name for a in POLICY.attributes}


def test_rules_are_funded_by_their_articles_domain():
    for rule in POLICY.rules:
        assert POLICY.article(rule.article).domain == rule.domain


def test_article_11_is_split_with_the_city_and_article_13_has_its_tiers():
    for rule in POLICY.rules:
        expected = 0.5 if rule.article == 11 and rule.id != "a11-programme-matching" else None
        if expected:
            assert rule.district_share.value == expected and rule.judgement
    sme, large = POLICY.rule("a13-rd-increase-sme"), POLICY.rule("a13-rd-increase-large")
    assert [(t.at, t.value.value) for t in sme.tiers] == [(10000, 200)]
    assert [(t.at, t.value.value) for t in large.tiers] == [(50000, 300)]


def test_targets_quote_the_text():
    ids = {t.id for t in POLICY.targets}
    assert {"new-high-tech-enterprises", "rd-intensity"} <= ids
    hte = next(t for t in POLICY.targets if t.id == "new-high-tech-enterprises")
    assert (hte.value, hte.stretch) == (329, 362)
    for target in POLICY.targets:
        assert target.quote in SOURCE


def test_reading_is_stated_once():
    assert POLICY.reading.threshold_inclusive and POLICY.reading.plan_at_maximum
    assert "以上" in POLICY.reading.notes["threshold_note"]


def test_policy_is_immutable():
    with pytest.raises(AttributeError):
        POLICY.rules[0].tiers = ()
    with pytest.raises(TypeError):
        POLICY.claimants["x"] = "y"


def test_articles_keep_every_responsible_unit_in_order():
    policy = sim.policy.load()
    five = policy.article(5)
    assert five.lead == five.responsible[0] == "區發改局" and five.responsible[-1] == "濱江供電分公司"
    assert len(five.responsible) == 11


def test_the_two_thirds_floor_is_the_preamble_of_section_six_not_article_47(tmp_path):
    # Issue 30, item 5: 「2024年,確保一般公共預算支出三分之二用于民生領域」 stands before article 47, in section 六's preamble.
    from pathlib import Path

    from sim.errors import PolicyError
    from tests.models import model_copy

    [floor] = POLICY.spending_floors
    assert floor.section == "六、保障和改善民生政策(由區人力社保局牽頭實施)"
    assert SOURCE.index(floor.section) < SOURCE.index(floor.quote) < SOURCE.index("(四十七)")
    root = Path(__file__).resolve().parents[1]
    for path in [*sorted((root / "sim").glob("*.py")), root / "README.md", root / "models" / "README.md"]:
        assert not re.search(r"article 47('s)? (two|2)", path.read_text(encoding="utf-8"), re.I), path
    folder = model_copy(tmp_path, source=root / "models" / "binjiang-2024", edits={"policy.toml": (
        'section = "六、保障和改善民生政策(由區人力社保局牽頭實施)"', 'section = "七、其他"')})
    with pytest.raises(PolicyError, match="section must be the heading of the text's section that states the quote"):
        sim.policy.load(folder)


def test_verified_is_not_latitude(tmp_path):
    # Issue 30, item 2: 「依照補助標準,經核定給予」: the level follows the cited standard; 經核定 is verification.
    from pathlib import Path

    from sim.errors import PolicyError
    from tests.models import model_copy

    rule = POLICY.rule("a36-cultural-venue")
    assert rule.latitude is None and rule.number("amount").assumed
    root = Path(__file__).resolve().parents[1]
    old = ('judgement = "「經核定」 is verification, not latitude: the level follows the standard the text cites '
           '(unprinted, so assumed), and the design may not lower it."')
    folder = model_copy(tmp_path, source=root / "models" / "binjiang-2024", edits={"policy.toml": (
        old, 'latitude = { word = "經核定", floor = 0.5, why = "x" }')})
    with pytest.raises(PolicyError, match="word '經核定' means verified .*: it leaves no award level open"):
        sim.policy.load(folder)


def test_the_targets_no_rule_pays_for_are_encoded_too():
    # Issue 30, item 10: article 1's municipal start rate, article 9's platforms and centres, article 10's institutes,
    # article 47's ten areas, article 52's housing projects: quoted from the text, beside the 58 before them.
    found = {t.id: (t.article, t.value) for t in POLICY.targets}
    assert len(POLICY.targets) == 65
    assert found["municipal-key-project-start-rate"] == (1, 1.0)
    assert found["zero-magnetic-cross-research-platforms"] == (9, 3)
    assert found["zero-magnetic-industry-innovation-centres"] == (9, 2)
    assert found["national-key-laboratory-institutes"] == (10, 2)
    assert found["livelihood-practical-projects"] == (47, 10)
    assert found["public-rental-housing-continued"] == (52, 3)
    assert found["talent-shared-ownership-housing-continued"] == (52, 2)
    quotes = [t.quote for t in POLICY.targets]
    assert len(set(quotes)) == len(quotes)  # each target its own words of the text
