"""Malformed models: each mistake an analyst can make gets one clear message naming where it is."""

import shutil

import pytest

import sim.policy
from sim.errors import PolicyError

MODEL = sim.policy.resolve_model()
TEXT = (MODEL / "policy.toml").read_text(encoding="utf-8")


def in_rule(rule_id, old, new, text=TEXT):
    """Replace `old` by `new` inside the [[rules]] block of `rule_id` only."""
    start = text.index(f'id = "{rule_id}"')
    end = text.find("[[rules]]", start)
    end = len(text) if end < 0 else end
    block = text[start:end]
    assert old in block, (rule_id, old)
    return text[:start] + block.replace(old, new, 1) + text[end:]


def load_edited(tmp_path, text):
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "policy.toml").write_text(text, encoding="utf-8")
    shutil.copy(MODEL / "source.txt", folder / "source.txt")
    return sim.policy.load(folder)


CASES = {
    "negative cap": (
        in_rule("a13-rd-increase-sme", "cap = 200", "cap = -5"),
        "policy.toml: article 13, rule a13-rd-increase-sme: cap must be >= 0, got -5"),
    "unknown key in a rule": (
        in_rule("a38-bank-credit-loans", "cap = 200", "cap = 200\ncapp = 300"),
        "article 38, rule a38-bank-credit-loans: unknown key 'capp'"),
    "rate above 1": (
        in_rule("a13-rd-increase-large", "rate = 0.05", "rate = 5"),
        "rule a13-rd-increase-large: rate must be <= 1, got 5"),
    "duplicate rule id": (
        in_rule("a13-rd-increase-large", 'id = "a13-rd-increase-large"', 'id = "a13-rd-increase-sme"'),
        "rule a13-rd-increase-sme: duplicate rule id"),
    "unknown domain": (
        in_rule("a17-chuying", 'domain = "science_technology"', 'domain = "science"'),
        "article 17, rule a17-chuying: unknown domain 'science'"),
    "unknown attribute": (
        in_rule("a13-rd-increase-sme", 'base = "rd_increase"', 'base = "rd_increse"'),
        "rule a13-rd-increase-sme: base names unknown attribute 'rd_increse'"),
    "a rate of a yes/no attribute": (
        in_rule("a13-rd-increase-sme", 'base = "rd_increase"', 'base = "manufacturing"'),
        "rule a13-rd-increase-sme: base 'manufacturing' must be of type float or int, is bool"),
    "sublines do not add up": (
        TEXT.replace("amount = 172000", "amount = 172001", 1),
        "domain investment: sublines add to 611001 萬元 but the budget is 611000 萬元"),
    "negative sub-line amount": (
        TEXT.replace("amount = 172000", "amount = -172000", 1),
        "domain investment, subline 1: amount must be >= 0, got -172000"),
    "negative domain budget": (
        TEXT.replace("budget = 102000", "budget = -102000", 1),
        "domain industry: budget must be >= 0, got -102000"),
    "amount is text": (
        in_rule("a11-major-project", "amount = 1000", 'amount = "1000"'),
        "rule a11-major-project: amount must be a number, got '1000'"),
    "assumed without a reason": (
        in_rule("a36-cultural-venue", 'assumed = true, why = "「依照補助標準', 'assumed = true, note = "「依照補助標準'),
        "rule a36-cultural-venue: unknown key 'note'"),
    "assumed with no why at all": (
        in_rule("a44-exhibition-venue-rent", 'assumed = true, why = "「一定比例的場租補貼」 leaves the share open; 30% is a planning figure.", ',
                'assumed = true, '),
        "rule a44-exhibition-venue-rent: rate is assumed, so it needs a `why`"),
    "assumed without a range": (
        in_rule("a44-exhibition-venue-rent", ', uncertainty = { range = [0.15, 0.5], group = "a44-exhibition-rent", '
                'why = "「一定比例的場租補貼」: 15-50% of the rent." }', ""),
        "rule a44-exhibition-venue-rent: rate is assumed, so it needs a plausible range"),
    "assumed value outside its range": (
        in_rule("a44-exhibition-venue-rent", "range = [0.15, 0.5]", "range = [0.4, 0.5]"),
        "rule a44-exhibition-venue-rent: uncertainty of rate: range [0.4, 0.5] must contain the number's value 0.3"),
    "range with low above high": (
        in_rule("a44-exhibition-venue-rent", "range = [0.15, 0.5]", "range = [0.5, 0.15]"),
        "rule a44-exhibition-venue-rent: uncertainty of rate: range [0.5, 0.15] has low above high"),
    "range that is not a pair": (
        in_rule("a44-exhibition-venue-rent", "range = [0.15, 0.5]", "range = [0.15]"),
        "rule a44-exhibition-venue-rent: uncertainty of rate: range must be [low, high], got [0.15]"),
    "range with an unknown distribution": (
        in_rule("a44-exhibition-venue-rent", "range = [0.15, 0.5]", 'range = [0.15, 0.5], distribution = "normal"'),
        "uncertainty of rate: distribution must be one of uniform, triangular, loguniform, got 'normal'"),
    "range without a group": (
        in_rule("a44-exhibition-venue-rent", 'group = "a44-exhibition-rent", ', ""),
        "rule a44-exhibition-venue-rent: group is required"),
    "unknown kind": (
        in_rule("a38-bank-credit-loans", 'kind = "rate"', 'kind = "ratio"'),
        "rule a38-bank-credit-loans: kind must be one of rate, external_share, fixed, tiered, per_unit"),
    "quote not verbatim": (
        in_rule("a17-provincial-tech-sme", "給予1萬元獎勵", "給予2萬元獎勵"),
        "rule a17-provincial-tech-sme: quote is not found verbatim in the model's source text"),
    "missing required field": (
        in_rule("a26-icv-project", 'recurrence = "one-off"\n', ""),
        "article 26, rule a26-icv-project: recurrence is required"),
    "claims budget above the budget": (
        TEXT.replace("claims_budget = { value = 40800", "claims_budget = { value = 140800", 1),
        "domain industry: claims_budget must lie between 0 and the budget 102000, got 140800"),
    "tiers out of order": (
        in_rule("a16-incubator-rating", "tiers = [{ at = 4, amount = 20 }, { at = 5, amount = 30 }]",
                "tiers = [{ at = 5, amount = 30 }, { at = 4, amount = 20 }]"),
        "rule a16-incubator-rating: tiers must be listed with `at` strictly increasing"),
    "field that does not apply to the kind": (
        in_rule("a18-leading-team", "amount = 500", "amount = 500\nthreshold = 3"),
        "rule a18-leading-team: threshold does not apply to a fixed rule"),
    "unknown top-level section": (
        TEXT + "\n[budgets]\nx = 1\n",
        "policy.toml: unknown key 'budgets'"),
    "base of another claimant": (
        in_rule("a17-chuying", 'base = "new_chuying"', 'base = "incubator_upgraded_national"'),
        "rule a17-chuying: base 'incubator_upgraded_national' belongs to claimant 'incubator', the rule to 'enterprise'"),
    "district share above 1": (
        in_rule("a11-competitive-project", 'district_share = { value = 0.5, derived', 'district_share = { value = 1.5, derived'),
        "rule a11-competitive-project: district_share must be <= 1, got 1.5"),
    "article gap": (
        TEXT.replace("number = 54\n", "number = 55\n", 1),
        "articles must be numbered 1..54 without gaps; missing [54]"),
    "rule on an article that does not exist": (
        in_rule("a49-assisted-reproduction", "article = 49", "article = 94"),
        "rule a49-assisted-reproduction: article 94 is not among the model's articles"),
    "latitude word not in the quote": (
        in_rule("a17-chuying", 'latitude = { word = "最高"', 'latitude = { word = "不超過"'),
        "rule a17-chuying, latitude: word '不超過' is not in the rule's quote"),
    "latitude floor above 1": (
        in_rule("a17-chuying", 'word = "最高", floor = 0.5', 'word = "最高", floor = 1.5'),
        "rule a17-chuying, latitude: floor must be <= 1, got 1.5"),
    "latitude with an unknown key": (
        in_rule("a17-chuying", 'word = "最高", floor = 0.5', 'word = "最高", flor = 0.5'),
        "rule a17-chuying, latitude: unknown key 'flor'"),
    "spending floor of an unknown domain": (
        TEXT.replace('id = "livelihood-two-thirds"\ndomain = "livelihood"', 'id = "livelihood-two-thirds"\ndomain = "welfare"'),
        "spending floor livelihood-two-thirds: unknown domain 'welfare'"),
    "spending floor quote not verbatim": (
        TEXT.replace('quote = "確保一般公共預算支出三分之二用于民生領域"\nsection = ',
                     'quote = "確保一般公共預算支出四分之三用于民生領域"\nsection = '),
        "spending floor livelihood-two-thirds: quote is not found verbatim"),
    "tiered rule with an empty tier list": (
        in_rule("a16-incubator-rating", "tiers = [{ at = 4, amount = 20 }, { at = 5, amount = 30 }]", "tiers = []"),
        "rule a16-incubator-rating: a tiered rule needs at least one tier"),
    "spending floor share above 1": (
        TEXT.replace('share = { value = 0.666667, derived', 'share = { value = 1.5, derived'),
        "spending floor livelihood-two-thirds: share must be <= 1, got 1.5"),
    "negative stretch of a target": (
        TEXT.replace("stretch = 362", "stretch = -362"),
        "target new-high-tech-enterprises: stretch must be >= 0, got -362"),
    "not TOML": (
        TEXT.replace('[reading]', '[reading', 1),
        "policy.toml: not valid TOML"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_model_is_rejected_with_a_clear_message(tmp_path, name):
    text, expected = CASES[name]
    with pytest.raises(PolicyError) as info:
        load_edited(tmp_path, text)
    message = str(info.value)
    assert expected in message
    assert "Traceback" not in message


def test_all_problems_are_reported_together(tmp_path):
    text = in_rule("a13-rd-increase-sme", "cap = 200", "cap = -5")
    text = in_rule("a38-bank-credit-loans", 'kind = "rate"', 'kind = "ratio"', text)
    with pytest.raises(PolicyError) as info:
        load_edited(tmp_path, text)
    assert "2 problems" in str(info.value)


def test_unedited_copy_loads(tmp_path):
    policy = load_edited(tmp_path, TEXT)
    assert len(policy.rules) == len(sim.policy.load().rules)


def test_missing_model_names_the_bundled_ones(tmp_path):
    with pytest.raises(PolicyError, match="bundled models: binjiang-2024"):
        sim.policy.load(tmp_path / "nowhere")
