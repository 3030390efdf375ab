"""Write report.md and report.html from what analyze_table.py left in the results folder.

    python make_report.py --out RESULTS [--failed FILE REASON ...] [--reference FILE ...]

It reads RESULTS/inputs/*.json (one per input file) and each table's
<table>/<table>.profile.json. The report opens with a few sentences per table
(what it is, what stands out), then the findings grouped per table, most
important first (instrument problems, then the data's, then information; the
table with the most important finding first); then each table: its plots (full
width, each a link to the full-size image), the growth parameters of a kinetic
read, how it was read, its columns (with units) and the cleaning audit. The report is built once as a
list of blocks and rendered twice, so the Markdown and the HTML always say the
same thing. The HTML is static (no JavaScript) and refers to the plots by
relative path. --failed adds files whose analysis crashed before it could
record anything; --reference lists the reference files (my_files) the job had.
Self-contained: standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import re
import shutil
import statistics
import sys
from pathlib import Path

MB = 1024 * 1024
STAT_FIELDS = ("min", "max", "mean", "std", "median")
# The words the report uses for each kind of finding (findings.RANKING orders them by rank).
FINDING_TITLES = {"saturated": "saturated readings", "negative_values": "negative values", "no_growth": "did not grow",
                  "blank_signal": "blank with signal", "below_blank": "below the blanks",
                  "below_detection": "below detection", "replicate_cv": "replicates disagree",
                  "duplicate_rows": "identical rows", "missing_times": "missing time points", "outliers": "outliers",
                  "missing_together": "missing together", "mostly_missing": "nearly all missing",
                  "constant_column": "constant column", "long_tail": "long tail", "blanks": "blanks"}
GROWTH_COLUMNS = ["well", "role", "max_od", "growth_rate_per_h", "doubling_time_h", "lag_h", "auc", "grew"]


# ---------------------------------------------------------------- blocks

def slug(text: str) -> str:
    """The anchor GitHub (and markdown-it's anchors plugin) gives a heading."""
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text.strip().lower()))


def h(level: int, text: str) -> tuple:
    return ("h", level, text)


def toc(entries: list[tuple[int, str]]) -> tuple:
    return ("toc", entries)


def p(text: str) -> tuple:
    return ("p", text)


def ul(items: list[str]) -> tuple:
    return ("ul", items)


def table(header: list[str], rows: list[list]) -> tuple:
    return ("table", header, rows)


def img(path: str, alt: str) -> tuple:
    """A plot, full width, that links to itself so it opens full size."""
    return ("img", path, alt)


def code(text: str) -> tuple:
    return ("code", text)


def _md_cell(value) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append("#" * b[1] + " " + b[2])
        elif b[0] == "toc":
            out.append("\n".join("  " * (level - 2) + f"- [{text}](#{slug(text)})" for level, text in b[1]))
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "ul":
            out.append("\n".join(f"- {item}" for item in b[1]))
        elif b[0] == "table":
            lines = ["| " + " | ".join(_md_cell(c) for c in b[1]) + " |", "|" + "---|" * len(b[1])]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b[2]]
            out.append("\n".join(lines))
        elif b[0] == "img":
            out.append(f"[![{b[2]}]({b[1]})]({b[1]})")
        elif b[0] == "code":
            out.append("```\n" + b[1] + "\n```")
    return "\n\n".join(out) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}figure{margin:1em 0}img{width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto}
h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}"""


def to_html(blocks: list[tuple], title: str) -> str:
    e = html.escape
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
           f"<style>{CSS}</style></head><body>"]
    for b in blocks:
        if b[0] == "h":
            out.append(f"<h{b[1]} id=\"{e(slug(b[2]), quote=True)}\">{e(b[2])}</h{b[1]}>")
        elif b[0] == "toc":
            items = "".join(f"<li style=\"margin-left:{(level - 2) * 1.5}em\"><a href=\"#{e(slug(text), quote=True)}\">"
                            f"{e(text)}</a></li>" for level, text in b[1])
            out.append(f"<nav><ul>{items}</ul></nav>")
        elif b[0] == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif b[0] == "ul":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
        elif b[0] == "table":
            head = "".join(f"<th>{e(str(c))}</th>" for c in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{e('' if c is None else str(c))}</td>" for c in row) + "</tr>"
                           for row in b[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b[0] == "img":
            out.append(f"<figure><a href=\"{e(b[1], quote=True)}\" title=\"open full size\"><img src=\"{e(b[1], quote=True)}\" "
                       f"alt=\"{e(b[2], quote=True)}\" loading=\"lazy\"></a><figcaption>{e(b[2])}</figcaption></figure>")
        elif b[0] == "code":
            out.append(f"<pre>{e(b[1])}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- content

def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def column_rows(profile: dict) -> list[list]:
    rows = []
    for c in profile["columns"]:
        if c["type"] in ("integer", "number"):
            summary = ", ".join(f"{k} {fmt(c.get(k))}" for k in STAT_FIELDS if c.get(k) is not None)
        elif c["type"] in ("date", "datetime"):
            summary = f"from {c.get('first')} to {c.get('last')}"
        else:
            summary = "; ".join(f"{t['value']} ({t['count']:,})" for t in c.get("top", []))
        rows.append([c["name"], c.get("unit") or "", c["type"], c.get("role", ""), fmt(c["missing"]),
                     f"{c['missing_pct']}%", fmt(c["distinct"]), summary])
    return rows


def where(profile: dict) -> str:
    return profile["source"] + (f", sheet {profile['sheet']!r}" if profile.get("sheet") else "")


def reading_blocks(profile: dict) -> list[tuple]:
    """How the table was read: options, metadata, footer, rows and columns before and after."""
    name = profile["table"]
    blocks = [h(4, f"Reading and cleaning {name}")]
    reader = profile["reader"]
    if reader.get("format") in ("delimited", "excel"):
        how = [f"delimiter {reader['delimiter']!r}" if reader["format"] == "delimited" else "Excel sheet",
               f"encoding {reader['encoding']}" if reader["format"] == "delimited" else "",
               "decimal comma" if reader.get("decimal_comma") else "",
               (reader["layout"] if reader.get("layout") else f"header on line {reader['header_line'] + 1}"
                if reader.get("header_line") is not None else "no header row"),
               f"{len(profile['metadata'])} metadata line(s) above the header" if profile.get("metadata") else ""]
        blocks.append(p("Read as: " + ", ".join(x for x in how if x) + "."))
    else:
        blocks.append(p(f"Read as {reader.get('format')} (nested fields flattened to parent.child columns)."))
    if profile.get("metadata"):
        blocks.append(p("Metadata above the table:"))
        blocks.append(code("\n".join(profile["metadata"])))
    if profile.get("footer"):
        blocks.append(p("Footer after the table (metadata, not data rows):"))
        blocks.append(code("\n".join(profile["footer"])))
    blocks.append(table(["", "before cleaning", "after cleaning"], [
        ["rows", fmt(profile["rows_before"]), fmt(profile["rows_after"])],
        ["columns", fmt(profile["columns_before"]), fmt(profile["columns_after"])]]))
    dup, dropped = profile.get("duplicate_rows", 0), profile.get("duplicate_rows_dropped", 0)
    facts = [f"{fmt(profile['empty_rows_dropped'])} empty row(s) dropped; {fmt(dup)} row(s) identical to an earlier "
             f"row, " + ("dropped as asked." if dropped else "kept (see the findings).")]
    files = profile["files"]
    facts.append(f"Cleaned data: {files['csv']['path']} ({files['csv']['size'] / MB:.2f} MB), "
                 f"{files['parquet']['path']} ({files['parquet']['size'] / MB:.2f} MB); "
                 f"profile and audit: {name}/{name}.profile.json.")
    if profile.get("growth"):
        g = profile["growth"]["files"]
        facts.append(f"Growth analysis: {g['parameters']} (one row per well) and {g['curves']} (long format: "
                     f"well, time_h, od, od_blank_corrected).")
    facts += [n[0].upper() + n[1:] + "." for n in profile.get("notes", [])]
    blocks.append(ul(facts))
    return blocks


def table_blocks(profile: dict) -> list[tuple]:
    """One table: what it is, its plots, its growth parameters, how it was read, columns, audit."""
    name = profile["table"]
    blocks = [h(3, f"{name} (from {where(profile)})"), p(describe(profile))]
    if profile["plots"]:
        blocks.append(h(4, f"Plots of {name}"))
        blocks.append(p(f"Drawn by scripts/plot_{name}.py (edit and rerun it); select a plot to open it full size."))
        blocks += [img(pl["path"], f"{pl['title']} ({pl['kind'].replace('_', ' ')})") for pl in profile["plots"]]
    if profile.get("growth"):
        blocks += growth_blocks(profile)
    blocks += reading_blocks(profile)
    blocks.append(h(4, f"Columns of {name}"))
    blocks.append(table(["column", "unit", "type", "role", "missing", "missing %", "distinct", "summary"],
                        column_rows(profile)))
    blocks.append(h(4, f"Cleaning audit of {name}"))
    if profile["audit"]:
        blocks.append(table(["change", "column", "rows", "cells", "detail"],
                            [[a["action"], a["column"] or (f"{len(a['columns'])} columns" if a.get("columns") else "(all)"),
                              fmt(a["rows"]), fmt(a["cells"]), a["detail"]] for a in profile["audit"]]))
    else:
        blocks.append(p("Nothing needed changing."))
    return blocks


def growth_blocks(profile: dict) -> list[tuple]:
    g = profile["growth"]
    unit = g.get("unit") or "OD"
    rows = [[prm[c] if c != "grew" else ("yes" if prm[c] else "no") for c in GROWTH_COLUMNS] for prm in g["parameters"]]
    return [h(4, f"Growth parameters of {profile['table']}"),
            p(f"Per well, on the {unit} minus the blank: max_od the highest value; growth_rate_per_h the maximum "
              f"specific growth rate (steepest slope of ln {unit} over {g['window']} consecutive reads); "
              f"doubling_time_h = ln 2 / growth rate; lag_h where the tangent at the steepest point meets the "
              f"starting level; auc the area under the curve ({unit} x h). Also in {g['files']['parameters']}."
              + (f" Note: {g['time_note']}." if g.get("time_note") else "")),
            table(GROWTH_COLUMNS, rows)]


def _span(values: list[float], digits: str = ".3g") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "none"
    lo, hi, med = min(values), max(values), statistics.median(values)
    return f"{lo:{digits}} to {hi:{digits}} (median {med:{digits}})"


def describe(profile: dict) -> str:
    """A few sentences: what the table is, and what stands out."""
    cols, rows = profile["columns"], profile["rows_after"]
    g = profile.get("growth")
    if g:
        unit = g.get("unit") or "reading"
        samples = [prm for prm in g["parameters"] if prm["role"] == "sample"]
        grew = [prm for prm in samples if prm["grew"]]
        text = (f"A kinetic plate read: {len(g['wells'])} wells x {g['reads']} reads over {g['hours']:g} h "
                f"({unit}, every {g['interval_h'] * 60:.3g} min). ")
        blanks = g["blanks"]
        text += (f"Blanks {wells_text(blanks['wells'])}: {blanks['rule']}. " if blanks["wells"] else
                 f"Blanks: {blanks['rule']}. ")
        text += (f"{len(grew)} of {len(samples)} sample wells grew: growth rate "
                 f"{_span([prm['growth_rate_per_h'] for prm in grew])} per h, doubling time "
                 f"{_span([prm['doubling_time_h'] for prm in grew])} h, lag {_span([prm['lag_h'] for prm in grew])} h, "
                 f"max {unit} above the blank {_span([prm['max_od'] for prm in grew])}.")
    elif profile["reader"].get("layout") == "plate grid":
        wells = next((c.get("distinct") for c in cols if c["name"] == "well"), rows)
        readings = [c["name"] + (f" ({c['unit']})" if c.get("unit") else "") for c in cols if c.get("role") == "measure"]
        text = f"A plate of {wells} wells, one reading per well: {', '.join(readings) or 'no readings'}."
        if profile.get("blanks", {}).get("wells"):
            b = profile["blanks"]
            text += f" Blanks {wells_text(b['wells'])}: {b['rule']}; they read {b['level']:g}."
    else:
        roles: dict[str, list[str]] = {}
        for c in cols:
            roles.setdefault(c.get("role", "text"), []).append(c["name"])
        parts = [f"{len(roles[r])} {words} ({', '.join(roles[r][:4])}{', ...' if len(roles[r]) > 4 else ''})"
                 for r, words in (("time", "time axis"), ("id", "identifier"), ("factor", "grouping column(s)"),
                                  ("measure", "measurement(s)"), ("well", "well column(s)"), ("binary", "0/1 column(s)"))
                 if roles.get(r)]
        text = f"{rows:,} rows x {len(cols)} columns: " + ("; ".join(parts) or "text columns") + "."
    top = [f for f in sorted(profile.get("findings", []), key=rank) if f["kind"] != "blanks"][:3]
    if top:
        text += " Stands out: " + "; ".join(short(f) for f in top) + "."
    else:
        text += " Nothing stood out."
    return text


def wells_text(wells: list[str]) -> str:
    """'A12-H12 (8 wells)' for one plate column or row, else the wells named (10 at most)."""
    rows = {w.rstrip("0123456789") for w in wells}
    cols = {w[len(w.rstrip("0123456789")):] for w in wells}
    if len(wells) >= 3 and (len(rows) == 1 or len(cols) == 1):
        return f"{wells[0]}-{wells[-1]} ({len(wells)} wells)"
    return ", ".join(wells[:10]) + (f" and {len(wells) - 10} more" if len(wells) > 10 else "")


def rank(f: dict) -> int:
    return f.get("rank", 10 ** 6)


def short(f: dict) -> str:
    """A finding in a few words: 'saturated readings: D6 at 15 h'."""
    what = FINDING_TITLES.get(f["kind"], f["kind"].replace("_", " "))
    if f.get("column") and f["kind"] not in ("no_growth", "blank_signal", "below_blank"):
        what += f" in {f['column']}"
    named = f.get("labels") or []
    if named:
        what += ": " + ", ".join(named[:4]) + (f" and {len(named) - 4 + (f.get('more') or 0)} more"
                                              if len(named) > 4 or f.get("more") else "")
    return what


def finding_blocks(profiles: list[dict]) -> list[tuple]:
    """The findings grouped per table, most important first; the table with the most important first."""
    tables = [(min((rank(f) for f in pr.get("findings", [])), default=10 ** 7), k, pr) for k, pr in enumerate(profiles)]
    blocks = []
    for _, _, pr in sorted(tables, key=lambda x: (x[0], x[1])):
        found = sorted(pr.get("findings", []), key=rank)
        if not found:
            continue
        blocks.append(p(f"{pr['table']} (from {where(pr)}):"))
        blocks.append(ul([f"{FINDING_TITLES.get(f['kind'], f['kind'])}" + (f" in {f['column']}" if f.get("column") else "")
                          + f" [{f.get('severity', 'data')}]: {f['detail']}" for f in found]))
    if not blocks:
        return [p("Nothing stood out: no identical rows, constant or nearly empty columns, outliers, out-of-range "
                  "readings or disagreeing replicates.")]
    return blocks


def reference_blocks(references: list[str], profiles: list[dict]) -> list[tuple]:
    used = {}
    for pr in profiles:
        source = pr["reader"].get("plate_map_source")
        if source:
            used.setdefault(source, []).append(pr["table"])
    items = [f"{ref}" + (f": plate map joined to {', '.join(used[Path(ref).name])}" if Path(ref).name in used else
                         ": reference only, not analysed as data") for ref in references]
    return [p("Reference files from my_files, the lab's material copied into every job:"), ul(items)]


def build(out: Path, failed: dict[str, str], references: list[str] = (), notes_first: list[str] = ()) -> tuple[list[tuple], dict]:
    records = []
    for path in sorted((out / "inputs").glob("*.json")):
        records.append(json.loads(path.read_text(encoding="utf-8")))
    known = {r["file"] for r in records}
    records += [{"file": f, "status": "failed", "reason": reason, "tables": []}
                for f, reason in failed.items() if f not in known]
    profiles = []
    for r in records:
        for t in r.get("tables", []):
            path = out / t / f"{t}.profile.json"
            if path.exists():
                profiles.append(json.loads(path.read_text(encoding="utf-8")))
    ok = [r for r in records if r["status"] == "ok"]
    skipped = [r for r in records if r["status"] == "skipped"]
    bad = [r for r in records if r["status"] == "failed"]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    notes = [f"{r['file']}: skipped, {r['reason']}" for r in skipped]
    notes += [f"{r['file']}: FAILED, {r['reason']}" for r in bad]
    notes += [f"{r['file']}: sheet {s['sheet']!r} skipped, {s['reason']}"
              for r in records for s in r.get("skipped_sheets", [])]
    sections = [(2, "Summary"), (2, "Findings"), (2, "Tables")]
    sections += [(3, f"{pr['table']} (from {where(pr)})") for pr in profiles]
    sections += ([(2, "Files not analysed")] if notes else []) + ([(2, "Reference material")] if references else [])
    sections.append((2, "Reproduce"))
    blocks = [h(1, "Data report"),
              p(f"{len(records)} input file(s): {len(ok)} analysed into {len(profiles)} table(s), "
                f"{len(skipped)} skipped, {len(bad)} failed. Generated {now} by the offline playbook."),
              *[p(n) for n in notes_first], toc(sections), h(2, "Summary")]
    blocks += [p(f"{pr['table']} (from {where(pr)}): {describe(pr)}") for pr in profiles] or \
        [p("No table could be read from the uploaded files.")]
    blocks += [h(2, "Findings")] + finding_blocks(profiles) + [h(2, "Tables")]
    if profiles:
        blocks.append(table(["table", "source", "rows before", "rows after", "columns before", "columns after",
                             "identical rows (kept)", "findings", "audit entries", "plots"],
                            [[pr["table"], pr["source"] + (f" [{pr['sheet']}]" if pr.get("sheet") else ""),
                              fmt(pr["rows_before"]), fmt(pr["rows_after"]), fmt(pr["columns_before"]),
                              fmt(pr["columns_after"]), fmt(pr.get("duplicate_rows", 0) - pr["duplicate_rows_dropped"]),
                              len(pr.get("findings", [])), len(pr["audit"]), len(pr["plots"])] for pr in profiles]))
    else:
        blocks.append(p("No table could be read from the uploaded files."))
    for pr in profiles:
        blocks += table_blocks(pr)
    if notes:
        blocks += [h(2, "Files not analysed"), ul(notes)]
    if references:
        blocks += [h(2, "Reference material")] + reference_blocks(list(references), profiles)
    refs = "".join(f" --reference INPUT_DIR/{r}" for r in references)
    blocks += [h(2, "Reproduce"),
               p("Every step ran as a script kept in scripts/ (Python with duckdb, openpyxl and matplotlib). "
                 "From this folder, with the input files in INPUT_DIR:"),
               code("\n".join([f"python scripts/analyze_table.py INPUT_DIR/{r['file']} --out . --name {r['name']}{refs}"
                               for r in records if r.get("name")]
                              + [f"python scripts/plot_{pr['table']}.py  # redraws the plots" for pr in profiles]
                              + ["python scripts/make_report.py --out ."]))]
    summary = {"files": len(records), "analysed": len(ok), "skipped": len(skipped), "failed": len(bad),
               "tables": [{"table": pr["table"], "rows_before": pr["rows_before"], "rows_after": pr["rows_after"],
                           "columns_before": pr["columns_before"], "columns_after": pr["columns_after"]}
                          for pr in profiles]}
    return blocks, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--failed", action="append", nargs=2, default=[], metavar=("FILE", "REASON"),
                        help="a file whose analysis crashed without recording anything")
    parser.add_argument("--reference", action="append", default=[], metavar="FILE",
                        help="a reference file the job had (my_files), listed in the report")
    parser.add_argument("--note", action="append", default=[], help="a sentence the report opens with")
    args = parser.parse_args(argv)
    failed = dict(args.failed)
    shutil.rmtree(args.out / ".scratch", ignore_errors=True)  # left by an analysis that was killed
    blocks, summary = build(args.out, failed, args.reference, args.note)
    (args.out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    (args.out / "report.html").write_text(to_html(blocks, "Data report"), encoding="utf-8")
    print(f"wrote report.md and report.html: {summary['tables'] and len(summary['tables'])} table(s), "
          f"{summary['skipped']} skipped, {summary['failed']} failed")
    print("RESULT " + json.dumps(summary, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
