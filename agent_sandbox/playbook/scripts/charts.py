"""Simple PNG charts drawn with Pillow: vertical bars, horizontal bars, line panels.

matplotlib would draw them too, but importing it and laying out its axes costs
about a second per file, more than the whole analysis of a 10 MB table. These
three chart shapes need only rectangles, lines and text. Each chart is drawn at
twice its size and scaled down, which smooths lines and text.

Self-contained: depends on Pillow only (every matplotlib install has it).
"""

from __future__ import annotations

import datetime as dt
import math
from functools import lru_cache
from pathlib import Path

SCALE = 2                        # supersampling factor
BLUE, GRID, AXIS, INK = (31, 119, 180), (225, 225, 225), (90, 90, 90), (30, 30, 30)
TITLE_PX, LABEL_PX, TICK_PX = 13, 11, 10


@lru_cache(maxsize=None)
def font(px: int):
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, px * SCALE)
        except OSError:
            continue
    try:
        return ImageFont.load_default(px * SCALE)  # Pillow >= 10.1 ships a scalable font
    except TypeError:
        return ImageFont.load_default()


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def number_label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:,.6f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"


def time_label(value: dt.datetime, unit: str) -> str:
    if unit in ("second", "minute", "hour"):
        return value.strftime("%m-%d %H:%M" if unit != "second" else "%H:%M:%S")
    return value.strftime("%Y-%m" if unit in ("month", "year") else "%Y-%m-%d")


class Chart:
    """A white canvas in pixels (unscaled); `save` writes the scaled-down PNG."""

    def __init__(self, width: int, height: int):
        from PIL import Image, ImageDraw

        self.width, self.height = width, height
        self.image = Image.new("RGB", (width * SCALE, height * SCALE), "white")
        self.draw = ImageDraw.Draw(self.image)

    def text_size(self, text: str, px: int) -> tuple[float, float]:
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=font(px))
        return (right - left) / SCALE, (bottom - top) / SCALE

    def text(self, x: float, y: float, text: str, px: int, anchor: str = "la") -> None:
        """anchor as in Pillow: l/m/r horizontally, a(top)/m/s(baseline) vertically."""
        self.draw.text((x * SCALE, y * SCALE), text, font=font(px), fill=INK, anchor=anchor)

    def vertical_text(self, x: float, y: float, text: str, px: int, room: float) -> None:
        """Text turned 90 degrees, centred on (x, y), shrunk to fit `room` pixels: a y-axis label."""
        from PIL import Image, ImageDraw

        while px > 7 and self.text_size(text, px)[0] > room:
            px -= 1
        w, h = self.text_size(text, px)
        strip = Image.new("RGB", (int(w * SCALE) + 4, int(h * SCALE * 1.6) + 4), "white")
        ImageDraw.Draw(strip).text((2, 2), text, font=font(px), fill=INK)
        strip = strip.rotate(90, expand=True)
        self.image.paste(strip, (int(x * SCALE - strip.width / 2), int(y * SCALE - strip.height / 2)))

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill=BLUE, outline=None) -> None:
        self.draw.rectangle([x0 * SCALE, min(y0, y1) * SCALE, x1 * SCALE, max(y0, y1) * SCALE],
                            fill=fill, outline=outline, width=SCALE)

    def line(self, points: list[tuple[float, float]], fill=BLUE, width: float = 1.5) -> None:
        self.draw.line([(x * SCALE, y * SCALE) for x, y in points], fill=fill, width=max(1, round(width * SCALE)),
                       joint="curve")

    def dot(self, x: float, y: float, radius: float = 2.0) -> None:
        r = radius * SCALE
        self.draw.ellipse([x * SCALE - r, y * SCALE - r, x * SCALE + r, y * SCALE + r], fill=BLUE)

    def save(self, path: Path) -> None:
        self.image.reduce(SCALE).save(path, compress_level=3)


class Axes:
    """A plot area inside a chart mapping data values to pixels."""

    def __init__(self, chart: Chart, box: tuple[float, float, float, float], xlim: tuple[float, float],
                 ylim: tuple[float, float]):
        self.chart, self.box = chart, box
        (self.x0, self.y0, self.x1, self.y1), self.xlim, self.ylim = box, xlim, ylim

    def px(self, x: float) -> float:
        lo, hi = self.xlim
        return self.x0 + (x - lo) / ((hi - lo) or 1) * (self.x1 - self.x0)

    def py(self, y: float) -> float:
        lo, hi = self.ylim
        return self.y1 - (y - lo) / ((hi - lo) or 1) * (self.y1 - self.y0)

    def y_grid(self, ticks: list[float]) -> None:
        for t in ticks:
            if self.ylim[0] <= t <= self.ylim[1]:
                y = self.py(t)
                self.chart.line([(self.x0, y), (self.x1, y)], fill=GRID, width=1)
                self.chart.text(self.x0 - 4, y, number_label(t), TICK_PX, anchor="rm")

    def x_grid(self, ticks: list[float], labels: list[str] | None = None, show_labels: bool = True) -> None:
        for k, t in enumerate(ticks):
            if self.xlim[0] <= t <= self.xlim[1]:
                x = self.px(t)
                self.chart.line([(x, self.y0), (x, self.y1)], fill=GRID, width=1)
                if show_labels:
                    self.chart.text(x, self.y1 + 4, labels[k] if labels else number_label(t), TICK_PX, anchor="ma")

    def frame(self) -> None:
        self.chart.rect(self.x0, self.y0, self.x1, self.y1, fill=None, outline=AXIS)


def y_tick_width(chart: Chart, ticks: list[float]) -> float:
    return max((chart.text_size(number_label(t), TICK_PX)[0] for t in ticks), default=0)


def histogram_chart(path: Path, title: str, xlabel: str, lo: float, width: float, counts: list[int]) -> None:
    """Bars of equal width starting at lo; counts per bin."""
    chart = Chart(400, 256)
    top = max(counts) * 1.05 or 1
    yticks = nice_ticks(0, top)
    left = 22 + y_tick_width(chart, yticks) + 8
    ax = Axes(chart, (left, 26, 378, 256 - 42), (lo, lo + width * len(counts)), (0, top))
    ax.y_grid(yticks)
    ax.x_grid(nice_ticks(lo, lo + width * len(counts)))
    for k, n in enumerate(counts):
        if n:
            chart.rect(ax.px(lo + k * width), ax.py(n), ax.px(lo + (k + 1) * width) - 1, ax.py(0))
    ax.frame()
    chart.text(chart.width / 2, 8, title, TITLE_PX, anchor="ma")
    chart.text((ax.x0 + ax.x1) / 2, chart.height - 6, xlabel, LABEL_PX, anchor="md")
    chart.vertical_text(9, (ax.y0 + ax.y1) / 2, "rows", LABEL_PX, ax.y1 - ax.y0)
    chart.save(path)


def top_values_chart(path: Path, title: str, labels: list[str], counts: list[int]) -> None:
    """Horizontal bars, the most common value on top; the left margin fits the longest label."""
    probe = Chart(1, 1)
    label_px = max(probe.text_size(label, TICK_PX)[0] for label in labels)
    bar_h = 22
    chart = Chart(int(300 + label_px), int(70 + bar_h * len(labels)))
    top = max(counts) * 1.05 or 1
    ax = Axes(chart, (label_px + 14, 30, chart.width - 24, chart.height - 40), (0, top), (0, len(labels)))
    ax.x_grid(nice_ticks(0, top))
    for k, (label, n) in enumerate(zip(labels, counts)):
        y_mid = ax.y0 + (k + 0.5) * bar_h
        chart.rect(ax.px(0), y_mid - bar_h * 0.38, ax.px(n), y_mid + bar_h * 0.38)
        chart.text(ax.x0 - 5, y_mid, label, TICK_PX, anchor="rm")
    ax.frame()
    chart.text(chart.width / 2, 8, title, TITLE_PX, anchor="ma")
    chart.text((ax.x0 + ax.x1) / 2, chart.height - 6, "rows", LABEL_PX, anchor="md")
    chart.save(path)


def time_series_chart(path: Path, title: str, xlabel: str, unit: str, times: list, panels: list[tuple[str, list]]) -> None:
    """One panel per (label, values) sharing the time axis; missing values break the line."""
    panel_h = 128
    chart = Chart(560, 30 + panel_h * len(panels) + 36)
    as_datetimes = [t if isinstance(t, dt.datetime) else dt.datetime.combine(t, dt.time()) for t in times]
    start = as_datetimes[0] if times else dt.datetime(2000, 1, 1)
    seconds = [(t - start).total_seconds() for t in as_datetimes]
    xlim = (0.0, max(seconds[-1], 1.0)) if seconds else (0.0, 1.0)
    xticks = [xlim[1] * i / 4 for i in range(5)]
    xlabels = [time_label(start + dt.timedelta(seconds=s), unit) for s in xticks]
    ranges = []
    for _, values in panels:
        present = [v for v in values if v is not None and math.isfinite(v)]
        lo, hi = (min(present), max(present)) if present else (0.0, 1.0)
        pad = (hi - lo) * 0.05 or abs(lo) * 0.05 or 1
        ranges.append((lo - pad, hi + pad))
    tick_w = max(y_tick_width(chart, nice_ticks(*r)) for r in ranges)
    left = 24 + tick_w + 8
    for k, ((label, values), ylim) in enumerate(zip(panels, ranges)):
        ax = Axes(chart, (left, 30 + k * panel_h, 525, 30 + (k + 1) * panel_h - 14), xlim, ylim)
        ax.y_grid(nice_ticks(*ylim))
        # time labels under the last panel only
        ax.x_grid(xticks, xlabels, k == len(panels) - 1)
        run: list[tuple[float, float]] = []
        for s, v in zip(seconds, values):
            if v is None or not math.isfinite(v):
                if len(run) > 1:
                    chart.line(run)
                run = []
                continue
            run.append((ax.px(s), ax.py(v)))
            if len(times) < 60:
                chart.dot(*run[-1])
        if len(run) > 1:
            chart.line(run)
        ax.frame()
        chart.vertical_text(10, (ax.y0 + ax.y1) / 2, label, LABEL_PX - 1, ax.y1 - ax.y0)
    chart.text(chart.width / 2, 8, title, TITLE_PX, anchor="ma")
    chart.text((ax.x0 + ax.x1) / 2, chart.height - 6, xlabel, LABEL_PX, anchor="md")
    chart.save(path)
