"""Generated lab files in the shapes instruments export, for the playbook's tests.

Each generator writes a file and returns what a scientist knows about it (the
true values, the wells, the markers), so tests compute expectations from the
generator's own data, never from the playbook's output.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

ROWS = "ABCDEFGH"


def od_growth(hours: float, rate: float, lag: float = 1.0, floor: float = 0.09, top: float = 1.2) -> float:
    """A logistic growth curve as an OD600 reading."""
    return round(floor + (top - floor) / (1 + math.exp(-rate * (hours - lag - 2))), 4)


def plate_values(seed: int = 7) -> dict[str, float]:
    """An endpoint OD per well of a 96-well plate: samples in triplicate (columns 1-3, 4-6, ...),
    within 2% of each other; column 12 is the blanks."""
    values = {}
    for r, letter in enumerate(ROWS):
        for c in range(1, 13):
            sample = 0.3 * ((c - 1) // 3) + 0.05 * r + 0.2
            values[f"{letter}{c}"] = 0.045 + (0.0005 * ((seed * c) % 3) if c == 12 else
                                              sample * (1 + 0.01 * ((seed * (r + c)) % 3 - 1)))
    return values


def tecan_endpoint(path: Path, over: tuple[str, ...] = ("H11",), decimal_comma: bool = True) -> dict:
    """A Tecan i-control absorbance export: metadata, a `<>` grid with `;` and decimal commas,
    an OVER reading, then an `End Time:` footer."""
    values = plate_values()
    delim = ";" if decimal_comma else ","

    def num(v: float) -> str:
        text = f"{v:.4f}"
        return text.replace(".", ",") if decimal_comma else text

    lines = ["Application: Tecan i-control", f"Tecan i-control {delim}3.9.1.0",
             f"Device: infinite 200Pro{delim}Serial number: 1510003157", f"Date:{delim}05/01/2024",
             f"Time:{delim}10:15:30", "", "Absorbance", f"Mode{delim}Absorbance",
             f"Measurement Wavelength{delim}600{delim}nm", f"Number of Flashes{delim}25",
             f"Start Time:{delim}05/01/2024 10:15:31", "", delim.join(["<>"] + [str(c) for c in range(1, 13)])]
    for letter in ROWS:
        cells = ["OVER" if f"{letter}{c}" in over else num(values[f"{letter}{c}"]) for c in range(1, 13)]
        lines.append(delim.join([letter] + cells))
    lines += ["", f"End Time:{delim}05/01/2024 10:16:02"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"values": {w: (None if w in over else v) for w, v in values.items()}, "over": list(over),
            "footer": f"End Time:{delim}05/01/2024 10:16:02"}


def gen5_endpoint_with_layout(path: Path) -> dict:
    """A BioTek Gen5 endpoint export: a Layout grid of sample names (BLK for blanks) and a
    results grid whose rows end with the read's name, tab separated."""
    values = plate_values(3)
    layout = {}
    for r, letter in enumerate(ROWS):
        for c in range(1, 13):
            layout[f"{letter}{c}"] = "BLK" if c == 12 else f"SPL{r * 4 + (c - 1) // 3 + 1}"
    values["C12"] = 0.9  # a blank well that reads like a sample: contamination
    values["E5"] = values["E5"] * 1.8  # one replicate of SPL18 (E4-E6) far from its partners
    lines = ["Software Version\t3.11.19", "Plate Number\tPlate 1", "Date\t5/1/2024", "Reader Type:\tSynergy H1",
             "", "Layout", "\t" + "\t".join(str(c) for c in range(1, 13))]
    lines += [letter + "\t" + "\t".join(layout[f"{letter}{c}"] for c in range(1, 13)) for letter in ROWS]
    lines += ["", "Results", "\t" + "\t".join(str(c) for c in range(1, 13))]
    lines += [letter + "\t" + "\t".join(f"{values[f'{letter}{c}']:.3f}" for c in range(1, 13)) + "\t600"
              for letter in ROWS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"values": {w: round(v, 3) for w, v in values.items()}, "layout": layout, "contaminated": "C12",
            "far_replicates": ("SPL18", ["E4", "E5", "E6"])}


def gen5_kinetic(path: Path, reads: int = 17, overflow: tuple[tuple[str, int], ...] = (("D6", 16),)) -> dict:
    """A BioTek Gen5 growth curve: procedure metadata, a Layout grid (samples in triplicate,
    blanks in column 12, one blank contaminated), then `Time  T° 600  A1 ... H12` with
    h:mm:ss times every 15 min and an OVRFLW reading."""
    layout, series = {}, {}
    for r, letter in enumerate(ROWS):
        for c in range(1, 13):
            well = f"{letter}{c}"
            layout[well] = "BLK" if c == 12 else f"SPL{r * 4 + (c - 1) // 3 + 1}"
            rate = 1.2 + 0.1 * r + 0.02 * c
            if c == 12:
                series[well] = [0.088 + 0.0005 * (k % 3) for k in range(reads)]
            else:
                series[well] = [od_growth(k * 0.25, rate) for k in range(reads)]
    series["H12"] = [od_growth(k * 0.25, 1.5) for k in range(reads)]  # contaminated blank
    series["A2"] = [round(v * 0.5, 4) for v in series["A2"]]           # a replicate far from its two partners
    lines = ["Software Version\t3.11.19", "Experiment File Path:\tC:\\Users\\lab\\growth.xpt", "Plate Number\tPlate 1",
             "Date\t5/1/2024", "Time\t10:15:30 AM", "Reader Type:\tSynergy H1", "", "Procedure Details",
             "Plate Type\t96 WELL PLATE", "Set Temperature\tSetpoint 37°C",
             "Start Kinetic\tRuntime 4:00:00 (HH:MM:SS), Interval 0:15:00, 17 Reads", "", "Layout",
             "\t" + "\t".join(str(c) for c in range(1, 13))]
    lines += [letter + "\t" + "\t".join(layout[f"{letter}{c}"] for c in range(1, 13)) for letter in ROWS]
    wells = [f"{letter}{c}" for letter in ROWS for c in range(1, 13)]
    lines += ["", "Read 1:600", "", "\t".join(["Time", "T° 600"] + wells)]
    overflow_at = dict(overflow)
    for k in range(reads):
        minutes = 15 * k
        cells = [f"{minutes // 60}:{minutes % 60:02d}:00", f"{37.0 + 0.1 * (k % 2):.1f}"]
        cells += ["OVRFLW" if overflow_at.get(w) == k else f"{series[w][k]:.4f}" for w in wells]
        lines.append("\t".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"series": series, "layout": layout, "wells": wells, "hours": [0.25 * k for k in range(reads)],
            "overflow": overflow, "contaminated": "H12", "far_replicate": "A2"}


def tecan_kinetic_wells_as_rows(path: Path, cycles: int = 13) -> dict:
    """A Tecan kinetic export with wells as rows and cycles as columns (`Cycle Nr.`, `Time [s]`,
    `Temp. [°C]`, then A1..H12), `;` and decimal commas, and an `End Time:` footer."""
    wells = [f"{letter}{c}" for letter in ROWS for c in range(1, 13)]
    series = {w: [od_growth(k * 0.25, 1.0 + 0.05 * i) for k in range(cycles)] for i, w in enumerate(wells)}
    times = [900 * k for k in range(cycles)]

    def dc(v: float) -> str:
        return f"{v:.4f}".replace(".", ",")

    lines = ["Application: Tecan i-control", "Device: infinite M Plex", "Kinetic Measurement", "",
             ";".join(["Cycle Nr."] + [str(k + 1) for k in range(cycles)]),
             ";".join(["Time [s]"] + [str(t) for t in times]),
             ";".join(["Temp. [°C]"] + ["37,1" if k % 2 else "37,0" for k in range(cycles)])]
    lines += [";".join([w] + [dc(v) for v in series[w]]) for w in wells]
    lines += ["", "End Time:;05/01/2024 14:16:02"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"series": series, "times": times, "wells": wells}


def units_row_table(path: Path) -> dict:
    """A table with a units row under its header (lb, in, bpm)."""
    rows = [("P1", 150, 65, 72), ("P2", 180, 70, 64), ("P3", 132, 62, 80), ("P4", 201, 74, 58),
            ("P5", 166, 68, 91), ("P6", 145, 66, 77), ("P7", 190, 71, 69), ("P8", 158, 64, 85)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Patient", "Weight", "Height", "Pulse"])
        w.writerow(["", "lb", "in", "bpm"])
        w.writerows(rows)
    return {"rows": rows, "units": {"weight": "lb", "height": "in", "pulse": "bpm"}}


def plate_map_csv(path: Path, layout: dict[str, str]) -> None:
    """A lab's plate map as a table: well, sample."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Well", "Sample"])
        w.writerows(sorted(layout.items()))


def zwietering(hours: float, rate: float, lag: float, start: float = 0.01, top: float = 1.0) -> float:
    """Cells as OD above the blank on the modified logistic of Zwietering et al. (1990): ln(N/N0) rises
    to ln(top/start) with the maximum specific growth rate `rate` (per h), and the tangent at the
    steepest point meets ln N0 at `lag` (h). The truth a growth fit should recover."""
    a = math.log(top / start)
    return start * math.exp(a / (1 + math.exp(4 * rate / a * (lag - hours) + 2)))


def kinetic_plate(path: Path, reads: int = 97, interval_h: float = 0.25, blank_column: int = 12,
                  no_growth: tuple[str, ...] = ("C5", "F9"), layout: bool = False, seed: int = 11,
                  overflow: tuple[tuple[str, int], ...] = (), read_label: str = "Read 1:600") -> dict:
    """A BioTek Gen5-style kinetic read of a 96-well plate: `Read 1:600` above `Time  T° 600  A1 ... H12`,
    h:mm:ss times. Samples follow `zwietering` with known rates (0.4-1.2 /h) and lags (1-4 h) over a
    0.09 medium background with +-0.002 read noise; column `blank_column` holds flat blanks; the
    `no_growth` wells were inoculated (0.01 above the blank) but never grew. With `layout`, a Gen5
    Layout grid names the samples (SPL1.., triplicates) and the blanks (BLK). The true lag is the
    tangent lag as a scientist measures it: where the tangent at the steepest point meets ln of
    the first reading above the blank (`lag` of the model plus the rise it already made at 0 h)."""
    import random

    rng = random.Random(seed)
    hours = [k * interval_h for k in range(reads)]
    wells = [f"{letter}{c}" for letter in ROWS for c in range(1, 13)]
    rates, lags, series, names = {}, {}, {}, {}
    for i, well in enumerate(wells):
        c = int(well[1:])
        background = [0.09 + rng.uniform(-0.002, 0.002) for _ in hours]
        if c == blank_column:
            series[well], names[well] = background, "BLK"
            continue
        names[well] = f"SPL{(i // 12) * 4 + (c - 1) // 3 + 1}"
        if well in no_growth:
            series[well] = [b + 0.01 for b in background]
            continue
        rates[well], model_lag = round(0.4 + 0.8 * ((i * 37) % 88) / 87, 4), round(1 + 3 * ((i * 53) % 88) / 87, 3)
        lags[well] = model_lag + math.log(zwietering(0, rates[well], model_lag) / 0.01) / rates[well]
        series[well] = [b + zwietering(h, rates[well], model_lag) for b, h in zip(background, hours)]
    blanks = [w for w in wells if int(w[1:]) == blank_column]
    lines = ["Software Version\t3.11.19", "Plate Number\tPlate 1", "Date\t5/1/2024", "Reader Type:\tSynergy H1", "",
             "Procedure Details", "Set Temperature\tSetpoint 37°C",
             f"Start Kinetic\tInterval {int(interval_h * 60)} min, {reads} Reads", ""]
    if layout:
        lines += ["Layout", "\t" + "\t".join(str(c) for c in range(1, 13))]
        lines += [letter + "\t" + "\t".join(names[f"{letter}{c}"] for c in range(1, 13)) for letter in ROWS] + [""]
    lines += [read_label, "", "\t".join(["Time", "T° 600"] + wells)]
    overflow_at = dict(overflow)
    for k, h in enumerate(hours):
        seconds = round(h * 3600)
        cells = [f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}", f"{37.0 + 0.1 * (k % 2):.1f}"]
        cells += ["OVRFLW" if overflow_at.get(w) == k else f"{series[w][k]:.4f}" for w in wells]
        lines.append("\t".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"wells": wells, "hours": hours, "series": series, "rates": rates, "lags": lags, "blanks": blanks,
            "no_growth": list(no_growth), "names": names, "top": 1.0}


def long_growth_table(path: Path, reads: int = 49, interval_h: float = 0.5) -> dict:
    """A long table (well, sample, time_min, od600): 24 wells of a 96-well plate, two of them media
    blanks named in the sample column, the others growing with known rates."""
    wells = [f"{letter}{c}" for letter in "ABCD" for c in range(1, 7)]
    blanks = ["D5", "D6"]
    rates = {w: round(0.5 + 0.03 * i, 3) for i, w in enumerate(wells) if w not in blanks}
    lines = ["well,sample,time_min,od600"]
    for w in wells:
        for k in range(reads):
            h = k * interval_h
            od = 0.05 + 0.001 * ((k * 7 + len(w)) % 3 - 1) + (0 if w in blanks else zwietering(h, rates[w], 2.0))
            lines.append(f"{w},{'media' if w in blanks else 'strain_' + w},{round(h * 60)},{od:.4f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"wells": wells, "blanks": blanks, "rates": rates}
