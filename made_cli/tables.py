"""Tables as data: CSV, TSV and Parquet read by pyarrow, columns typed, rows encoded and decoded.

A table's modelled columns are the model's dimensions, in the order given. A column is discrete
when it holds integers or text with at most ``data.max_levels`` distinct values: its values
become codes 0..L-1 (in sorted order) with a categorical law. Float columns, and integer columns
with more values, are real. The schema (names, types, categories, the label's class names) is
decided once, from the training file, and saved with the run: resuming, evaluating and scoring
new rows apply it as it is, so a row is always encoded the way the model learnt it.
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

from .errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from .config import DataConfig

__all__ = [
    "SPLIT_NAMES",
    "Column",
    "EncodedRows",
    "TableSchema",
    "infer_schema",
    "read_table",
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
        table = _normalise(table, path)
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
        table = _normalise(table, path)
    names = table.column_names
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"{path}: column {twice[0]!r} appears more than once in the header")
    if table.num_rows == 0:
        raise UsageError(f"{path} has a header but no rows")
    return table


def _normalise(table: pa.Table, path: Path) -> pa.Table:
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


def _check_present(path: Path, name: str, col: pa.ChunkedArray) -> None:
    """Every row has a value: an empty cell (or NA, NaN, which readers read as missing) is refused."""
    if col.null_count:
        first = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise UsageError(f"{path}: column {name!r}, {_where(first)}: the value is missing (empty, NA or NaN)")


def _numbers(path: Path, name: str, col: pa.ChunkedArray) -> np.ndarray:
    """A column of numbers as float64 (N,), refused at the first missing, non-numeric or infinite value."""
    import pyarrow as pa

    _check_present(path, name, col)
    if _is_text(col.type):
        values = col.to_pylist()
        for i, v in enumerate(values):
            if not _parses(v):
                raise UsageError(f"{path}: column {name!r}, {_where(i)}: {v!r} is not a number")
        a = np.array([float(v) for v in values], dtype=np.float64)
    elif _is_number(col.type) or pa.types.is_null(col.type):
        a = col.to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        raise UsageError(f"{path}: column {name!r} holds {col.type}, not numbers")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise UsageError(f"{path}: column {name!r}, {_where(int(bad[0]))}: {a[bad[0]]} is not finite")
    return a


@dataclass(frozen=True)
class Column:
    """One column: its name, what its values are, and a discrete column's categories in code order.

    ``kind`` real: numbers modelled by a density; integer, boolean or text: discrete, code i is
    ``categories[i]``.
    """

    name: str
    kind: str  # real | integer | boolean | text
    categories: tuple[Any, ...] = ()

    @property
    def levels(self) -> int:
        """Categories of a discrete column; 0 for a real one."""
        return len(self.categories)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Column:
        return cls(str(d["name"]), str(d["kind"]), tuple(d.get("categories") or ()))

    def describe(self) -> str:
        return "real" if self.kind == "real" else f"{self.kind}, {self.levels} categories"

    def encode(self, path: Path, col: pa.ChunkedArray) -> np.ndarray:
        """Values -> float64 (N,): reals as they are, discrete values as their codes."""
        if self.kind == "real":
            return _numbers(path, self.name, col)
        _check_present(path, self.name, col)
        if self.kind in ("integer", "boolean"):
            values: list[Any] = _integers(path, self.name, col).tolist()
        else:
            values = [str(v) for v in col.to_pylist()]
        codes = {v: i for i, v in enumerate(self.categories)}
        out = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            code = codes.get(v)
            if code is None:
                shown = ", ".join(map(repr, self.categories[:5])) + (", ..." if self.levels > 5 else "")
                raise UsageError(
                    f"{path}: column {self.name!r}, {_where(i)}: {v!r} is not one of the column's "
                    f"{self.levels} categories in training ({shown})"
                )
            out[i] = code
        return out

    def decode(self, codes: np.ndarray) -> list[Any] | np.ndarray:
        """Codes (or reals) -> the column's values."""
        if self.kind == "real":
            return codes.astype(np.float32)  # the model's precision: no digits it does not have
        index = np.clip(np.round(codes), 0, self.levels - 1).astype(np.int64)
        return [self.categories[i] for i in index]


def _as_numbers(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Booleans as 0/1; anything else as it is."""
    import pyarrow as pa

    return col.cast(pa.int64()) if pa.types.is_boolean(col.type) else col


def _integers(path: Path, name: str, col: pa.ChunkedArray) -> np.ndarray:
    """A column of integers as int64 (N,), exactly (not through float64, which rounds above
    2**53), refused at the first value that is not an integer."""
    import pyarrow as pa

    col = _as_numbers(col)
    if pa.types.is_integer(col.type):
        _check_present(path, name, col)
        return col.to_numpy(zero_copy_only=False).astype(np.int64)
    if _is_text(col.type):
        _check_present(path, name, col)
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


def _infer_column(path: Path, name: str, col: pa.ChunkedArray, max_levels: int) -> Column:
    """The column's kind and categories, from its type and its distinct values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    _check_present(path, name, col)
    if _is_text(col.type) and _looks_numeric(path, col):
        _numbers(path, name, col)  # names the first value that is not a number
        return Column(name, "real")  # numbers stored as text (every value parses)
    if pa.types.is_floating(col.type):
        _numbers(path, name, col)
        kind, distinct = "real", None
    elif pa.types.is_boolean(col.type):
        distinct, kind = sorted(pc.unique(col).to_pylist()), "boolean"
    elif pa.types.is_integer(col.type):
        distinct = sorted(int(v) for v in pc.unique(col).to_pylist())
        kind = "integer" if len(distinct) <= max_levels else "real"
    elif _is_text(col.type):
        distinct = sorted(pc.unique(col).to_pylist())
        if len(distinct) > max_levels:
            raise UsageError(
                f"{path}: column {name!r} holds {len(distinct)} distinct text values, more than "
                f"data.max_levels ({max_levels}); leave it out of data.columns or raise data.max_levels"
            )
        kind = "text"
    else:
        raise UsageError(f"{path}: column {name!r} holds {col.type}; a model takes numbers or text")
    if kind != "real" and distinct is not None:
        if len(distinct) < 2:
            raise UsageError(
                f"{path}: column {name!r} holds one value ({distinct[0]!r}) in every row; leave it out"
            )
        return Column(name, kind, tuple(distinct))
    if float(pc.min(_as_numbers(col)).as_py()) == float(pc.max(_as_numbers(col)).as_py()):
        raise UsageError(f"{path}: column {name!r} holds one value in every row; leave it out")
    return Column(name, kind)


@dataclass(frozen=True)
class EncodedRows:
    """A table's rows as the model takes them."""

    x: torch.Tensor  # (N, D) float32: the modelled columns (codes for discrete ones)
    labels: torch.Tensor | None  # (N,) int64 class indices, when the schema has a label column
    context: torch.Tensor | None  # (N, C) float32, when the schema has context columns


@dataclass(frozen=True)
class TableSchema:
    """What a model of a table knows of its columns: saved with the run (``to_dict``)."""

    columns: tuple[Column, ...]
    label: Column | None = None
    context: tuple[str, ...] = ()

    @property
    def column_levels(self) -> tuple[int, ...]:
        """Per modelled column: its number of categories, 0 for a real column."""
        return tuple(c.levels for c in self.columns)

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
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSchema:
        label = d.get("label")
        return cls(
            tuple(Column.from_dict(c) for c in d["columns"]),
            None if label is None else Column.from_dict(label),
            tuple(d.get("context") or ()),
        )

    def describe(self) -> str:
        discrete = sum(1 for c in self.columns if c.levels)
        parts = [f"{len(self.columns)} columns ({discrete} discrete, {len(self.columns) - discrete} real)"]
        if self.label is not None:
            parts.append(f"label {self.label.name!r} ({self.label.levels} classes)")
        if self.context:
            parts.append(f"{len(self.context)} context columns")
        return ", ".join(parts)

    def encode(self, table: pa.Table, path: Path, labels: bool = True) -> EncodedRows:
        """The rows of ``table`` (columns matched by name, in any order; others ignored).
        ``labels``: read the label column (else it may be absent)."""
        wanted = [*self.names, *self.context, *([self.label.name] if labels and self.label else [])]
        _require(table, path, wanted)
        x = np.stack([c.encode(path, table.column(c.name)) for c in self.columns], 1)
        y = None
        if labels and self.label is not None:
            y = torch.from_numpy(self.label.encode(path, table.column(self.label.name)).astype(np.int64))
        context = None
        if self.context:
            context = np.stack([_numbers(path, name, table.column(name)) for name in self.context], 1)
            context = torch.from_numpy(context.astype(np.float32))
        return EncodedRows(torch.from_numpy(x.astype(np.float32)), y, context)

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


def infer_schema(table: pa.Table, cfg: DataConfig, path: Path) -> TableSchema:
    """The schema of a training table under the config's data.* column choices."""
    roles = [*cfg.context_columns, *(n for n in (cfg.label_column, cfg.split_column) if n is not None)]
    _require(table, path, [*cfg.columns, *roles])
    if cfg.columns:
        names = list(cfg.columns)
    else:  # every numeric column (and every text column of numbers, to name its stray value)
        names = [
            n for n in table.column_names
            if n not in roles and (_is_number(table.column(n).type) or
                                   (_is_text(table.column(n).type) and _looks_numeric(path, table.column(n))))
        ]  # fmt: skip
        if not names:
            raise UsageError(f"{path} has no numeric columns to model; name them in data.columns")
    columns = tuple(_infer_column(path, n, table.column(n), cfg.max_levels) for n in names)
    label = None
    if cfg.label_column is not None:
        import pyarrow.compute as pc

        col = table.column(cfg.label_column)
        _check_present(path, cfg.label_column, col)
        distinct = pc.unique(col).to_pylist()
        if len(distinct) < 2:
            raise UsageError(
                f"{path}: label column {cfg.label_column!r} has one class ({distinct[0]!r}); a "
                "class-conditional model needs two or more"
            )
        label = _infer_column(path, cfg.label_column, col, 2**31)
        if label.kind == "real":
            raise UsageError(f"{path}: label column {cfg.label_column!r} holds real numbers, not classes")
    for name in cfg.context_columns:
        _numbers(path, name, table.column(name))
    return TableSchema(columns, label, tuple(cfg.context_columns))


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
