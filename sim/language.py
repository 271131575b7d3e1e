"""The reader's language: Simplified Chinese by default, Traditional Chinese and English on request.

fiscalsim's own words (labels, captions, definitions) are written once in Simplified Chinese and in
English, here.  Traditional Chinese is converted from the Simplified words by OpenCC (``s2t``); the
model's own Chinese (domain names, article headings, bureau names, assumption labels) is converted to
Simplified by OpenCC (``t2s``) and kept as published for Traditional.  Quotes of the policy text are
never converted: the published text stays their source.

Money is in 萬元 in every table on disk; :func:`yi` and :func:`wan` write it for a reader.
"""

from __future__ import annotations

import functools
import math

from sim.errors import FiscalsimError

LANGS = ("zh-Hans", "zh-Hant", "en")
DEFAULT = "zh-Hans"
ALIASES = {"zh": "zh-Hans", "zh-CN": "zh-Hans", "zh-cn": "zh-Hans", "zh-TW": "zh-Hant", "zh-tw": "zh-Hant",
           "zh-HK": "zh-Hant", "en-US": "en", "en-GB": "en"}


def check(lang: str) -> str:
    """The language code, with its common aliases (``zh`` is Simplified), or one clear error.

    >>> check("zh"), check("en"), check("zh-Hant")
    ('zh-Hans', 'en', 'zh-Hant')
    """
    lang = ALIASES.get(lang, lang)
    if lang not in LANGS:
        raise FiscalsimError(f"--lang must be one of {', '.join(LANGS)} (zh = zh-Hans), got {lang!r}")
    return lang


def chinese(lang: str) -> bool:
    return lang.startswith("zh")


@functools.cache
def _converter(config: str):
    try:
        import opencc
    except ImportError:  # a dependency: say how to get it rather than print the wrong script
        raise FiscalsimError("Chinese output needs OpenCC: pip install opencc") from None
    return opencc.OpenCC(config)


def simplified(text: str) -> str:
    """Any Chinese text in Simplified script (OpenCC t2s); text without Chinese is unchanged.

    >>> simplified("研發投入")
    '研发投入'
    """
    return _converter("t2s").convert(text) if text else text


def model_text(text: str, lang: str) -> str:
    """A Chinese string of the model (as published) in the reader's script: Simplified for zh-Hans.

    >>> model_text("科技創新政策", "zh-Hans"), model_text("科技創新政策", "zh-Hant")
    ('科技创新政策', '科技創新政策')
    """
    return _converter("t2s").convert(text) if lang == "zh-Hans" and text else text


def own_text(text: str, lang: str) -> str:
    """fiscalsim's own Chinese words (written in Simplified) in the reader's script.

    >>> own_text("预计兑现额", "zh-Hant")
    '預計兌現額'
    """
    return _converter("s2t").convert(text) if lang == "zh-Hant" and text else text


def labels(lang: str) -> dict[str, str]:
    """Every label of the reports and the terminal in ``lang``."""
    return _labels(check(lang))


@functools.cache
def _labels(lang: str) -> dict[str, str]:
    if lang == "en":
        return dict(EN)
    return {key: own_text(value, lang) for key, value in ZH.items()}


# ----------------------------------------------------------------------------- money and shares
def yi(wan_yuan: float, digits: int = 2) -> str:
    """萬元 written in 億元 (1億 = 10,000萬), never in scientific notation.

    >>> yi(94780.2), yi(608.2), yi(-16280), yi(float("nan"))
    ('9.48', '0.06', '-1.63', '—')
    """
    if wan_yuan is None or not math.isfinite(wan_yuan):
        return "—"
    return f"{wan_yuan / 1e4:,.{digits}f}"


def wan(wan_yuan: float) -> str:
    """萬元 with thousands separators, no decimals.

    >>> wan(94780.2), wan(3.2e9)
    ('94,780', '3,200,000,000')
    """
    if wan_yuan is None or not math.isfinite(wan_yuan):
        return "—"
    return f"{wan_yuan:,.0f}"


def share(p: float) -> str:
    """A probability or share as a whole percentage ('<1%' and '>99%' at the edges that are not 0 or 1).

    >>> share(0.667), share(0.004), share(0.0), share(1.0), share(0.996)
    ('67%', '<1%', '0%', '100%', '>99%')
    """
    if p is None or not math.isfinite(p):
        return "—"
    if 0 < p < 0.005:
        return "<1%"
    if 0.995 < p < 1:
        return ">99%"
    return f"{p:.0%}"


# ----------------------------------------------------------------------------- the words
ZH = {
    # targets
    "targets_title": "政策文本中的量化目标",
    "targets_note": ("共{n}项目标,逐字引自政策原文。模型能够模拟的{m}项给出模拟值;其中用于设定参数的目标按构造吻合,"
                     "不构成证据。其余目标(投资、用地、基金、民生实事等)不在本模型模拟范围内。"),
    "target_article": "条款", "target_quote": "原文", "target_value_unit": "目标", "target_simulated": "模拟值",
    "target_how": "模拟值的含义", "target_not_simulated": "未模拟",
    "comparison_at_least": "不低于", "comparison_at_most": "不高于", "comparison_about": "约",
    "fig_design": "预算收紧时各条款兑现比例的变化",
    "cap_design": ("横轴为各领域可兑现预算相对现有水平的倍数(向右逐渐收紧),纵轴为优化后的兑现比例(占最高额);"
                   "每条线是一个被下调的条款,越早离开100%的条款越先被下调。预算收紧时已下调的条款不再回升。"),
    "design_factor": "可兑现预算为现有的倍数", "design_share": "兑现比例(占最高额)",
    # design
    "design_title": "怎样定奖补力度才不超支:在政策文本留有余地的条款内优化",
    "design_intro": ("对文本写明“最高”“不超过”“一定比例”等、留有余地的条款,在不低于下限的前提下选择实际兑现比例"
                     "(占最高额的比例),使每个领域在最坏的{tail}年份里平均缺口不超过该领域可兑现预算的{tol},"
                     "并使按优先级加权的预计兑现额最大。文本写死金额或比例的条款不调整。结果依赖可兑现预算等假设,"
                     "以及“下限”这一规划设定。“预算降到几倍时开始下调”取自逐步收紧各领域预算、"
                     "已下调条款不再回升的路径;“仅在本方案中”表示该条款只在本方案(不受路径约束的最优解)中下调。"),
    "design_rules": "需要下调的条款(最先下调的在前)",
    "design_lines": "调整前后各领域的风险",
    "design_rule": "条款", "design_intensity": "兑现比例(占最高额)", "design_floor": "下限",
    "design_given_up": "少兑现(亿元)", "design_first_cut": "预算降到几倍时开始下调",
    "design_budget_yi": "可兑现预算(各次模拟平均,亿元)", "design_claims_before": "调整前兑现额(亿元)",
    "design_claims_after": "调整后兑现额(亿元)", "design_p_before": "调整前超支概率",
    "design_p_after": "调整后超支概率", "design_cvar_before": "调整前尾部平均缺口(亿元)",
    "design_cvar_after": "调整后尾部平均缺口(亿元)", "design_shadow": "每多1万元预算可多兑现(万元)",
    "design_change_yi": "调剂(亿元)",
    "design_none": "各领域在现行力度下已满足风险要求,无需下调任何条款。",
    "design_never": "仅在本方案中",
    "design_scenario": "按此力度重新模拟(换一个随机种子)可检验承诺:fiscalsim run {path} -s 新种子",
    "years_title": "多年度:今年的决定在以后年度要花多少钱",
    "years_intro": ("{first}年兑现的部分奖补在以后年度继续支付:孵化企业三年房租补贴的第二、三年,"
                    "概念验证中心每年的绩效补助,"
                    "首次上规企业连续三年在规后的奖励。“承诺”是以前年度已经给出的、以后年度仍要兑现的部分,"
                    "只要企业仍符合条件就要支付;“新增”是当年新产生的申报,{renewal}"
                    "金额为区级承担部分,各次模拟的平均值。"),
    "years_renewed": "假设政策到期后原样延续(文本只明确{first}年全年有效)。",
    "years_not_renewed": "按文本只在{first}年有效,以后年度没有新增申报。",
    "years_summary": "各年度兑现额(区级承担,亿元)",
    "years_commitments": "以前年度决定带来的承诺(区级承担,亿元)",
    "years_budget": "各年度可兑现预算与超支风险",
    "years_carry": "年末未付、转入下一年度的金额(亿元,流程模拟的平均值)",
    "years_numbers": "多年度假设",
    "compare_difference": "合计与第一个情景之差(亿元)",
    "cap_years_compare": "各情景每个年度的区级兑现额(亿元,各次模拟平均);实色为当年新增,斜线为以前年度决定带来的承诺。",
    "driver_explains": "{group}(约可解释{share}的波动)",
    "years_cvar": "需预留预算(尾部风险口径,亿元)",
    "years_cvar_note": ("需预留预算:使最坏{tail}的模拟年份里各领域缺口合计的平均值不超过{limit}的最小预算"
                        "(条件风险价值,CVaR),含以前年度的承诺。"),
    "years_cvar_limit": "当年预计兑现额的1%",
    "mean_yi": "平均(亿元)", "year": "年度", "origin_new": "新增", "origin_commitment": "承诺", "years_total": "合计",
    "granted": "决定年度", "due": "兑付年度", "from_assumptions": "不确定性中来自假设的比重",
    "years_claims": "兑现额(含承诺,亿元)", "years_committed": "其中承诺(亿元)", "carried_out": "转入下年(亿元)",
    "years_number": "数值", "years_range": "合理范围", "years_why": "依据",
    "cap_years": ("每根柱为一个年度的区级兑现额(各次模拟平均,亿元),按领域分色;"
                  "实色为当年新增申报,斜线为以前年度决定带来的承诺。"
                  "以后年度的新增部分取决于政策是否延续,承诺部分不取决于此。"),
    # the plain answer
    "answer": "结论:各领域预算是否够用",
    "domain": "领域",
    "claims_yi": "预计兑现额(区级,亿元)",
    "gross_yi": "企业应得奖补(含市级,亿元)",
    "budget_yi": "可兑现预算(亿元,假设)",
    "gap_yi": "缺口(亿元)",
    "p_overrun": "超支概率",
    "p_overrun_spread": "超支概率在各组假设下的范围",
    "p_runout": "年内用尽概率",
    "runout_month": "预计用尽月份",
    "deferred_yi": "因预算用尽而缓付(亿元)",
    "cut_yi": "按比例削减(亿元)",
    "unpaid_yi": "年末尚未拨付(亿元)",
    "verdict": "判断",
    "driver": "影响最大的假设",
    "definitions": "名词解释",
    "def_claims": "预计兑现额(区级):企业依各条款可申领、由区财政承担的奖补金额(已扣除市级分担部分),"
                  "为各次模拟的平均值。",
    "def_gross": "企业应得奖补(含市级):企业依条款应得的全部奖补,包括市级分担部分。",
    "def_budget": "可兑现预算:领域预算中可用于兑现本模型所列奖补条款的部分。政策文本未给出此数,"
                  "为假设值,其合理范围见“假设”一节。",
    "def_gap": "缺口:预计兑现额减去可兑现预算;正数表示预算不足,负数表示有结余。",
    "def_p_overrun": "超支概率:在全部模拟年份中,兑现额超过可兑现预算的年份所占比例(各项假设在合理范围内变动)。"
                     "括号内是在“给定一组假设”时的超支概率在各组假设之间的P10至P90:范围越宽,结论越取决于假设。",
    "def_runout": "年内用尽概率与预计用尽月份:按月审核、拨付时,预算在年内用完的模拟年份所占比例,"
                  "以及用完时所在月份(中位数)。",
    "def_deferred": "缓付:已批准但因预算用尽而推迟到下一年度拨付的金额;削减:按比例兑付时少付的金额;"
                    "年末尚未拨付:因拨付日历(而非预算)在年末仍未付出的已批准金额。均为各次模拟的平均值。",
    "verdict_overrun likely": "多数合理假设下会超支",
    "verdict_depends on the assumptions": "是否超支取决于假设",
    "verdict_overrun unlikely": "多数合理假设下不会超支",
    "verdict_long_overrun likely": "在九成合理假设组合下超支的可能性均大于一半",
    "verdict_long_depends on the assumptions": "是否超支取决于假设",
    "verdict_long_overrun unlikely": "在九成合理假设组合下超支的可能性均小于一半",
    "none": "无",
    "not_run": "未运行",
    "run_header": "{scenario}:{replications} 次模拟,每次 {population:,} 个申报主体(随机种子 {seed}),"
                  "用时 {seconds:.1f} 秒",
    "totals": "企业应得奖补合计 {gross} 亿元,其中区级承担 {district} 亿元(预计兑现额)。",
    "results_in": "结果目录",
    "estimate": "预计:用时约 {time}(按 {workers} 个工作进程估算,仅供参考),内存约 {memory},结果目录约 {disk}",
    "report_at": "报告",
    "exported": "已导出",
    # report frame
    "title": "申报、拨付与预算",
    "colon": ":",
    "scenario": "情景",
    "baseline": "基准情景",
    "replications": "次模拟",
    "seed": "随机种子",
    "claimants": "申报主体",
    "generated": "金额单位:表中为亿元,图中另有标注。全部图表读自运行结果目录",
    "sentences": "要点",
    "assumptions_fixed": "所有假设取其设定值,未计入其不确定性",
    # figures
    "fig_claims": "各领域预计兑现额与可兑现预算",
    "cap_claims": "横条为各领域由区级承担的预计兑现额(亿元,各次模拟平均),黑线为各次模拟的P5至P95区间,"
                  "红色竖线为可兑现预算(假设值)。竖线在横条左侧即预计不足,右侧标注超支概率。",
    "fig_articles": "各条款的预计兑现额",
    "cap_articles": "每一横条为一条政策条款的预计兑现额(区级,万元,各次模拟平均),按金额从大到小排列,"
                    "颜色表示所属领域,黑线为P5至P95区间;括号内为占所属领域可兑现预算的比例。",
    "fig_cash": "按月累计拨付与预算",
    "cap_cash": "每个小图为一个领域:实线为按月累计拨付额的中位数,色带为P5至P95,红色虚线为可兑现预算"
                "(中间假设值;各次模拟的预算随假设变动,故色带可高于虚线);"
                "橙色三角标出预算用尽月份的中位数(用尽概率不低于5%时),左上角注明年末平均缓付金额。",
    "fig_waits": "各部门从申报到拨付的天数",
    "cap_waits": "每个部门的申报从提交到拨付所需天数:绿色为中位数,橙色为P95(最慢的5%)。",
    "fig_queues": "出现排队的部门每日待审数",
    "cap_queues": "只列出待审申报曾超过同时审核能力的部门;曲线为每日待审申报数(各次模拟平均)。"
                  "其余部门申报随到随审,未出现排队。",
    "no_queues": "没有部门出现排队:所有申报随到随审。",
    "fig_needed": "在95%的年份中覆盖申报所需的资金",
    "cap_needed": "灰色为可兑现预算(假设值),深色为在95%的模拟年份中足以支付全部兑现额所需的金额"
                  "(兑现额的P95);标注为需增加的金额。",
    "fig_verify": "最需要先核实的假设",
    "cap_verify": "按各假设组对{domain}{measure}的总Sobol指数排序:横条为总指数(该假设单独及与其他假设共同"
                  "解释的方差份额),黑线为95%自助法区间,黑点为一阶指数(单独解释的份额);灰色为年度随机性"
                  "(哪些企业申报)。排在前面的假设最值得先核实。",
    "measure_overrun": "是否超支", "measure_shortfall": "缺口", "measure_claims": "兑现额",
    "median": "中位数", "band": "P5至P95", "budget": "可兑现预算", "mean": "平均",
    "month": "月份", "cumulative_wan": "累计拨付(万元)", "claims_wan": "预计兑现额(区级,万元)",
    "claims_yi_axis": "亿元", "days": "天数", "p50": "中位数", "p95": "P95", "day": "年内第几天",
    "waiting": "待审数", "runout_marker": "用尽月份(中位数)", "deferred_note": "年末平均缓付 {amount} 万元",
    "needed": "95%年份所需", "add": "需增加 {amount} 亿元", "enough": "已足够",
    "share_of_budget": "占预算 {share}",
    "total_index": "总指数(95%区间)", "first_index": "一阶指数", "index_axis": "方差份额",
    "aleatory": "年度随机性(哪些企业申报)",
    "verify_intro": "若能确知某个假设,{domain}的结论会收窄多少:按各假设组对{measure}的总Sobol指数排序,"
                    "附95%自助法区间;年度随机性列于最后。据超支概率采取行动前,应先核实排在前面的假设。",
    "group": "假设组", "where": "数值位置", "value": "设定值", "mode": "变动方式", "low": "下限", "high": "上限",
    "what": "说明",
    "mode_range": "取值范围", "mode_factor": "乘以", "mode_shift": "加减", "mode_tilt": "分布倾斜",
    "assumptions": "本模型的假设及其合理范围",
    "assumptions_note": "政策文本未给出的数值均为假设;每个假设都有合理范围,模拟时在范围内抽取。"
                        "同一组内的数值一同变动。",
    "calibration": "校准:合成企业群体与有来源数据的对照",
    "calibration_note": "用于设定参数的目标按构造必然吻合,不能作为证据;只有独立目标才能检验模型。",
    "target": "目标", "target_value": "目标值", "simulated": "模拟值", "role": "用途", "evidence": "证据类型",
    "source": "来源",
    "role_set": "用于设定参数", "role_independent": "独立证据",
    "evidence_district": "本区数据", "evidence_zone": "高新区数据", "evidence_neighbour": "邻区数据",
    "evidence_city": "全市数据", "evidence_province": "全省数据", "evidence_national": "全国数据",
    "evidence_policy goal": "政策自身目标", "evidence_derived": "推算", "evidence_assumed": "假设",
    "article_n": "第{n}条",
    # nowcast
    "nowcast_title": "年内滚动预测:按已发生的申报与拨付更新",
    "nowcast_header": ("截至{as_of}(已观测{months}个月,{terms}项观测合计)对运行 {run} 的更新:{draws}组假设抽样、"
                       "{replications}次模拟"),
    "nowcast_intro": ("把财政局已经看到的申报、审批与拨付数据与每组假设抽样的模拟结果对照:与观测越吻合的抽样权重越大;"
                      "每个领域只用本领域条款的观测加权,再按已观测合计做回归校正。「运行时」为年初预测,"
                      "「现在」为结合观测后的预测。"),
    "nowcast_domain": "领域", "nowcast_budget": "可兑现预算(亿元)",
    "nowcast_claims_before": "年末申报 运行时(亿元)", "nowcast_claims_now": "年末申报 现在(亿元)",
    "nowcast_paid_before": "年末拨付 运行时 P5–P95(亿元)", "nowcast_paid_now": "年末拨付 现在 P5–P95(亿元)",
    "nowcast_overrun": "超支概率 运行时→现在", "nowcast_runout": "预算用尽 现在", "nowcast_weight": "数据权重β",
    "nowcast_from_assumptions": "来自假设的份额",
    "nowcast_assumptions": "假设的后验:观测后各假设的取值范围",
    "nowcast_assumptions_note": ("每项假设只用它所影响的条款的观测更新(局部加权),再按这些条款的已观测合计做回归校正;"
                                 "「收窄」为90%区间宽度减少的比例。"),
    "nowcast_number": "数值", "nowcast_prior": "先验 P5–P95", "nowcast_posterior": "后验 P5–P95",
    "nowcast_narrowed": "收窄",
    "nowcast_narrowing": "每多一个月数据,年末区间收窄多少",
    "nowcast_months": "已观测月数",
    "nowcast_fit": "观测与模拟对照(最难吻合的项)",
    "nowcast_fit_note": "尾部概率为所有抽样中的最大值;越小说明模型越难产生该观测,应核对数据或假设。",
    "nowcast_key": "条款", "nowcast_measure": "指标", "nowcast_observed": "观测(截至当月)",
    "nowcast_expected_before": "运行时预期", "nowcast_expected_now": "现在预期", "nowcast_tail": "尾部概率",
    "measure_applications": "申报件数", "measure_claimed": "申报金额(万元)", "measure_approvals": "批准件数",
    "measure_approved": "批准金额(万元)", "measure_paid": "拨付金额(万元)",
    "nowcast_rounds": "补充抽样:{rounds}轮,有效样本量{ess:.0f}组抽样,数据权重β={beta:.3g}",
    "nowcast_method": ("方法:似然加权(申报件数为负二项分布,单件金额为对数正态,审批件数与拨付金额以已观测申报为基数)、"
                       "必要时对似然降权(β<1,使有效样本量不低于目标)、在加权抽样附近补充新的抽样(种群蒙特卡罗),"
                       "并按已观测合计做局部线性回归校正。β<1时区间比数据本身所允许的更宽(偏保守)。"),
    "fig_nowcast_narrowing": "随观测月数增加,各领域年末拨付的90%区间",
    "cap_nowcast_narrowing": ("横轴为已观测的月数(0为年初预测),纵轴为年末拨付额(亿元);竖线为P5至P95,点为中位数。"
                              "区间越短,说明已有数据对年末结果的约束越强。"),
    "fig_nowcast_assumptions": "观测前后的假设取值范围",
    "cap_nowcast_assumptions": ("每行一项假设(收窄最多的前若干项),数值按其先验范围换算到0–1:灰色为先验P5–P95,"
                                "彩色为观测后P5–P95,点为后验中位数。"),
    "nowcast_at": "滚动预测结果",
    "nowcast_as_of": "滚动预测(数据截至)",
    "nowcast_compare": "年内滚动预测:运行时与现在",
    "nowcast_compare_note": "每行一个领域和一次滚动预测:左为年初运行的预测,右为结合截至该日观测后的预测。",
    # compare
    "compare_title": "情景对比",
    "difference": "差值",
    "compare_note": "差值 = 后一情景减去第一个情景;按差值绝对值从大到小排列。",
    "article": "条款",
}

EN = {
    # targets
    "targets_title": "The text's quantified targets",
    "targets_note": ("{n} targets, quoted verbatim. The {m} the model simulates have a simulated value; those used to "
                     "set a parameter match by construction and are not evidence. The rest (investment, land, funds, "
                     "livelihood projects) lie outside what this model simulates."),
    "target_article": "Article", "target_quote": "Text", "target_value_unit": "Target", "target_simulated": "Simulated",
    "target_how": "What the simulated value is", "target_not_simulated": "not simulated",
    "comparison_at_least": "at least", "comparison_at_most": "at most", "comparison_about": "about",
    "fig_design": "Award intensities as the budgets tighten",
    "cap_design": ("Across: every domain's claims budget as a multiple of today's (tighter to the right); up: the "
                   "designed intensity (share of the maximum). Each line is a rule the design turns down: the "
                   "earlier it leaves 100%, the sooner it is cut. A cut once made stays as budgets tighten."),
    "design_factor": "Claims budgets, multiple of today's", "design_share": "Intensity (share of maximum)",
    # design
    "design_title": "Award levels that keep each budget: a design within the text's latitude",
    "design_intro": (
        "Rules whose text leaves the level open (「最高」, 「不超過」, 「一定比例」) get an award intensity (a share "
        "of the maximum) no lower than their floor, chosen so that in the worst {tail} of years each domain's "
        "average shortfall stays within {tol} of its claims budget, with the most priority-weighted expected "
        "support. Rules whose text fixes the amount or rate are not changed. The result depends on the assumed "
        "claims budgets and on the floors, a planning setting. \"Cut from budget x\" comes from a path on which "
        "every budget shrinks step by step and a cut, once made, stays; \"this design only\" marks a rule that only "
        "the free optimum at today's budgets cuts."),
    "design_rules": "Rules the design turns down (first cut first)",
    "design_lines": "Each domain's risk before and after",
    "design_rule": "Rule", "design_intensity": "Intensity (share of maximum)", "design_floor": "Floor",
    "design_given_up": "Support given up (億元)", "design_first_cut": "Cut from budget x",
    "design_budget_yi": "Claims budget, mean of the draws (億元)", "design_claims_before": "Claims before (億元)",
    "design_claims_after": "Claims after (億元)", "design_p_before": "P(overrun) before",
    "design_p_after": "P(overrun) after", "design_cvar_before": "Mean tail shortfall before (億元)",
    "design_cvar_after": "Mean tail shortfall after (億元)", "design_shadow": "Support per extra 萬元 of budget (萬元)",
    "design_change_yi": "Reallocated (億元)",
    "design_none": "Every domain meets the risk limit at today's award levels; no rule needs a cut.",
    "design_never": "this design only",
    "design_scenario": "Check the promise on fresh replications: fiscalsim run {path} -s ANOTHER_SEED",
    "years_title": "Several years: what this year's decisions cost in the years after",
    "years_intro": ("Some awards of {first} are paid again in later years: the second and third years of the incubated "
                    "firms' rent subsidy, the yearly support of proof-of-concept centres, the award for firms that "
                    "stay "
                    "above designated size for three years. Commitments are awards earlier years granted that fall due "
                    "later, owed while the claimant still qualifies; new awards are the year's own claims; {renewal} "
                    "District-paid amounts, means over the replications."),
    "years_renewed": "later years assume the package is renewed as it stands (the text is in force for {first} only).",
    "years_not_renewed": "the text is in force for {first} only, so later years have no new awards.",
    "years_summary": "Claims by year (district-paid, 億元)",
    "years_commitments": "Commitments earlier decisions create (district-paid, 億元)",
    "years_budget": "Each year's claims budget and the risk of an overrun",
    "years_carry": "Unpaid at year end, carried into the next year (億元, mean of the process replications)",
    "years_numbers": "Multi-year assumptions",
    "compare_difference": "Total minus the first scenario's (億元)",
    "cap_years_compare": ("Each scenario's district-paid claims by year (億元, mean of the replications); solid: the "
                          "year's new awards, hatched: commitments from earlier years' decisions."),
    "driver_explains": "{group} (explains about {share} of the spread)",
    "years_cvar": "Budget to set aside, tail-risk rule (億元)",
    "years_cvar_note": ("Budget to set aside: the least budgets for which, in the worst {tail} of simulated years, "
                        "the mean total shortfall is at most {limit} (CVaR), commitments included."),
    "years_cvar_limit": "1% of the year's expected claims",
    "mean_yi": "Mean (億元)", "year": "Year", "origin_new": "New", "origin_commitment": "Commitments",
    "years_total": "Total",
    "granted": "Decided in", "due": "Due in", "from_assumptions": "Share of uncertainty from the assumptions",
    "years_claims": "Claims incl. commitments (億元)", "years_committed": "of which commitments (億元)",
    "carried_out": "Carried into next year (億元)",
    "years_number": "Value", "years_range": "Plausible range", "years_why": "Why",
    "cap_years": ("Each bar is one year's district-paid claims (mean of the replications, 億元), coloured by domain; "
                  "solid: the year's new awards, hatched: commitments from earlier years' decisions. Later years' new "
                  "awards depend on the package being renewed; commitments do not."),
    "answer": "The answer: is each domain's budget enough?",
    "domain": "Domain",
    "claims_yi": "Expected claims, district-paid (億元)",
    "gross_yi": "Awards due, city share included (億元)",
    "budget_yi": "Claims budget (億元, assumed)",
    "gap_yi": "Gap (億元)",
    "p_overrun": "P(overrun)",
    "p_overrun_spread": "P(overrun) across assumption sets",
    "p_runout": "P(runs out in the year)",
    "runout_month": "Likely month it runs out",
    "deferred_yi": "Deferred, budget ran out (億元)",
    "cut_yi": "Cut pro rata (億元)",
    "unpaid_yi": "Unpaid at year end (億元)",
    "verdict": "Verdict",
    "driver": "Driven most by",
    "definitions": "What the terms mean",
    "def_claims": "Expected claims (district-paid): the awards enterprises can claim under the articles that the "
                  "district pays (the city's share taken out), averaged over the simulated years.",
    "def_gross": "Awards due (city share included): everything enterprises are due under the articles.",
    "def_budget": "Claims budget: the part of a domain's budget available to pay the award rules of this model. "
                  "The text does not give it; it is an assumption, with its plausible range under Assumptions.",
    "def_gap": "Gap: expected claims minus the claims budget; positive means the budget falls short.",
    "def_p_overrun": "P(overrun): the share of simulated years in which claims exceed the claims budget, with the "
                     "assumptions drawn from their plausible ranges. In brackets: P10-P90 across assumption sets of "
                     "the probability given one set; the wider, the more the finding depends on the assumptions.",
    "def_runout": "P(runs out) and the likely month: the share of simulated years in which the budget is used up "
                  "within the year as applications are reviewed and paid month by month, and the month it happens "
                  "(median).",
    "def_deferred": "Deferred: approved but pushed to next year because the budget ran out; cut: paid less under "
                    "pro-rata payment; unpaid at year end: approved but not yet paid because of the payment "
                    "calendar, not the budget. All averaged over the simulated years.",
    "verdict_overrun likely": "overrun under most plausible assumptions",
    "verdict_depends on the assumptions": "depends on the assumptions",
    "verdict_overrun unlikely": "no overrun under most plausible assumptions",
    "verdict_long_overrun likely": "an overrun is more likely than not under nine in ten plausible sets of "
                                   "assumptions",
    "verdict_long_depends on the assumptions": "whether it overruns depends on the assumptions",
    "verdict_long_overrun unlikely": "an overrun is less likely than not under nine in ten plausible sets of "
                                     "assumptions",
    "none": "none",
    "not_run": "not run",
    "run_header": "{scenario}: {replications} simulated years of {population:,} claimants (seed {seed}) in "
                  "{seconds:.1f} s",
    "totals": "Awards due in all: {gross}億, of which the district pays {district}億 (expected claims).",
    "results_in": "results in",
    "estimate": "expected: about {time} on {workers} worker process(es) (a rough guide), memory about {memory}, "
                "run folder about {disk}",
    "report_at": "report",
    "exported": "exported",
    "title": "claims, cash and budgets",
    "colon": ": ",
    "scenario": "Scenario",
    "baseline": "baseline",
    "replications": "replications",
    "seed": "seed",
    "claimants": "claimants",
    "generated": "Money in 億元 in tables, as labelled in figures. Everything is read from the run folder",
    "sentences": "In short",
    "assumptions_fixed": "every assumption held at its value (their uncertainty is not included)",
    "fig_claims": "Expected claims per domain against the claims budget",
    "cap_claims": "Bars: district-paid expected claims per domain (億元, mean over simulated years); black lines: "
                  "P5-P95 over the years; red ticks: the claims budget (assumed). A tick left of the bar's end means "
                  "a likely shortfall; the probability of an overrun is written beside it.",
    "fig_articles": "Expected claims per article",
    "cap_articles": "One bar per article of the policy: district-paid expected claims (萬元, mean), largest first, "
                    "coloured by domain, with P5-P95 lines; in brackets its share of its domain's claims budget.",
    "fig_cash": "Cumulative cash paid by month against the budget",
    "cap_cash": "One panel per domain: the solid line is the median cumulative payment by month, the band P5-P95, "
                "the red dashed line the claims budget (its central assumed value; each simulated year draws its own "
                "budget, so the band can rise above the line); an orange triangle marks the median month it runs "
                "out (where that happens in at least 5% of years), and the note gives the mean amount deferred at "
                "year end.",
    "fig_waits": "Days from application to payment, by bureau",
    "cap_waits": "Days from submitting an application to being paid, per bureau: green the median, orange the P95 "
                 "(the slowest 5%).",
    "fig_queues": "Applications waiting for review, bureaus with a queue",
    "cap_queues": "Only bureaus where applications waited for a free reviewer; lines are the mean number waiting each "
                  "day. Other bureaus review applications as they arrive.",
    "no_queues": "No bureau has a queue: every application is reviewed as it arrives.",
    "fig_needed": "Money needed to cover claims in 95% of years",
    "cap_needed": "Grey: the claims budget (assumed); dark: the amount that pays every claim in 95% of simulated years "
                  "(P95 of claims); the note gives the amount to add.",
    "fig_verify": "What to verify first",
    "cap_verify": "Assumption groups ranked by their total Sobol index of {domain}'s {measure}: bars are the total "
                  "index (the share of the variance the assumption accounts for, alone and with others), lines its "
                  "95% bootstrap interval, dots the first-order index (alone); grey is the luck of the year (which "
                  "firms claim). The first ones are the most worth verifying.",
    "measure_overrun": "overrun", "measure_shortfall": "shortfall", "measure_claims": "claims",
    "median": "Median", "band": "P5-P95", "budget": "Claims budget", "mean": "Mean",
    "month": "Month", "cumulative_wan": "Cumulative paid (萬元)", "claims_wan": "Expected claims, district-paid (萬元)",
    "claims_yi_axis": "億元", "days": "Days", "p50": "Median", "p95": "P95", "day": "Day of the year",
    "waiting": "Waiting", "runout_marker": "Runs out (median month)",
    "deferred_note": "deferred {amount} 萬元 at year end",
    "needed": "Needed in 95% of years", "add": "add {amount}億", "enough": "enough",
    "share_of_budget": "{share} of budget",
    "total_index": "Total index (95% interval)", "first_index": "First-order index", "index_axis": "Share of variance",
    "aleatory": "The luck of the year (which firms claim)",
    "verify_intro": "Which assumption, if it were known, would most narrow the answer for {domain}: the assumption "
                    "groups ranked by their total Sobol index of the {measure}, with 95% bootstrap intervals; the luck "
                    "of the year last. Verify the first ones before acting on the overrun probability.",
    "group": "Group", "where": "Number", "value": "Value", "mode": "Varies as", "low": "Low", "high": "High",
    "what": "Why",
    "mode_range": "range", "mode_factor": "factor", "mode_shift": "shift", "mode_tilt": "tilt",
    "assumptions": "The assumptions of this model and their plausible ranges",
    "assumptions_note": "Every number the text leaves open is an assumption with a plausible range, drawn within it in "
                        "the simulation; the numbers of one group move together.",
    "calibration": "Calibration: the synthetic population beside sourced figures",
    "calibration_note": "A target used to set a parameter is met by construction and is not evidence; only independent "
                        "targets test the model.",
    "target": "Target", "target_value": "Target value", "simulated": "Simulated", "role": "Role",
    "evidence": "Evidence", "source": "Source",
    "role_set": "used to set a parameter", "role_independent": "independent evidence",
    "evidence_district": "the district's own figure", "evidence_zone": "the high-tech zone's figure",
    "evidence_neighbour": "another district's figure", "evidence_city": "city figure",
    "evidence_province": "provincial figure", "evidence_national": "national figure",
    "evidence_policy goal": "the policy's own goal", "evidence_derived": "derived", "evidence_assumed": "assumed",
    "article_n": "Art. {n}",
    # nowcast
    "nowcast_title": "In-year nowcast: the forecast updated with what has happened",
    "nowcast_header": ("As of {as_of} ({months} months observed, {terms} observed totals), run {run} updated: "
                       "{draws} assumption draws, {replications} simulated years"),
    "nowcast_intro": ("The applications, approvals and payments the bureau has seen are set beside each assumption "
                      "draw's simulation: draws that fit better weigh more. Each domain is weighed on its own rules' "
                      "observations and adjusted to their totals to date by regression. 'At the run' is the forecast "
                      "made before the year; 'now' is the forecast with the observations."),
    "nowcast_domain": "Domain", "nowcast_budget": "Claims budget (億元)",
    "nowcast_claims_before": "Year-end claims at the run (億元)", "nowcast_claims_now": "Year-end claims now (億元)",
    "nowcast_paid_before": "Year-end paid at the run P5-P95 (億元)",
    "nowcast_paid_now": "Year-end paid now P5-P95 (億元)",
    "nowcast_overrun": "P(overrun) at the run -> now", "nowcast_runout": "Budget runs out (now)",
    "nowcast_weight": "Weight of the data (beta)", "nowcast_from_assumptions": "Share from the assumptions",
    "nowcast_assumptions": "The assumptions after the observations",
    "nowcast_assumptions_note": ("Each assumption is updated on the observations of the rules it moves only (local "
                                 "weights), then adjusted to their totals to date by regression; 'narrowed' is the "
                                 "share of the 90% interval's width the observations took away."),
    "nowcast_number": "Number", "nowcast_prior": "Prior P5-P95", "nowcast_posterior": "Posterior P5-P95",
    "nowcast_narrowed": "Narrowed",
    "nowcast_narrowing": "How much each month of data narrowed the year-end interval",
    "nowcast_months": "Months observed",
    "nowcast_fit": "Observations beside the simulation (hardest to match first)",
    "nowcast_fit_note": ("The tail probability is the largest over the draws; the smaller, the harder the model finds "
                         "the observation: check the figure or the assumptions."),
    "nowcast_key": "Rule", "nowcast_measure": "Measure", "nowcast_observed": "Observed (to date)",
    "nowcast_expected_before": "Expected at the run", "nowcast_expected_now": "Expected now", "nowcast_tail": "Tail "
    "probability",
    "measure_applications": "applications", "measure_claimed": "claimed (萬元)", "measure_approvals": "approvals",
    "measure_approved": "approved (萬元)", "measure_paid": "paid (萬元)",
    "nowcast_rounds": "Fresh draws: {rounds} rounds; effective sample size {ess:.0f} draws; weight of the data "
                      "beta = {beta:.3g}",
    "nowcast_method": ("Method: likelihood weights (negative binomial applications, lognormal amount per application, "
                       "approvals and payments on the observed applications), the likelihood tempered where needed "
                       "(beta < 1 keeps the effective sample size at its target), fresh draws near the weighted ones "
                       "(population Monte Carlo), and a local-linear regression adjustment to the observed totals. "
                       "With beta < 1 the intervals are wider than the data alone would make them (cautious)."),
    "fig_nowcast_narrowing": "The 90% interval of each domain's year-end payments as months of data arrive",
    "cap_nowcast_narrowing": ("Months observed across (0: the forecast before the year), year-end payments up (億元); "
                              "each bar runs from P5 to P95, the dot is the median. The shorter the bar, the more the "
                              "data so far pins down the year's end."),
    "fig_nowcast_assumptions": "The assumptions' ranges before and after the observations",
    "cap_nowcast_assumptions": ("One row per assumption (those narrowed most), on the 0-1 scale of its prior range: "
                                "grey is the prior P5-P95, colour the posterior P5-P95, the dot the posterior "
                                "median."),
    "nowcast_at": "Nowcast written to",
    "nowcast_as_of": "Nowcast (data to)",
    "nowcast_compare": "In-year nowcasts: at the run and now",
    "nowcast_compare_note": ("One row per domain and nowcast: the forecast of the run before the year beside the "
                             "forecast with the observations to that date."),
    "compare_title": "Scenarios compared",
    "difference": "Difference",
    "compare_note": "Difference = each scenario minus the first; largest differences first.",
    "article": "Article",
}
