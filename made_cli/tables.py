"""Tables as data: CSV, TSV and Parquet read by pyarrow, columns typed, rows encoded and decoded.

A table's modelled columns are the model's dimensions, in the order given. Every column has a
role by default: text with at most ``data.max_levels`` distinct values, booleans, and numbers
with few distinct values are discrete (codes 0..L-1 in sorted order, a categorical law); other
numbers, and dates (days since 1970-01-01), are real, each with a ``ColumnLaw`` chosen from its
training values (scale, grid, lower bound, point mass: ``real_law``). Constants, identifiers and
text of too many values are left out, each with its reason. Missing cells encode as NaN. The
schema (names, types, categories, laws, the label's class names) is decided once, from the
training file, and saved with the run: resuming, evaluating and scoring new rows apply it as it
is, so a row is always encoded the way the model learnt it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .condition import Condition
from .errors import UsageError
from .heads import ColumnLaw

if TYPE_CHECKING:
    import pyarrow as pa

    from .config import DataConfig

__all__ = [
    "SPLIT_NAMES",
    "Column",
    "EncodedRows",
    "TableSchema",
    "infer_schema",
    "normalise_table",
    "read_table",
    "real_law",
    "split_rows",
    "table_bytes",
    "table_format",
]

SPLIT_NAMES = ("train", "valid", "test")
_FORMATS = {".csv": "CSV", ".tsv": "TSV", ".parquet": "Parquet", ".pq": "Parquet"}
_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"
_SPLIT_SHARES = (0.8, 0.1, 0.1)


def table_format(path: Path) -> str | None:
    """CSV, TSV or Parquet by the file's extension (None for any other)."""
    return _FORMATS.get(path.suffix.lower())


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_table(path: Path, text_columns: Sequence[str] = ()) -> pa.Table:
    """The table in ``path``, typed by pyarrow's readers; a usage error naming the file (and the
    line) for a missing, empty, ragged or unreadable file, or one whose extension lies.

    ``text_columns`` are read as text whatever they look like (a trained schema's text columns:
    a file of new rows whose codes happen to be all digits, "01", stays text). Dictionary
    (pandas category), decimal and binary columns come back as text and numbers.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    fmt = table_format(path)
    if fmt is None:
        raise UsageError(f"{path}: a table must be a .csv, .tsv or .parquet file (got '{path.suffix}')")
    if not path.is_file():
        raise UsageError(f"data file not found: {path}")
    with path.open("rb") as f:
        head = f.read(4)
    if fmt == "Parquet":
        if head != _PARQUET_MAGIC:
            raise UsageError(
                f"{path} is not a Parquet file (its extension says Parquet, its first bytes do not)"
            )
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            raise UsageError(f"cannot read {path} as Parquet: {_first_line(e)}") from None
        table = normalise_table(table, path)
        for name in text_columns:
            if name in table.column_names and not _is_text(table.column(name).type):
                index = table.column_names.index(name)
                table = table.set_column(index, name, table.column(name).cast(pa.string()))
    else:
        if head == _PARQUET_MAGIC:
            raise UsageError(f"{path} is a Parquet file, but its extension says {fmt}; rename it to .parquet")
        if head == _ZIP_MAGIC:
            raise UsageError(f"{path} is a zip archive (an .npz?), but its extension says {fmt}")
        ragged: list[Any] = []

        def keep_first(row: Any) -> str:  # pyarrow's InvalidRow: which line, how many fields
            if not ragged:
                ragged.append(row)
            return "skip"

        parse = pcsv.ParseOptions(delimiter="\t" if fmt == "TSV" else ",", invalid_row_handler=keep_first)
        # an empty text cell is a missing value, as an empty number is (not a category "")
        convert = pcsv.ConvertOptions(
            strings_can_be_null=True, column_types=dict.fromkeys(text_columns, pa.string())
        )
        try:  # one thread: pyarrow then knows the line number of a ragged row
            table = pcsv.read_csv(
                path, read_options=pcsv.ReadOptions(use_threads=False), parse_options=parse,
                convert_options=convert,
            )  # fmt: skip
        except (pa.ArrowException, OSError) as e:
            message = _first_line(e)
            if "Empty CSV file" in message:
                raise UsageError(f"{path} is empty: no header and no rows") from None
            raise UsageError(f"cannot read {path} as {fmt}: {message}") from None
        if ragged:
            row = ragged[0]
            raise UsageError(
                f"{path}: line {row.number} has {row.actual_columns} fields, but the header has "
                f"{row.expected_columns}"
            )
        table = normalise_table(table, path)
    names = table.column_names
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"{path}: column {twice[0]!r} appears more than once in the header")
    if table.num_rows == 0:
        raise UsageError(f"{path} has a header but no rows")
    return table


def normalise_table(table: pa.Table, path: Path) -> pa.Table:
    """Columns of the types a model reads: dictionaries (pandas categories) decoded, decimals as
    float64, every kind of string as plain text, binary checked to be UTF-8 text."""
    import pyarrow as pa

    for index, name in enumerate(table.column_names):
        col = table.column(index)
        t = col.type
        if pa.types.is_dictionary(t):
            col, t = col.cast(t.value_type), t.value_type
        if pa.types.is_decimal(t):
            col = col.cast(pa.float64())
        elif pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: False)(t):
            col = col.cast(pa.string())
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            for i, v in enumerate(col.to_pylist()):
                if v is not None:
                    try:
                        v.decode("utf-8")
                    except UnicodeDecodeError:
                        raise UsageError(
                            f"{path}: column {name!r}, {_where(i)}: {v!r} is not UTF-8 text"
                        ) from None
            col = col.cast(pa.string())
        if col is not table.column(index):
            table = table.set_column(index, name, col)
    return table


def _where(row: int) -> str:
    """A row (0-based) as the user finds it: its number, counting from 1 after the header."""
    return f"row {row + 1}"


def _is_text(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_number(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _parses(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _looks_numeric(path: Path, col: pa.ChunkedArray) -> bool:
    """A CSV column of numbers with one or two stray strings ("oops", "n/a"): a numeric column that
    the reader typed as text for their sake, not a column of categories (S, M, L, 8, 10; 01, 02,
    A). Numbers with a decimal point, or five times as many numbers as strays, say so. A Parquet
    file declares its types: a text column there is text."""
    import pyarrow.compute as pc

    if table_format(path) == "Parquet":
        return False
    distinct = [v for v in pc.unique(col).to_pylist() if v is not None]
    numbers = [v for v in distinct if _parses(v)]
    strays = len(distinct) - len(numbers)
    if not 1 <= strays <= 2 and not (strays == 0 and numbers):
        return False
    return any("." in v for v in numbers) or len(numbers) >= 5 * max(strays, 1)


def _nulls(col: pa.ChunkedArray) -> np.ndarray:
    """(N,) bool: the missing cells (empty, NA, NaN) of a column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = col.is_null()
    if pa.types.is_floating(col.type):
        missing = pc.or_(missing, pc.fill_null(pc.is_nan(col), False))
    return np.asarray(missing.to_numpy(zero_copy_only=False), dtype=bool)


def _check_present(path: Path, name: str, col: pa.ChunkedArray) -> None:
    """Every row has a value: a missing cell in a column that must have one is refused."""
    missing = _nulls(col)
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise UsageError(f"{path}: column {name!r}, {_where(first)}: the value is missing (empty, NA or NaN)")


def _numbers(path: Path, name: str, col: pa.ChunkedArray, allow_missing: bool = False) -> np.ndarray:
    """A column of numbers as float64 (N,), NaN in missing cells (refused unless
    ``allow_missing``), refused at the first non-numeric or infinite value."""
    import pyarrow as pa

    missing = _nulls(col)
    if not allow_missing:
        _check_present(path, name, col)
    if _is_text(col.type):
        values = col.to_pylist()
        for i, v in enumerate(values):
            if v is not None and not _parses(v):
                raise UsageError(f"{path}: column {name!r}, {_where(i)}: {v!r} is not a number")
        a = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    elif _is_number(col.type) or pa.types.is_null(col.type):
        a = _as_numbers(col).cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    elif _is_time(col.type):
        a = _days(col)
    else:
        raise UsageError(f"{path}: column {name!r} holds {col.type}, not numbers")
    a[missing] = math.nan
    bad = np.flatnonzero(np.isinf(a))
    if bad.size:
        raise UsageError(f"{path}: column {name!r}, {_where(int(bad[0]))}: {a[bad[0]]} is not finite")
    return a


def _is_time(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_date(t) or pa.types.is_timestamp(t))


_DAY_SECONDS = 86400.0
_PER_SECOND = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}  # a timestamp's ticks per second, by unit


def _days(col: pa.ChunkedArray) -> np.ndarray:
    """A date or timestamp column as days since 1970-01-01 (float64; NaN where missing), the
    scale on which dates are modelled."""
    import pyarrow as pa

    if pa.types.is_date(col.type):
        days = col.cast(pa.date32()).cast(pa.int32())
        return days.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    unit = col.type.unit
    per_second = _PER_SECOND[unit]
    ticks = col.cast(pa.timestamp(unit)).cast(pa.int64()).cast(pa.float64())
    return ticks.to_numpy(zero_copy_only=False).astype(np.float64) / per_second / _DAY_SECONDS


def _from_days(days: np.ndarray, type_name: str) -> pa.Array:
    """Days since 1970-01-01 -> an array of the column's own date or timestamp type."""
    import pyarrow as pa

    t = _arrow_type(type_name)
    missing = np.isnan(days)  # a missing cell stays missing
    days = np.nan_to_num(days)
    if pa.types.is_date(t):
        whole = pa.array(np.round(days).astype(np.int32), pa.int32(), mask=missing)
        return whole.cast(pa.date32()).cast(t)
    per_second = _PER_SECOND[t.unit]
    ticks = np.round(days * _DAY_SECONDS * per_second).astype(np.int64)
    return pa.array(ticks, pa.int64(), mask=missing).cast(pa.timestamp(t.unit)).cast(t)


def _arrow_type(name: str) -> pa.DataType:
    """date32[day], date64[ms], timestamp[us] or timestamp[us, tz=UTC] back as a type."""
    import pyarrow as pa

    if name.startswith("date64"):
        return pa.date64()
    if name.startswith("date"):
        return pa.date32()
    inner = name[name.index("[") + 1 : name.rindex("]")]
    unit, _, tz = inner.partition(", tz=")
    return pa.timestamp(unit, tz=tz or None)


# Columns of this many distinct values or fewer are categories even when they hold numbers (a
# year of study, a rating 1-5); integer columns with more get a law over the integers, so an
# unseen value in range has its probability.
_FEW_VALUES = 10
# A value held by this share of a real column's rows is a point mass (0 mm of rain).
_POINT_MASS_SHARE = 0.1
# Text (or integer) columns with distinct values in more than this share of the rows name rows
# (names, codes): identifiers, which no density should model.
_IDENTIFIER_SHARE = 0.5


@dataclass(frozen=True)
class Column:
    """One column: its name, what its values are, and how they are modelled.

    ``kind`` real, integer, boolean, text, date or timestamp (``type_name`` keeps a date's or
    timestamp's own type). A discrete column has ``categories`` (code i is ``categories[i]``);
    any other column has a ``law`` (``heads.ColumnLaw``) for its numbers (dates: days since
    1970-01-01). A column saved before laws were kept reads back with a legacy law.
    """

    name: str
    kind: str  # real | integer | boolean | text | date | timestamp
    categories: tuple[Any, ...] = ()
    law: ColumnLaw | None = None
    type_name: str = ""
    offset: float = 0.0  # a date's or timestamp's: days since 1970-01-01 of its value 0

    @property
    def levels(self) -> int:
        """Categories of a discrete column; 0 for a real one."""
        return len(self.categories)

    def column_law(self, legacy: bool = False) -> ColumnLaw:
        """The column's law; ``legacy`` for a schema saved before laws were kept."""
        if self.categories:
            return ColumnLaw(levels=self.levels, legacy=legacy)
        return self.law or ColumnLaw(legacy=True)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "categories": list(self.categories)}
        if self.law is not None:
            d["law"] = self.law.to_dict()
        if self.type_name:
            d["type"], d["offset"] = self.type_name, self.offset
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Column:
        law = d.get("law")
        return cls(
            str(d["name"]), str(d["kind"]), tuple(d.get("categories") or ()),
            None if law is None else ColumnLaw.from_dict(law), str(d.get("type") or ""),
            float(d.get("offset") or 0.0),
        )  # fmt: skip

    def describe(self) -> str:
        if self.categories:
            return f"{self.kind}, {self.levels} categories"
        return f"{self.kind}, {self.column_law().describe() if self.law else 'real'}"

    def encode(self, path: Path, col: pa.ChunkedArray, unseen: np.ndarray | None = None) -> np.ndarray:
        """Values -> float64 (N,): numbers (dates in days) as they are, discrete values as their
        codes, NaN in missing cells. A value no training row had is refused, or, given
        ``unseen`` (N,) bool, marked there (and NaN)."""
        missing = _nulls(col)
        if not self.categories:
            if self.kind in ("date", "timestamp") and _is_text(col.type):  # ISO text (pandas' read_csv)
                import pyarrow as pa

                try:
                    col = col.cast(pa.timestamp("us"))
                except pa.ArrowInvalid as e:
                    raise UsageError(
                        f"{path}: column {self.name!r}: {_first_line(e)} (dates are ISO text)"
                    ) from None
            return _numbers(path, self.name, col, allow_missing=True) - self.offset
        if self.kind in ("integer", "boolean"):
            values: list[Any] = _integers(path, self.name, col, missing).tolist()
        elif self.kind == "real":
            values = _numbers(path, self.name, col, allow_missing=True).tolist()
        else:
            values = [None if v is None else str(v) for v in col.to_pylist()]
        codes = {v: i for i, v in enumerate(self.categories)}
        out = np.full(len(values), math.nan, dtype=np.float64)
        for i, v in enumerate(values):
            if missing[i]:
                continue
            code = codes.get(v)
            if code is None and unseen is not None:
                unseen[i] = True
            elif code is None:
                shown = ", ".join(map(repr, self.categories[:5])) + (", ..." if self.levels > 5 else "")
                raise UsageError(
                    f"{path}: column {self.name!r}, {_where(i)}: {v!r} is not one of the column's "
                    f"{self.levels} categories in training ({shown})"
                )
            out[i] = code
        return out

    def encode_value(self, value: Any) -> float:
        """One value as the user gives it (text on the command line, or a Python value) -> its
        number as ``encode`` gives it; a ValueError that names the column otherwise."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise ValueError(f"column {self.name!r}: give a value, not a missing one")
        if self.categories:
            spelled = [str(c) for c in self.categories]
            wanted = str(value)
            if self.kind == "boolean":  # true, True, 1 all name True
                wanted = {"true": "True", "1": "True", "false": "False", "0": "False"}.get(
                    wanted.lower(), wanted
                )
            elif self.kind in ("integer", "real") and wanted not in spelled and _parses(wanted):
                number = float(wanted)  # 3 for 3.0, 3.0 for 3
                wanted = next(
                    (t for c, t in zip(self.categories, spelled, strict=True) if c == number), wanted
                )
            if wanted not in spelled:
                shown = ", ".join(spelled[:12]) + (", ..." if self.levels > 12 else "")
                raise ValueError(f"column {self.name!r} has no category {value!r} (it has: {shown})")
            return float(spelled.index(wanted))
        if self.kind in ("date", "timestamp"):
            try:
                stamp = np.datetime64(value, "us") if isinstance(value, str) else np.datetime64(value)
                days = (stamp - np.datetime64("1970-01-01T00:00:00", "us")) / np.timedelta64(1, "D")
            except (ValueError, TypeError):
                raise ValueError(
                    f"column {self.name!r}: {value!r} is not a date (write 2024-05-31)"
                ) from None
            return float(days) - self.offset
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"column {self.name!r}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"column {self.name!r}: {value!r} is not finite")
        return number

    def decode(self, codes: np.ndarray) -> Any:
        """Codes (or numbers) -> the column's values, in its own type (NaN: a missing cell)."""
        import pyarrow as pa

        if not self.categories:
            if self.kind in ("date", "timestamp"):
                return _from_days(codes + self.offset, self.type_name)
            if self.kind == "integer":
                return pa.array(np.round(np.nan_to_num(codes)).astype(np.int64), mask=np.isnan(codes))
            law = self.column_law()
            if law.step is not None:  # on the grid, with the step's digits: 39.1, not 39.099998
                steps = np.round((codes - law.origin) / law.step)
                digits = len(f"{law.step:.6g}".partition(".")[2])
                return np.round(
                    law.origin + steps * law.step, digits + len(f"{law.origin:.6g}".partition(".")[2])
                )
            return codes.astype(np.float32)  # the model's precision: no digits it does not have
        index = np.clip(np.round(np.nan_to_num(codes)), 0, self.levels - 1).astype(np.int64)
        return [None if math.isnan(c) else self.categories[i] for c, i in zip(codes, index, strict=True)]


def _as_numbers(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Booleans as 0/1; anything else as it is."""
    import pyarrow as pa

    return col.cast(pa.int64()) if pa.types.is_boolean(col.type) else col


def _integers(path: Path, name: str, col: pa.ChunkedArray, missing: np.ndarray | None = None) -> np.ndarray:
    """A column of integers as int64 (N,), exactly (not through float64, which rounds above
    2**53), refused at the first value that is not an integer; 0 in ``missing`` cells."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if missing is None:
        _check_present(path, name, col)
    elif missing.any():  # a placeholder in the missing cells, so the rest keep their row numbers
        placeholder = pa.scalar("0") if _is_text(col.type) else pa.scalar(0).cast(col.type)
        col = pc.if_else(pa.array(~missing), col.combine_chunks(), placeholder)
    col = _as_numbers(col)
    if pa.types.is_integer(col.type):
        return col.to_numpy(zero_copy_only=False).astype(np.int64)
    if _is_text(col.type):
        out = []
        for i, v in enumerate(col.to_pylist()):
            try:
                out.append(int(v))
            except ValueError:
                number = float(v) if _parses(v) else math.nan
                if not (math.isfinite(number) and number == round(number)):
                    raise UsageError(
                        f"{path}: column {name!r}, {_where(i)}: {v!r} is not an integer"
                    ) from None
                out.append(int(number))
        return np.array(out, dtype=np.int64)
    a = _numbers(path, name, col)
    fractional = np.flatnonzero(a != np.round(a))
    if fractional.size:
        i = int(fractional[0])
        raise UsageError(f"{path}: column {name!r}, {_where(i)}: {a[i]} is not an integer")
    return a.astype(np.int64)


def _grid_step(values: np.ndarray) -> float | None:
    """The step of a grid the distinct ``values`` (sorted) sit on (ratings 1.0-5.0, amounts in
    cents, values rounded to 0.1), or None when they sit on none finer than their spread."""
    gaps = np.diff(values)
    if gaps.size == 0:
        return None
    smallest = float(gaps.min())
    for step in (smallest, smallest / 2, smallest / 5, smallest / 10):
        ratio = (values - values[0]) / step
        if np.abs(ratio - np.round(ratio)).max() < 1e-3:
            tidy = float(f"{step:.6g}")  # 0.1, not 0.09999999999999964
            return tidy if abs(tidy - step) < 1e-9 * max(1.0, abs(step)) else step
    return None


def _skew(y: np.ndarray) -> float:
    sd = y.std()
    return float(((y - y.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0


def real_law(values: np.ndarray, integer: bool = False, time: bool = False) -> ColumnLaw:
    """The law of a real column from its training values (NaN: missing), as a statistician would
    choose it: a point mass for a value that holds a large share of the rows, a grid for
    integers and for values that sit on one with ties, a lower bound of 0 for a column that is
    never negative (or the log scale, where that makes a positive column more symmetric), and
    the standardising shift and scale of what is left."""
    x = values[~np.isnan(values)]
    distinct, counts = np.unique(x, return_counts=True)
    step = _grid_step(distinct) if integer or len(distinct) <= len(x) / 2 else None
    if integer and step is None:
        step = 1.0
    mass = None
    if step is None and not time and counts.max() >= max(_POINT_MASS_SHARE * len(x), 5):
        mass = float(distinct[counts.argmax()])
    rest = x[x != mass] if mass is not None else x
    if rest.size == 0:
        rest = x
    lower, log = None, False
    if not time and x.min() >= 0:
        positive = step is None and rest.min() > 0
        if positive and _skew(rest) > 1 and abs(_skew(np.log(rest))) < abs(_skew(rest)):
            log = True
        else:
            lower = 0.0
    y = np.log(rest) if log else rest
    shift, scale = float(y.mean()), float(y.std()) if y.size > 1 else 1.0
    if not scale > 0:
        scale = max(abs(shift), 1.0) * 1e-3
    low, high = (float(y.min()) - shift) / scale, (float(y.max()) - shift) / scale
    if high - low < 1e-6:
        low, high = low - 1.0, high + 1.0
    origin = float(distinct[0]) if step is not None else float(np.median(x))
    if step is not None and lower is not None and abs(origin / step - round(origin / step)) > 1e-6:
        lower = None  # 0 is off the grid: no censoring cell there
    return ColumnLaw(
        shift=shift,
        scale=scale,
        log=log,
        lower=lower,
        mass=mass,
        step=step,
        origin=origin,
        low=low,
        high=high,
    )


def _infer_column(
    path: Path,
    name: str,
    col: pa.ChunkedArray,
    max_levels: int,
    named: bool = False,
    train: np.ndarray | None = None,
) -> Column | str:
    """The column's kind and law, from its type and its distinct values (missing cells aside);
    or why it is left out (a constant, an identifier, text of too many values). ``named``: the
    user named it in data.columns, so only what cannot be modelled is refused. A real column's
    law comes from the ``train`` rows (a boolean mask; default: all), as the network's
    standardisation does; its role and a discrete column's categories from every row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    present = col.filter(pa.chunked_array([pa.array(~_nulls(col))])) if col.null_count or \
        pa.types.is_floating(col.type) else col  # fmt: skip
    n = len(present)
    if n == 0:
        return "every cell is missing"
    if _is_text(col.type) and _looks_numeric(path, col):
        _numbers(path, name, col, allow_missing=True)  # names the first value that is not a number
        col, present = _numbers_column(path, name, col), _numbers_column(path, name, present)
    t = col.type
    if pa.types.is_boolean(t):
        kind, distinct = "boolean", sorted(pc.unique(present).to_pylist())
    elif pa.types.is_integer(t):
        kind, distinct = "integer", sorted(int(v) for v in pc.unique(present).to_pylist())
    elif pa.types.is_floating(t):
        kind, distinct = "real", sorted(float(v) for v in pc.unique(present).to_pylist())
    elif _is_text(t):
        kind, distinct = "text", sorted(pc.unique(present).to_pylist())
    elif _is_time(t):
        kind, distinct = ("date" if pa.types.is_date(t) else "timestamp"), None
    else:
        return f"it holds {t}, which is neither numbers, dates nor text"
    if (distinct is not None and len(distinct) < 2) or (kind in ("date", "timestamp") and \
            len(pc.unique(present)) < 2):  # fmt: skip
        value = distinct[0] if distinct else present[0].as_py()
        return f"it holds one value ({value!r}) in every row"
    if kind == "text":
        if len(distinct) > max_levels:
            return f"{len(distinct)} distinct text values, more than data.max_levels ({max_levels})"
        if not named and n >= 20 and len(distinct) > _IDENTIFIER_SHARE * n:
            return f"{len(distinct)} distinct values in {n} rows: an identifier"
        return Column(name, kind, tuple(distinct))
    if kind == "integer" and not named and len(distinct) == n and n >= 20 and \
            (distinct[-1] - distinct[0] == n - 1 or _names_rows(name)):  # fmt: skip
        return "one value per row, counting up: an identifier"
    if kind in ("boolean",) or (
        kind in ("integer", "real") and len(distinct) <= min(_FEW_VALUES, max_levels)
    ):
        return Column(name, kind, tuple(distinct))
    fitted = (lambda v: v) if train is None else (lambda v: v[train])
    if kind in ("date", "timestamp"):
        days = _numbers(path, name, col, allow_missing=True)
        offset = float(np.floor(np.nanmin(days)))  # small numbers keep a float32's precision
        law = real_law(fitted(days) - offset, time=True)
        return Column(name, kind, law=law, type_name=str(t), offset=offset)
    values = _numbers(path, name, col, allow_missing=True)
    return Column(name, kind, law=real_law(fitted(values), integer=kind == "integer"))


def _names_rows(name: str) -> bool:
    """A column name that says it names rows: id, ID, row_id, customerId, index."""
    lowered = name.lower()
    return lowered in ("id", "index", "key", "row") or lowered.endswith(("_id", " id")) or name.endswith("Id")


def _numbers_column(path: Path, name: str, col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column of numbers as float64 (its missing cells null)."""
    import pyarrow as pa

    values = _numbers(path, name, col, allow_missing=True)
    return pa.chunked_array([pa.array(values, mask=np.isnan(values))])


@dataclass(frozen=True)
class EncodedRows:
    """A table's rows as the model takes them."""

    x: torch.Tensor  # (N, D) float32: the modelled columns (codes for discrete ones), NaN if missing
    labels: torch.Tensor | None  # (N,) int64 class indices, when the schema has a label column
    context: torch.Tensor | None  # (N, C) float32, when the schema has context columns
    unseen: np.ndarray | None = None  # (N,) bool: a value no training row had (``encode(unseen=True)``)

    @property
    def given(self) -> Condition:
        """The rows' labels (-1 where blank) and context columns, as a model is given them."""
        return Condition(self.labels, self.context)


@dataclass(frozen=True)
class TableSchema:
    """What a model of a table knows of its columns: saved with the run (``to_dict``).
    ``left_out``: the columns not modelled, each with its reason (said in the training log)."""

    columns: tuple[Column, ...]
    label: Column | None = None
    context: tuple[str, ...] = ()
    left_out: tuple[tuple[str, str], ...] = ()
    version: int = 2  # 1: saved before columns had laws (their models keep the old ones)

    @property
    def column_levels(self) -> tuple[int, ...]:
        """Per modelled column: its number of categories, 0 for a real column."""
        return tuple(c.levels for c in self.columns)

    @property
    def laws(self) -> tuple[ColumnLaw, ...]:
        """Per modelled column: its law (``heads.ColumnLaw``), for the model's heads."""
        return tuple(c.column_law(self.version < 2) for c in self.columns)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The columns read as text whatever they look like (see ``read_table``)."""
        columns = [*self.columns, *([self.label] if self.label is not None else [])]
        return tuple(c.name for c in columns if c.kind == "text")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The label column's classes, as text, in class-index order."""
        return tuple(str(c) for c in self.label.categories) if self.label is not None else ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [c.to_dict() for c in self.columns],
            "label": None if self.label is None else self.label.to_dict(),
            "context": list(self.context),
            "left_out": [list(pair) for pair in self.left_out],
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSchema:
        label = d.get("label")
        return cls(
            tuple(Column.from_dict(c) for c in d["columns"]),
            None if label is None else Column.from_dict(label),
            tuple(d.get("context") or ()),
            tuple((str(a), str(b)) for a, b in d.get("left_out") or ()),
            int(d.get("version", 1)),
        )

    def describe(self) -> str:
        discrete = sum(1 for c in self.columns if c.levels)
        parts = [f"{len(self.columns)} columns ({discrete} discrete, {len(self.columns) - discrete} real)"]
        if self.label is not None:
            parts.append(f"label {self.label.name!r} ({self.label.levels} classes)")
        if self.context:
            parts.append(f"{len(self.context)} context columns")
        return ", ".join(parts)

    def column_lines(self) -> list[str]:
        """One line per modelled column (its kind and law) and per column left out (why)."""
        width = max(len(c.name) for c in self.columns)
        lines = [f"  {c.name:<{width}}  {c.describe()}" for c in self.columns]
        lines += [f"  left out {name!r}: {why}" for name, why in self.left_out]
        return lines

    def encode(self, table: pa.Table, path: Path, labels: bool = True, unseen: bool = False) -> EncodedRows:
        """The rows of ``table`` (columns matched by name, in any order; others ignored), NaN in
        missing cells of the modelled columns. ``labels``: read the label column (else it may
        be absent). A category no training row had is refused, or with ``unseen`` marked in
        ``EncodedRows.unseen`` (its cell NaN)."""
        wanted = [*self.names, *self.context, *([self.label.name] if labels and self.label else [])]
        _require(table, path, wanted)
        marks = np.zeros(table.num_rows, dtype=bool) if unseen else None
        x = np.stack([c.encode(path, table.column(c.name), marks) for c in self.columns], 1)
        y = None
        if labels and self.label is not None:
            codes = self.label.encode(path, table.column(self.label.name), marks)
            y = torch.from_numpy(np.nan_to_num(codes, nan=-1).astype(np.int64))  # -1: missing
        context = None
        if self.context:
            context = np.stack(
                [_numbers(path, name, table.column(name), allow_missing=True) for name in self.context], 1
            )
            context = torch.from_numpy(context.astype(np.float32))
        return EncodedRows(torch.from_numpy(x.astype(np.float32)), y, context, marks)

    def missing_cells(self, table: pa.Table) -> np.ndarray:
        """(N, D) bool: the empty cells (empty, NA, NaN) of the modelled columns of ``table``, told
        apart from cells whose value the model has never seen (also NaN once encoded)."""
        return np.stack([_nulls(table.column(c.name)) for c in self.columns], 1)

    def decode(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, context: torch.Tensor | None = None
    ) -> pa.Table:
        """Rows as the model gives them (samples, completions) -> a table of the columns' values."""
        import pyarrow as pa

        x_np = x.detach().cpu().double().numpy()
        data: dict[str, Any] = {c.name: c.decode(x_np[:, d]) for d, c in enumerate(self.columns)}
        if labels is not None and self.label is not None:
            data[self.label.name] = self.label.decode(labels.cpu().double().numpy())
        if context is not None:
            for j, name in enumerate(self.context):
                data[name] = context[:, j].detach().cpu().numpy()
        return pa.table(data)


def _require(table: pa.Table, path: Path, names: Sequence[str]) -> None:
    missing = [n for n in names if n not in table.column_names]
    if missing:
        have = ", ".join(table.column_names[:12]) + (", ..." if table.num_columns > 12 else "")
        fmt = table_format(path)
        other = {"CSV": ("\t", "tabs", ".tsv"), "TSV": (",", "commas", ".csv")}.get(fmt or "")
        hint = ""
        if other and table.num_columns == 1 and other[0] in table.column_names[0]:
            hint = f"; its header is split by {other[1]}: name it {other[2]}"
        raise UsageError(f"{path} has no column {missing[0]!r} (it has: {have}){hint}")


def infer_schema(
    table: pa.Table, cfg: DataConfig, path: Path, train: np.ndarray | None = None
) -> TableSchema:
    """The schema of a training table under the config's data.* column choices: every column has
    a role (modelled, label, context, split) or is left out with its reason. Real columns' laws
    come from the ``train`` rows (a boolean mask; default: all)."""
    roles = [*cfg.context_columns, *(n for n in (cfg.label_column, cfg.split_column) if n is not None)]
    _require(table, path, [*cfg.columns, *roles, *cfg.exclude])
    named = bool(cfg.columns)
    candidates = list(cfg.columns) if named else [
        n for n in table.column_names if n not in roles and n not in cfg.exclude
    ]  # fmt: skip
    columns, left_out = [], []
    for name in candidates:
        inferred = _infer_column(path, name, table.column(name), cfg.max_levels, named, train)
        if isinstance(inferred, Column):
            columns.append(inferred)
        elif named:
            raise UsageError(
                f"{path}: column {name!r} cannot be modelled: {inferred}; leave it out of data.columns"
            )
        else:
            left_out.append((name, inferred))
    if not columns:
        why = "; ".join(f"{n}: {w}" for n, w in left_out[:3])
        raise UsageError(f"{path} has no column to model ({why}); name them in data.columns")
    label = None
    if cfg.label_column is not None:
        import pyarrow.compute as pc

        col = table.column(cfg.label_column)
        distinct = [v for v in pc.unique(col).to_pylist() if v is not None]
        if len(distinct) < 2:
            raise UsageError(
                f"{path}: label column {cfg.label_column!r} has one class ({distinct[0]!r}); a "
                "class-conditional model needs two or more"
            )
        inferred = _infer_column(path, cfg.label_column, col, 2**31, named=True)
        if isinstance(inferred, str) or inferred.levels == 0:
            raise UsageError(f"{path}: label column {cfg.label_column!r} holds real numbers, not classes")
        label = inferred
    for name in cfg.context_columns:
        _numbers(path, name, table.column(name), allow_missing=True)
    return TableSchema(tuple(columns), label, tuple(cfg.context_columns), tuple(left_out))


def split_rows(table: pa.Table, cfg: DataConfig, path: Path) -> np.ndarray:
    """Each row's split (N,) uint8, 0 train, 1 valid, 2 test: from data.split_column, or a
    seeded 80/10/10 shuffle (data.seed) with at least one row in each split."""
    n = table.num_rows
    if cfg.split_column is not None:
        col = table.column(cfg.split_column)
        _check_present(path, cfg.split_column, col)
        codes = np.empty(n, dtype=np.uint8)
        for i, v in enumerate(col.to_pylist()):
            if str(v) not in SPLIT_NAMES:
                raise UsageError(
                    f"{path}: column {cfg.split_column!r}, {_where(i)}: {v!r} is not train, valid, test"
                )
            codes[i] = SPLIT_NAMES.index(str(v))
        for code, name in enumerate(SPLIT_NAMES):
            if not (codes == code).any():
                raise UsageError(f"{path}: no row of column {cfg.split_column!r} says {name}")
        return codes
    if n < 3:
        raise UsageError(f"{path} has {n} row(s); a table needs at least 3 (one for each split)")
    valid = max(1, math.floor(n * _SPLIT_SHARES[1]))
    test = max(1, math.floor(n * _SPLIT_SHARES[2]))
    codes = np.zeros(n, dtype=np.uint8)
    order = np.random.default_rng(cfg.seed).permutation(n)
    codes[order[n - valid - test : n - test]] = 1
    codes[order[n - test :]] = 2
    return codes


def text_table_bytes(table: pa.Table, path: Path) -> bytes:
    """A table of text cells as CSV or TSV (by ``path``), each cell written as it is and quoted only
    where it must be: a file read as text (``read_text_cells``) and written back is unchanged."""
    import csv

    sink = io.StringIO()
    writer = csv.writer(sink, delimiter="\t" if table_format(path) == "TSV" else ",", lineterminator="\n")
    writer.writerow(table.column_names)
    writer.writerows(zip(*(table.column(i).to_pylist() for i in range(table.num_columns)), strict=True))
    return sink.getvalue().encode("utf-8")


def table_bytes(table: pa.Table, path: Path) -> bytes:
    """``table`` in the format ``path``'s extension names (CSV, TSV or Parquet), as bytes to write
    atomically."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    fmt = table_format(path)
    if fmt is None:
        raise UsageError(f"{path}: write a table as .csv, .tsv or .parquet (got '{path.suffix}')")
    import pyarrow as pa

    sink = io.BytesIO()
    try:
        if fmt == "Parquet":
            pq.write_table(table, sink)
        else:
            options = pcsv.WriteOptions(delimiter="\t" if fmt == "TSV" else ",")
            pcsv.write_csv(table, sink, write_options=options)
    except pa.ArrowException as e:  # a column CSV cannot hold (a list, a struct)
        raise UsageError(f"cannot write {path} as {fmt}: {_first_line(e)}; write .parquet instead") from None
    return sink.getvalue()
