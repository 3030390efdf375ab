"""What a model is told about each input file before its first step: its kind and,
for a table, its schema (columns, types, a few rows) or, for a workbook, its
sheets. Read from the start of the file only, so a 2 GB upload costs as little
as a small one; a file that cannot be read is described by its kind alone.

pandas, openpyxl and pyarrow are used when the sandbox has them (it does), never
required: without them a delimited file is still shown by its first lines.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

SAMPLE_BYTES = 64 * 1024     # read from the start of a text file
ROWS_SHOWN = 3
TYPE_ROWS = 200              # rows read to guess a column's type
MAX_CHARS = 1500             # of one file's description
KINDS = {".csv": "CSV table", ".tsv": "TSV table", ".tab": "TSV table", ".txt": "text",
         ".xlsx": "Excel workbook", ".xlsm": "Excel workbook", ".xls": "Excel workbook (old format)",
         ".parquet": "Parquet table", ".json": "JSON", ".jsonl": "JSON lines", ".ndjson": "JSON lines",
         ".md": "text (Markdown)", ".pdf": "PDF document", ".docx": "Word document", ".png": "image",
         ".jpg": "image", ".jpeg": "image", ".tif": "image", ".tiff": "image", ".fasta": "sequences (FASTA)",
         ".fa": "sequences (FASTA)", ".fastq": "reads (FASTQ)", ".gz": "compressed file", ".zip": "zip archive"}


def kind_of(path: Path) -> str:
    return KINDS.get(path.suffix.lower(), "file")


def describe(path: Path) -> str:
    """A few lines about `path` for the model (its kind first); never raises."""
    kind = kind_of(path)
    try:
        if kind.startswith(("CSV", "TSV", "text")):
            detail = describe_delimited(path)
        elif kind == "Excel workbook":
            detail = describe_workbook(path)
        elif kind == "Parquet table":
            detail = describe_parquet(path)
        elif kind.startswith("JSON"):
            detail = "starts with: " + one_line(read_sample(path)[:300])
        else:
            detail = ""
    except Exception as exc:   # a file the model will look at itself: say so, never fail the run
        detail = f"(could not be previewed: {type(exc).__name__})"
    text = kind + (f"\n{detail}" if detail else "")
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + " [...]"


def read_sample(path: Path) -> str:
    with open(path, "rb") as f:
        data = f.read(SAMPLE_BYTES)
    for codec in ("utf-8-sig", "latin-1"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace")


def describe_delimited(path: Path) -> str:
    sample = read_sample(path)
    lines = sample.splitlines()[:-1] if len(sample) == SAMPLE_BYTES else sample.splitlines()
    if not lines:
        return "(empty)"
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=",;\t|").delimiter
    except csv.Error:
        return "first lines:\n" + "\n".join(cut(line, 200) for line in lines[:ROWS_SHOWN + 2])
    table = typed_table("\n".join(lines[:TYPE_ROWS + 1]), delimiter)
    names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
    return f"delimiter: {names.get(delimiter, repr(delimiter))}\n{table}"


def typed_table(text: str, delimiter: str) -> str:
    """Columns with their types and the first rows: pandas' guess when it is there."""
    try:
        import pandas as pd
    except ImportError:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
        return "columns: " + ", ".join(rows[0]) + "\nfirst rows:\n" + "\n".join(
            delimiter.join(r) for r in rows[1:ROWS_SHOWN + 1])
    frame = pd.read_csv(io.StringIO(text), sep=delimiter, on_bad_lines="skip")
    return frame_text(frame)


def frame_text(frame) -> str:
    columns = ", ".join(f"{name} ({dtype})" for name, dtype in list(frame.dtypes.items())[:60])
    more = f" and {frame.shape[1] - 60} more" if frame.shape[1] > 60 else ""
    rows = frame.head(ROWS_SHOWN).to_string(index=False, max_colwidth=30)
    return f"columns ({frame.shape[1]}): {columns}{more}\nfirst rows:\n{rows}"


def describe_workbook(path: Path) -> str:
    import openpyxl
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        parts = [f"sheets ({len(book.sheetnames)}): {', '.join(book.sheetnames[:30])}"]
        for name in book.sheetnames[:3]:
            sheet = book[name]
            rows = [", ".join(cut("" if v is None else str(v), 20) for v in row[:20])
                    for row in sheet.iter_rows(max_row=ROWS_SHOWN + 1, values_only=True)]
            parts.append(f"sheet {name!r}, first rows:\n" + "\n".join(rows))
        return "\n".join(parts)
    finally:
        book.close()


def describe_parquet(path: Path) -> str:
    import pyarrow.parquet as pq
    with pq.ParquetFile(path) as table:
        schema = table.schema_arrow
        columns = ", ".join(f"{f.name} ({f.type})" for f in list(schema)[:60])
        head = next(table.iter_batches(batch_size=ROWS_SHOWN), None)
        rows = head.to_pandas().to_string(index=False, max_colwidth=30) if head is not None else "(no rows)"
        return f"rows: {table.metadata.num_rows:,}; columns ({len(schema)}): {columns}\nfirst rows:\n{rows}"


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def one_line(text: str) -> str:
    return " ".join(text.split())
