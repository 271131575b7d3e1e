"""A register of firms as a finance bureau has it: Excel or a GBK CSV, Chinese headings, 是/否, 3,000.

Each case gives the stated result: it imports to the same numbers as the plain CSV, or it stops with one
message naming the file, the column or the row, and the fix.
"""

import numpy as np
import pandas as pd
import pytest

import sim.policy
from sim.awards import evaluate
from sim.cli import main
from sim.errors import FirmTableError
from sim.firms import read_table

POLICY = sim.policy.load()
TEMPLATE = sim.policy.load("template")
PLAIN = "firm_id,rd_spending,rd_increase,tech_sme_scale\nA,3000,250,1\nB,12000,0,0\n"


def write(tmp_path, text: str, name="firms.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def awards_of(frame, policy=POLICY):
    return evaluate(policy, frame).frame()


def reference(tmp_path):
    return awards_of(read_table(write(tmp_path, PLAIN, "plain.csv"), POLICY))


def xlsx(tmp_path, rows, name="firms.xlsx"):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    path = tmp_path / name
    book.save(path)
    return path


# ----------------------------------------------------------------------------- imports that work
def test_an_xlsx_with_chinese_headings_imports_cleanly(tmp_path):
    path = xlsx(tmp_path, [["企业名称", "研发投入", "研发投入增量", "符合科技型中小企业规模"],
                           ["A", 3000, 250, "是"], ["B", 12000, 0, "否"]])
    frame = read_table(path, POLICY)
    assert list(frame.columns) == ["name", "rd_spending", "rd_increase", "tech_sme_scale"]
    pd.testing.assert_frame_equal(awards_of(frame), reference(tmp_path), check_names=False)


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8-sig", "utf-8"])
def test_csv_in_gbk_gb18030_or_utf8_with_chinese_headings(tmp_path, encoding):
    text = "企业名称,研發投入,研发投入增量,符合科技型中小企业规模\nA,3000,250,是\nB,12000,0,否\n"
    frame = read_table(write(tmp_path, text, encoding=encoding), POLICY)
    pd.testing.assert_frame_equal(awards_of(frame), reference(tmp_path), check_names=False)


def test_traditional_and_full_width_headings_and_digits(tmp_path):
    text = "firm_id,研發投入（萬元）,研發投入新增額,tech_sme_scale\nA,３０００,２５０,１\nB,12000,0,0\n"
    with pytest.raises(FirmTableError, match="研發投入（萬元）"):  # a unit in the heading is not the label
        read_table(write(tmp_path, text), POLICY)
    text = text.replace("研發投入（萬元）", "研發投入")
    frame = read_table(write(tmp_path, text), POLICY)
    pd.testing.assert_frame_equal(awards_of(frame), reference(tmp_path), check_names=False)


def test_thousands_separators_quoted_and_yes_no_flags(tmp_path):
    text = 'firm_id,rd_spending,rd_increase,tech_sme_scale\nA,"3,000",250,yes\nB,"12,000.0",0,No\n'
    frame = read_table(write(tmp_path, text), POLICY)
    pd.testing.assert_frame_equal(awards_of(frame), reference(tmp_path), check_names=False)


def test_parquet_and_the_sample_still_read(tmp_path):
    path = tmp_path / "f.parquet"
    pd.DataFrame({"rd_spending": [3000.0, 12000.0], "rd_increase": [250.0, 0.0],
                  "tech_sme_scale": [1, 0]}).to_parquet(path)
    frame = read_table(path, POLICY)
    assert awards_of(frame)["a13-rd-increase-sme"].tolist() == reference(tmp_path)["a13-rd-increase-sme"].tolist()


# ----------------------------------------------------------------------------- mistakes that stop, with the fix
def expect(tmp_path, text, *fragments, encoding="utf-8", ignore_unknown=False, name="firms.csv", policy=POLICY):
    with pytest.raises(FirmTableError) as info:
        path = write(tmp_path, text, name=name, encoding=encoding) if isinstance(text, str) else text
        frame = read_table(path, policy, ignore_unknown=ignore_unknown)
        evaluate(policy, frame, source=str(path))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "np.float64" not in message and "Traceback" not in message
    return message


def test_a_typo_in_an_optional_column_stops_with_a_suggestion(tmp_path):
    expect(tmp_path, PLAIN.replace("tech_sme_scale", "tech_sme_scal"),
           "column 'tech_sme_scal' is not an attribute of the model; did you mean 'tech_sme_scale'?",
           "--ignore-unknown")


def test_ignore_unknown_reads_without_the_column(tmp_path):
    text = PLAIN.replace("tech_sme_scale\n", "tech_sme_scale,remark\n").replace("1\n", "1,x\n").replace("0\n", "0,y\n")
    frame = read_table(write(tmp_path, text), POLICY, ignore_unknown=True)
    assert "remark" not in frame.columns and "rd_spending" in frame.columns


def test_a_typo_in_a_required_column_names_the_likely_heading(tmp_path):
    text = "rd_spendng,rd_increase\n3000,250\n"
    expect(tmp_path, text, "did you mean 'rd_spending'?", ignore_unknown=False, policy=TEMPLATE)
    expect(tmp_path, text, "missing column rd_spending", "is 'rd_spendng' meant to be it?", ignore_unknown=True,
           policy=TEMPLATE)


def test_a_duplicated_heading_is_an_error_not_a_default(tmp_path):
    expect(tmp_path, "rd_spending,rd_increase,rd_increase\n3000,250,0\n",
           "columns 2 ('rd_increase') and 3 ('rd_increase') both give rd_increase; keep one", policy=TEMPLATE)


def test_a_heading_and_its_chinese_alias_together_are_a_duplicate(tmp_path):
    expect(tmp_path, "rd_spending,研发投入,rd_increase\n3000,3000,250\n",
           "columns 1 ('rd_spending') and 2 ('研发投入') both give rd_spending", policy=TEMPLATE)


def test_an_unquoted_thousands_separator_names_the_row_and_the_fix(tmp_path):
    expect(tmp_path, "firm_id,rd_spending,rd_increase\nA,3000,250\nB,1,000,0\n",
           "row 2 (line 3) has 4 fields but the heading line has 3", 'must be quoted: "1,000"', policy=TEMPLATE)


def test_a_negative_amount_is_shown_as_a_plain_number(tmp_path):
    message = expect(tmp_path, "rd_spending,rd_increase\n3000,250\n-50,0\n", "negative in row 2 (values -50)",
                     policy=TEMPLATE)
    assert "-50.0" not in message


def test_bytes_that_are_neither_utf8_nor_gbk(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"rd_spending,rd_increase\n3000,250\n\xff\xff,0\n")
    expect(tmp_path, path, "line 3: byte 0xff is neither UTF-8 nor GBK", "CSV UTF-8", policy=TEMPLATE)


def test_an_old_xls_file_says_save_as_xlsx(tmp_path):
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    expect(tmp_path, path, "old.xls: the old .xls format cannot be read; save it as .xlsx")


def test_xlsx_mistakes_an_empty_heading_and_values_past_the_last_heading(tmp_path):
    expect(tmp_path, xlsx(tmp_path, [["rd_spending", None, "rd_increase"], [3000, 1, 250]]),
           "column 2 has no heading; name it or delete the column", policy=TEMPLATE)
    expect(tmp_path, xlsx(tmp_path, [["rd_spending", "rd_increase"], [3000, 250, 7]], name="b.xlsx"),
           "row 1 (sheet row 2) has values beyond the last heading (7)", policy=TEMPLATE)


def test_a_flag_that_is_neither_yes_nor_no(tmp_path):
    expect(tmp_path, PLAIN.replace("A,3000,250,1", "A,3000,250,maybe"), "column tech_sme_scale (flag)",
           "not a number in row 1 (values 'maybe')")


def test_explain_row_numbers_mean_the_same_as_in_errors(tmp_path, capsys):
    path = write(tmp_path, "firm_id,rd_spending,rd_increase\nA,3000,250\nB,-5,0\n")
    assert main(["awards", str(path), "--model", "template"]) == 2
    assert "negative in row 2 (values -5)" in capsys.readouterr().err
    assert main(["awards", str(path), "--model", "template", "--explain", "2"]) == 2
    assert "negative in row 2 (values -5)" in capsys.readouterr().err
    assert main(["awards", str(path), "--model", "template", "--explain", "1"]) == 0
    assert "row 1 (A)" in capsys.readouterr().out


def test_awards_under_a_scenario_show_each_firms_change(tmp_path, capsys):
    text = "firm_id,rd_spending,rd_increase,tech_sme_scale\nA,3000,5000,1\nB,12000,0,0\nC,20000,8000,0\n"
    path = write(tmp_path, text)
    assert main(["awards", str(path), "--scenario", "article-13-caps-up"]) == 0
    out = capsys.readouterr().out
    assert "1 rule(s) change" in out or "2 rule(s) change" in out
    shown = out.split("\n")
    row_a = next(line for line in shown if line.startswith("A "))
    assert np.allclose([float(x.replace(",", "")) for x in row_a.split()[1:]], [200.0, 250.0, 50.0])


def test_a_cap_below_a_direct_award_warns(tmp_path, capsys):
    scenario = tmp_path / "low-cap.toml"
    scenario.write_text('name = "low-cap"\nmodel = "binjiang-2024"\n[policy.rules.a13-rd-increase-sme]\ncap = 150\n',
                        encoding="utf-8")
    path = write(tmp_path, PLAIN)
    assert main(["awards", str(path), "--scenario", str(scenario)]) == 0
    out = capsys.readouterr().out
    assert "warning: scenario low-cap: rule a13-rd-increase-sme (article 13): the cap 150 萬元 is below the rule's " \
           "direct award of 200 萬元" in out
