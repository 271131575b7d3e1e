"""A deliberately plain second implementation of the Binjiang 2024 award rules.

One claimant at a time, plain Python, written straight from the policy text (numbers typed in from
the articles, assumed numbers from the model's planning values), sharing no code with sim.awards or
sim.policy.  Returns {rule id: (award, district-paid part)} in 萬元.
"""


def _rate(base, rate, cap=None, threshold=None):
    if threshold is not None and not base >= threshold:  # 「以上」 is inclusive
        return 0.0
    award = rate * base
    if award < 0:
        award = 0.0
    if cap is not None and award > cap:
        award = cap
    return award


def _flag(value, amount):
    return amount if value else 0.0


def awards_for(f):
    """f: dict of attribute -> value for one claimant."""
    out = {}

    def put(rule_id, award, district_share=1.0):
        out[rule_id] = (award, award * district_share)

    # Article 5: high-tech projects pay 70% of the high-reliability fee; the grid company bears it.
    put("a05-hightech-supply-fee", _rate(f["hightech_project_supply_fee"], 1 - 0.70), 0.0)
    put("a05-peak-shift-reward", _flag(f["peak_shift_participant"], 5.0))  # assumed 5萬

    # Article 11: city-level clauses split 市區1:1.
    put("a11-major-project", _flag(f["major_tech_project"], 1000.0), 0.5)
    put("a11-competitive-project", _rate(f["competitive_project_spending"], 0.20, cap=300.0), 0.5)
    put("a11-national-provincial-task", _rate(f["natprov_research_funds"], 0.25, cap=500.0), 0.5)
    put("a11-programme-matching", _rate(f["city_programme_funds"], 0.10, cap=50.0))  # assumed

    # Article 13: SME-scale: 5% of an increase of 200萬 or more, at most 200萬; 200萬 direct at 1億.
    if f["tech_sme_scale"]:
        if f["rd_spending"] >= 10000:
            sme = 200.0
        else:
            sme = _rate(f["rd_increase"], 0.05, cap=200.0, threshold=200.0)
        large = 0.0
    else:
        sme = 0.0
        if f["rd_spending"] >= 50000:
            large = 300.0
        else:
            large = _rate(f["rd_increase"], 0.05, cap=300.0, threshold=500.0)
    put("a13-rd-increase-sme", sme)
    put("a13-rd-increase-large", large)

    # Article 14
    put("a14-provincial-key-lab", _flag(f["new_provincial_key_lab"], 300.0))  # assumed
    put("a14-intl-rd-institution", 0.5 * f["prov_intl_rd_funds"])
    put("a14-foreign-rd-centre", 0.5 * f["prov_foreign_rd_centre_funds"])

    # Article 15
    put("a15-national-first-prize", _flag(f["national_first_prize_project"], 500.0))
    put("a15-second-tier-prize", _flag(f["second_tier_prize_project"], 200.0))
    put("a15-poc-centre-creation", _flag(f["poc_centre_listed"], 50.0))
    put("a15-poc-centre-performance", _flag(f["poc_centre_recognised"], 500.0))
    put("a15-tech-transactions", _rate(f["tech_transaction_value"], 0.01, cap=200.0))  # 1% assumed

    # Article 16
    grade = f["maker_space_grade"]
    put("a16-maker-space-rating", 30.0 if grade >= 2 else 20.0 if grade >= 1 else 0.0)
    stars = f["incubator_stars"]
    put("a16-incubator-rating", 30.0 if stars >= 5 else 20.0 if stars >= 4 else 0.0)
    put("a16-incubatee-hightech", 15.0 * f["incubatees_hightech_filed"] if stars >= 3 else 0.0)
    put("a16-upgrade-provincial", _flag(f["incubator_upgraded_provincial"], 50.0))
    put("a16-upgrade-national", _flag(f["incubator_upgraded_national"], 50.0))
    put("a16-incubated-rent", _rate(f["incubated_rent"], 0.5, cap=20.0))  # assumed

    # Articles 17, 18, 26
    put("a17-chuying", _flag(f["new_chuying"], 50.0))
    put("a17-provincial-tech-sme", _flag(f["new_prov_tech_sme"], 1.0))
    put("a18-leading-team", _flag(f["new_leading_team"], 500.0))
    put("a26-icv-project", _flag(f["icv_project_selected"], 200.0))

    # Article 28
    put("a28-first-above-size", _flag(f["first_above_size"], 20.0))
    put("a28-above-size-three-years", _flag(f["above_size_three_years"], 30.0))
    put("a28-spin-off-above-size", 10.0 if f["spun_off_entity"] and f["first_above_size"] else 0.0)
    put("a28-little-giant", _flag(f["new_little_giant"], 100.0))
    put("a28-hidden-champion", _flag(f["new_hidden_champion"], 100.0))
    put("a28-provincial-zjtx", _flag(f["new_prov_zjtx"], 20.0))

    # Articles 33, 34, 36
    put("a33-fv-software-national", 50.0 * f["fv_software_national"])
    put("a33-fv-software-provincial", 20.0 * f["fv_software_provincial"])
    put("a33-fv-software-municipal", 10.0 * f["fv_software_municipal"])
    put("a34-if-reddot", 10.0 * f["design_awards_if_reddot"])
    put("a34-china-design-gold", 20.0 * f["design_awards_china_gold"])
    put("a36-cultural-venue", _flag(f["cultural_venue_approved"], 50.0))  # assumed

    # Article 38
    put("a38-bank-credit-loans", _rate(f["credit_loan_increase"], 0.03, cap=200.0))

    # Article 41
    if f["manufacturing"]:
        put("a41-credit-insurance", 0.0)
        put("a41-credit-insurance-manufacturing", _rate(f["export_credit_premium"], 0.65, cap=500.0))
    else:
        put("a41-credit-insurance", _rate(f["export_credit_premium"], 0.60, cap=500.0))
        put("a41-credit-insurance-manufacturing", 0.0)
    put("a41-q1-booth-fees", 0.7 * f["q1_booth_fees"])
    put("a41-q1-airfare", 0.7 * f["q1_airfare"])

    # Article 44, 49
    put("a44-exhibition-venue-rent", _rate(f["exhibition_venue_rent"], 0.30, cap=100.0))  # assumed
    put("a49-assisted-reproduction", min(f["art_self_paid_cost"], 1.0))
    return out
