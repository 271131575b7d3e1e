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

ID_COLUMNS = ("firm_id", "id")
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


def _rows(mask: np.ndarray, values: Any = None) -> str:
    """'rows 3, 7 (values 'x', -1)': first offending rows, 1-based, with their values."""
    where = np.flatnonzero(mask)
    shown = ", ".join(str(i + 1) for i in where[:_SHOW_ROWS])
    more = f" and {len(where) - _SHOW_ROWS} more" if len(where) > _SHOW_ROWS else ""
    text = f"row{'s' if len(where) > 1 else ''} {shown}{more}"
    if values is not None:
        text += " (values " + ", ".join(plain(v) for v in np.asarray(values, dtype=object)[where[:_SHOW_ROWS]]) + ")"
    return text


def firm_table(policy: Policy, data: Any, *, source: str = "<firm table>",
               validate: bool = True) -> FirmTable:
    """Build the columns every rule of ``policy`` reads from ``data`` (DataFrame or mapping).

    Rows are numbered from 1 (the first data row) in messages.
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
    missing = [a.name for a in needed if a.name not in names and a.default is None]
    problems = []
    if missing:
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}: the "
                        "model declares no default for them; add the column"
                        f"{'s' if len(missing) > 1 else ''} (see `fiscalsim policy --inputs`)")

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
        values, problem = _check_column(attribute, raw)
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


def _check_column(attribute, raw) -> tuple[np.ndarray, str]:
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
            return values, f"a flag must be 0 or 1 (or true/false): {_rows(bad, values)}"
    if attribute.type == "int":
        bad = values != np.round(values)
        if bad.any():
            return values, f"a count must be a whole number: {_rows(bad, values)}"
    return values, ""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet table of claimant facts; a clear error when the file cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FirmTableError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path, skipinitialspace=True)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise FirmTableError(f"{path}: cannot read it as {'Parquet' if suffix in ('.parquet', '.pq') else 'CSV'}: "
                             f"{exc}") from None
    raise FirmTableError(f"{path}: a firm table must be .csv or .parquet, got {suffix or 'no extension'}")
