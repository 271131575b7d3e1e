"""Columnar firm tables checked against the policy's declared attributes.

The schema is the policy model's ``[attributes]``: a rule needs an attribute; a table must supply it
or the model must declare a default.  :func:`firm_table` turns a DataFrame or a mapping of arrays into
a :class:`FirmTable` of NumPy columns, and with ``validate`` rejects missing columns, non-numbers,
NaN, infinities, values below an attribute's minimum, flags other than 0/1 and fractional counts in
one :class:`~sim.errors.FirmTableError` that names each column and its first offending rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.errors import FirmTableError
from sim.policy import Policy
from sim.validation import COUNT_CEILING, MONEY_CEILING, plain

ID_COLUMNS = ("firm_id", "id", "name")  # the first present labels the rows
LABEL_COLUMNS = ("name",)  # descriptive columns a firm table may carry; not attributes
_SHOW_ROWS = 5


@dataclass(frozen=True)
class FirmTable:
    """Validated columns (attribute name -> 1-D array, all of length ``n``)."""

    columns: Mapping[str, np.ndarray]
    n: int
    defaults_used: tuple[str, ...] = ()
    ignored_columns: tuple[str, ...] = ()
    ids: np.ndarray | None = None


def rows_at(mask: np.ndarray, values: Any = None, first_row: int = 1) -> str:
    """'rows 3, 7 (values 'x', -1)': first offending data rows (the first data row is ``first_row``, 1 unless
    the table is a slice of a register), with their values."""
    where = np.flatnonzero(mask)
    shown = ", ".join(str(i + first_row) for i in where[:_SHOW_ROWS])
    more = f" and {len(where) - _SHOW_ROWS} more" if len(where) > _SHOW_ROWS else ""
    text = f"row{'s' if len(where) > 1 else ''} {shown}{more}"
    if values is not None:
        text += " (values " + ", ".join(plain(v) for v in np.asarray(values, dtype=object)[where[:_SHOW_ROWS]]) + ")"
    return text


def firm_table(policy: Policy, data: Any, *, source: str = "<firm table>",
               validate: bool = True, first_row: int = 1) -> FirmTable:
    """Build the columns every rule of ``policy`` reads from ``data`` (DataFrame or mapping).

    Rows are numbered from 1 (the first data row; ``first_row`` when ``data`` is a slice of a register) in
    messages, as in ``fiscalsim awards --explain ROW``.
    """
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
        get = data.__getitem__
    elif isinstance(data, Mapping):
        names = [str(c) for c in data]
        get = data.__getitem__
    else:
        raise FirmTableError(f"{source}: a firm table must be a pandas DataFrame or a mapping of "
                             f"column name to array, got {type(data).__name__}")
    needed = policy.input_attributes()
    declared = {a.name for a in policy.attributes}
    missing = [a for a in needed if a.name not in names and a.default is None]
    problems = [f"missing column {a.name} ({a.label_zh or a.description}): the model declares no default for it; "
                "add the column (see fiscalsim policy --inputs)" for a in missing]

    columns: dict[str, np.ndarray] = {}
    defaults_used = []
    lengths = {len(get(name)) for name in names}
    if len(lengths) > 1:
        raise FirmTableError(f"{source}: columns have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0

    for attribute in needed:
        if attribute.name not in names:
            if attribute.default is not None:
                defaults_used.append(attribute.name)
                columns[attribute.name] = np.full(n, attribute.default, dtype=np.float64)
            continue
        raw = get(attribute.name)
        if not validate:
            columns[attribute.name] = np.asarray(raw)
            continue
        values, problem = _check_column(attribute, raw, first_row)
        if problem:
            problems.append(f"column {attribute.name} ({attribute.unit}): {problem}")
        columns[attribute.name] = values

    if problems:
        raise FirmTableError(f"{source}: " + ("\n  ".join(problems) if len(problems) == 1 else
                             f"{len(problems)} problems:\n  " + "\n  ".join(problems)))
    id_column = next((c for c in ID_COLUMNS if c in names), None)
    ids = np.asarray(get(id_column)) if id_column else None
    ignored = tuple(c for c in names if c not in declared and c != id_column and c not in LABEL_COLUMNS)
    return FirmTable(columns, n, tuple(defaults_used), ignored, ids)


def _check_column(attribute, raw, first_row: int = 1) -> tuple[np.ndarray, str]:
    def _rows(mask, values=None):
        return rows_at(mask, values, first_row)
    series = pd.Series(raw).reset_index(drop=True)
    if attribute.type == "bool" and (series.dtype == object or pd.api.types.is_string_dtype(series)):
        series = series.map(lambda v: {"true": 1, "false": 0}.get(v.strip().lower(), v)
                            if isinstance(v, str) else v)
    numeric = pd.to_numeric(series, errors="coerce")
    blank = series.isna().to_numpy()
    not_number = numeric.isna().to_numpy() & ~blank
    if not_number.any():
        return np.zeros(len(series)), f"not a number in {_rows(not_number, series)}"
    values = numeric.to_numpy(dtype=np.float64)
    if blank.any():
        return values, f"empty or NaN in {_rows(blank)}; fill in a value (0 if none)"
    infinite = np.isinf(values)
    if infinite.any():
        return values, f"infinite in {_rows(infinite, values)}"
    ceiling = {"float": MONEY_CEILING, "int": COUNT_CEILING}.get(attribute.type, np.inf)
    huge = np.abs(values) > ceiling
    if huge.any():
        unit = "萬元 (one trillion yuan); check that money is in 萬元" if attribute.type == "float" else attribute.unit
        return values, f"beyond any plausible value (at most {ceiling:g} {unit}) in {_rows(huge, values)}"
    below = values < attribute.min
    if below.any():
        what = "negative" if attribute.min == 0 else f"below the minimum {attribute.min:g}"
        return values, f"{what} in {_rows(below, values)}"
    if attribute.type == "bool":
        bad = (values != 0) & (values != 1)
        if bad.any():
            return values, f"a flag must be 0 or 1 (or 是/否, yes/no, true/false): {_rows(bad, values)}"
    if attribute.type == "int":
        bad = values != np.round(values)
        if bad.any():
            return values, f"a count must be a whole number: {_rows(bad, values)}"
    return values, ""


def read_table(path: str | Path, policy: Policy | None = None, ignore_unknown: bool = False) -> pd.DataFrame:
    """A register of claimants from a spreadsheet, as the columns the model declares.

    Reads ``.xlsx`` (openpyxl), ``.csv`` in UTF-8 or GBK/GB18030, and Parquet.  With ``policy``, headings may
    be the attribute names or the Chinese labels and aliases the model declares (Traditional or Simplified,
    full-width or not); values may use 是/否, yes/no or true/false for flags, thousands separators and
    full-width digits.  A heading the model does not declare stops with a suggestion (unless
    ``ignore_unknown``); a duplicated heading, a ragged row, or a file that cannot be decoded stops with
    one message naming the file, the heading or the row.  Rows are numbered from 1, the first data row.
    """
    path = Path(path)
    if not path.is_file():
        raise FirmTableError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except (ValueError, OSError) as exc:
            raise FirmTableError(f"{path}: cannot read it as Parquet: {exc}") from None
        headings, rows = [str(c) for c in frame.columns], frame
    elif suffix in (".xlsx", ".xlsm"):
        headings, rows = _read_xlsx(path)
    elif suffix in (".csv", ".txt"):
        headings, rows = _read_csv(path)
    elif suffix == ".xls":
        raise FirmTableError(f"{path}: the old .xls format cannot be read; save it as .xlsx (Excel: File > Save As)")
    else:
        raise FirmTableError(f"{path}: a register must be .xlsx, .csv or .parquet, got {suffix or 'no extension'}")
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=headings, dtype=object)
    return frame if policy is None else _canonical(frame, headings, policy, path, ignore_unknown)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    import csv
    import io

    data = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError as exc:
            failure = exc
    else:
        line = data[:failure.start].count(b"\n") + 1
        raise FirmTableError(f"{path}: line {line}: byte 0x{data[failure.start]:02x} is neither UTF-8 nor GBK; "
                             "save the file as CSV UTF-8 (Excel: Save As > CSV UTF-8)")
    records = [row for row in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in row)]
    if not records:
        raise FirmTableError(f"{path}: the file is empty; the first line must name the columns")
    headings, rows = [h.strip() for h in records[0]], records[1:]
    for number, row in enumerate(rows, start=1):
        if len(row) != len(headings):
            hint = (" (a number written with a thousands separator, 1,000, must be quoted: \"1,000\", or written "
                    "1000)" if len(row) > len(headings) else "")
            raise FirmTableError(f"{path}: row {number} (line {number + 1}) has {len(row)} fields but the heading "
                                 f"line has {len(headings)}{hint}")
    return headings, rows


def _read_xlsx(path: Path) -> tuple[list[str], list[list[Any]]]:
    try:
        import openpyxl
    except ImportError:
        raise FirmTableError("reading .xlsx needs openpyxl: pip install openpyxl") from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise FirmTableError(f"{path}: cannot read it as an Excel workbook: {exc}") from None
    sheet = book.worksheets[0]
    records = [list(row) for row in sheet.iter_rows(values_only=True)
               if any(v is not None and str(v).strip() for v in row)]
    book.close()
    if not records:
        raise FirmTableError(f"{path}: the first sheet is empty; its first row must name the columns")
    width = max(i + 1 for i, v in enumerate(records[0]) if v is not None and str(v).strip())
    headings = ["" if v is None else str(v).strip() for v in records[0][:width]]
    for number, row in enumerate(records[1:], start=1):
        extra = [v for v in row[width:] if v is not None and str(v).strip()]
        if extra:
            raise FirmTableError(f"{path}: row {number} (sheet row {number + 1}) has values beyond the last "
                                 f"heading ({', '.join(map(str, extra[:3]))})")
    return headings, [row[:width] + [None] * (width - len(row[:width])) for row in records[1:]]


TRUE_WORDS = {"1", "true", "yes", "y", "是", "有", "√", "✓"}
FALSE_WORDS = {"0", "false", "no", "n", "否", "无", "無", "×", "✗"}
ID_HEADINGS = {"firm_id": "firm_id", "id": "firm_id", "统一社会信用代码": "firm_id", "序号": "firm_id",
               "name": "name", "企业名称": "name", "名称": "name", "单位名称": "name"}


def _canonical(frame: pd.DataFrame, headings: list[str], policy: Policy, path: Path,
               ignore_unknown: bool) -> pd.DataFrame:
    """Rename the register's headings to attribute names and clean the values (see :func:`read_table`)."""
    import difflib

    from sim.policy import heading_key

    known = {heading_key(h): a.name for a in policy.attributes for h in a.headings}
    problems, seen, rename, unknown = [], {}, {}, []
    for position, heading in enumerate(headings, start=1):
        if not heading:
            problems.append(f"column {position} has no heading; name it or delete the column")
            continue
        key = heading_key(heading)
        name = known.get(key, ID_HEADINGS.get(key))
        if name in seen:
            problems.append(f"columns {seen[name][0]} ({seen[name][1]!r}) and {position} ({heading!r}) both give "
                            f"{name}; keep one")
            continue
        if name is None:
            unknown.append(heading)
            continue
        seen[name] = (position, heading)
        rename[heading] = name
    options = sorted({h for a in policy.attributes for h in a.headings})
    if unknown and not ignore_unknown:
        for heading in unknown:
            close = difflib.get_close_matches(heading, options, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else " (see fiscalsim policy --inputs)"
            problems.append(f"column {heading!r} is not an attribute of the model{hint} "
                            "(--ignore-unknown reads the file without it)")
    needed = [a for a in policy.input_attributes() if a.default is None and a.name not in seen]
    for attribute in needed:  # a missing column with a likely heading here; without one, firm_table says it
        close = difflib.get_close_matches(attribute.name, unknown, n=1, cutoff=0.6) or difflib.get_close_matches(
            attribute.label_zh, unknown, n=1, cutoff=0.6)
        if close:
            problems.append(f"missing column {attribute.name} ({attribute.label_zh or attribute.description}): the "
                            f"model declares no default for it; is {close[0]!r} meant to be it?")
    if problems:
        raise FirmTableError(f"{path}: " + (problems[0] if len(problems) == 1 else
                                            f"{len(problems)} problems:\n  " + "\n  ".join(problems)))
    out = pd.DataFrame({rename[h]: frame[h].to_numpy() for h in headings if h in rename})
    types = {a.name: a.type for a in policy.attributes}
    for name in out.columns:
        if name in types:
            out[name] = [clean_cell(v, types[name]) for v in out[name]]
    return out


def clean_cell(value: Any, kind: str) -> Any:
    """One cell as a number where a person would read one: full-width digits, thousands separators, 是/否."""
    import re
    import unicodedata

    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if not isinstance(value, str):
        return value
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        return np.nan
    if kind == "bool":
        word = text.lower()
        if word in TRUE_WORDS:
            return 1.0
        if word in FALSE_WORDS:
            return 0.0
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    return text
