"""Figures: matplotlib with the Agg backend (files only, the same output everywhere), as PNG bytes.

One setup for every figure of the project: the exploration report's charts and image grids, a
training run's curves (``draw_curves``) and its confusion matrix (``draw_confusion``). Each
``draw_*`` returns a figure; :func:`png_bytes` renders it (110 dpi, tight box) and closes it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np

from metdata.core.counts import MISSING, NO_CLASS, ranked, top_n
from metdata.core.statuses import WITH_RECORD

_GREY = "#9e9e9e"
_COLORS = ("#3b6ea8", "#e0873a", "#5a9e5a")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, the same output everywhere
    import matplotlib.pyplot as plt

    return plt


def short(text: object, width: int = 40) -> str:
    """The text cut to ``width`` characters, an ellipsis marking the cut.

    >>> short("Folio from an illustrated manuscript", 12)
    'Folio from …'
    """
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _nothing(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _barh(
    ax,
    items: Sequence[tuple[object, int]],
    title: str,
    xlabel: str,
    color: str | Mapping[str, str] = _COLORS[0],
    slots: int = 0,
) -> None:
    """Horizontal bars, largest at the top, with their counts; grey for missing or unclassified.

    ``color`` may map names to colours; ``slots`` keeps bars as thick as those of a panel
    beside it with that many (the short panel's bars stay at the top).
    """
    ax.set_title(title, fontsize=11)
    if not items:
        _nothing(ax, "nothing to show")
        return
    names = [short(name) for name, _ in items]
    values = [count for _, count in items]
    colors = [
        _GREY
        if name in (MISSING, NO_CLASS)
        else color.get(str(name), _COLORS[1])
        if isinstance(color, Mapping)
        else color
        for name, _ in items
    ]
    bars = ax.barh(range(len(items)), values, color=colors)
    ax.set_yticks(range(len(items)), names, fontsize=8)
    ax.set_ylim(max(slots, len(items)) - 0.4, -0.6)  # largest at the top
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=2, fontsize=7)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.margins(x=0.15)
    _count_axis(ax)


def _count_axis(ax) -> None:
    """Whole counts with thousands separators on the x axis, light vertical grid lines."""
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


def _rows_height(n: int) -> float:
    return 1.4 + 0.27 * max(n, 3)


def draw_collection(collection: Mapping) -> object:
    """Records by department, with those having an image URL and those in the public domain."""
    plt = _pyplot()
    departments = list(collection["departments"].items())
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.42 * max(len(departments), 3)))
    if not departments:
        _nothing(ax, "no records")
    else:
        y = np.arange(len(departments))
        height = 0.27
        series = [("records", "records"), ("with_image_url", "with an image URL"), ("public_domain", "public domain")]
        for i, (key, label) in enumerate(series):
            values = [entry[key] for _, entry in departments]
            bars = ax.barh(y + (i - 1) * height, values, height, label=label, color=_COLORS[i])
            if key == "records":
                ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=2, fontsize=7)
        ax.set_yticks(y, [short(name, 45) for name, _ in departments], fontsize=8)
        ax.set_ylim(len(departments) - 0.5, -0.5)
        ax.set_xlabel("records", fontsize=9)
        ax.margins(x=0.1)
        ax.legend(loc="lower right", fontsize=8)
        _count_axis(ax)
    ax.set_title(
        f"Records by department\n{collection['records']:,} records of {collection['objects']:,} ids looked up; "
        f"{collection['with_image_url']:,} with an image URL, {collection['public_domain']:,} public domain",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def _status_axis(ax, counter: Mapping, title: str, slots: int) -> None:
    items = ranked(counter)
    _barh(ax, items, title, "count", {status: _COLORS[2] for status in WITH_RECORD}, slots)
    values = [v for _, v in items if v > 0]
    if values and max(values) / min(values) > 50:  # a few failures next to many successes stay visible
        ax.set_xscale("log")
        ax.set_xlabel("count (log scale)", fontsize=9)
        ax.set_xlim(0.8, max(values) * 4)


def draw_statuses(object_statuses: Mapping, image_statuses: Mapping | None) -> object:
    """Ingestion statuses (rows of ``objects/``) and, when built, image statuses (slots)."""
    plt = _pyplot()
    panels = 1 if image_statuses is None else 2
    n = max(len(object_statuses), len(image_statuses or {}))
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, max(2.8, _rows_height(n))), squeeze=False)
    _status_axis(axes[0][0], object_statuses, f"Ingestion: {sum(object_statuses.values()):,} ids by status", n)
    if image_statuses is not None:
        _status_axis(axes[0][1], image_statuses, f"Images: {sum(image_statuses.values()):,} slots by status", n)
    fig.tight_layout()
    return fig


def draw_pair(left: Mapping, right: Mapping, titles: tuple[str, str], top: int, what: str = "records") -> object:
    """Two horizontal bar charts side by side, each of its ``top`` largest counts."""
    plt = _pyplot()
    shown = [top_n(left, top), top_n(right, top)]
    n = max(len(items) for items, _, _ in shown)
    fig, axes = plt.subplots(1, 2, figsize=(13, _rows_height(n)))
    for column, (ax, (items, values_left, records_left), title) in enumerate(zip(axes, shown, titles, strict=True)):
        xlabel = (
            what
            if not values_left
            else f"{what} (top {len(items)}; {values_left:,} more values, {records_left:,} {what})"
        )
        _barh(ax, items, title, xlabel, _COLORS[column])
    fig.tight_layout()
    for ax, (items, _, _) in zip(axes, shown, strict=True):
        if 0 < len(items) < n:  # as thick bars as the long panel's, at the top, rather than a few fat ones
            box = ax.get_position()
            height = box.height * max(len(items), 2) / n
            ax.set_position([box.x0, box.y1 - height, box.width, height])
    return fig


def draw_sizes(sizes: Mapping[str, np.ndarray]) -> object:
    """Histograms of the original width, height, and width/height ratio of the ``ok`` images."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = [
        ("width", "original width (px)", "Width"),
        ("height", "original height (px)", "Height"),
        ("ratio", "width / height", "Aspect ratio"),
    ]
    for ax, (key, xlabel, title) in zip(axes, panels, strict=True):
        values = sizes[key]
        if not len(values):
            ax.set_title(title, fontsize=11)
            _nothing(ax, "no ok image")
            continue
        median = float(np.median(values))
        if key == "ratio":  # 1:2 and 2:1 equally far from square
            low, high = float(values.min()), float(values.max())
            bins = np.geomspace(low, high if high > low else low * 1.01, 31)
            ax.set_xscale("log")
            ticks = [t for t in (0.1, 0.2, 0.33, 0.5, 0.75, 1, 1.33, 2, 3, 5, 10) if low <= t <= high] or [1]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
        else:  # a few huge originals would squash every other bar into one
            cap = float(np.percentile(values, 99))
            beyond = int((values > cap).sum()) if float(values.max()) > 2 * cap else 0
            bins = np.linspace(float(values.min()), cap if beyond else float(values.max()) + 1, 31)
            if beyond:
                xlabel = f"{xlabel}; {beyond:,} above {cap:,.0f} px not shown"
        ax.hist(values, bins=bins, color=_COLORS[0], edgecolor="white")
        ax.axvline(
            median,
            color=_COLORS[1],
            linestyle="--",
            label=f"median {median:.2f}" if key == "ratio" else f"median {median:,.0f} px",
        )
        if key == "ratio":
            ax.axvline(1.0, color="#333333", linewidth=0.8, label="square")
        ax.legend(fontsize=8)
        ax.set_title(f"{title}, {len(values):,} images", fontsize=11)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("images", fontsize=9)
    fig.tight_layout()
    return fig


def _tile(ax, image: np.ndarray, caption: str | None = None) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if caption:
        ax.set_title(caption, fontsize=7, pad=2)


def draw_grid(images: np.ndarray, captions: Sequence[str], columns: int, title: str) -> object:
    """Images in a grid of ``columns`` columns, each captioned."""
    plt = _pyplot()
    rows = max(1, math.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.35 * columns, 1.5 * rows + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            _tile(ax, images[i], captions[i])
        else:
            ax.axis("off")
    if not len(images):
        _nothing(axes[0][0], "no valid image")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def draw_class_grid(
    by_class: Mapping[str, tuple[np.ndarray, Sequence[str]]], totals: Mapping[str, int], columns: int, title: str
) -> object:
    """One row per class: up to ``columns`` images of it, the class and its image count on the left."""
    plt = _pyplot()
    rows = max(1, len(by_class))
    fig, axes = plt.subplots(rows, columns, figsize=(1.35 * columns + 1.2, 1.5 * rows + 0.5), squeeze=False)
    for row, (cls, (images, captions)) in enumerate(by_class.items()):
        for col in range(columns):
            ax = axes[row][col]
            if col < len(images):
                _tile(ax, images[col], captions[col])
            else:
                ax.axis("off")
        first = axes[row][0]
        if not len(images):
            first.axis("on")
            _nothing(first, "no valid image")
            for spine in first.spines.values():
                spine.set_visible(False)
        first.set_ylabel(
            f"{short(cls, 24)}\n{totals.get(cls, 0):,} valid images",
            rotation=0,
            ha="right",
            va="center",
            fontsize=9,
            labelpad=8,
        )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def draw_curves(history: Sequence[Mapping]) -> object:
    """A training run's accuracy and loss per epoch, training and validation, side by side
    (``history.json``'s entries; the run's curves.png)."""
    plt = _pyplot()
    epochs = [h["epoch"] + 1 for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(epochs, [h.get(metric) for h in history], label=f"training {metric}")
        if any(f"val_{metric}" in h for h in history):
            ax.plot(epochs, [h.get(f"val_{metric}") for h in history], label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    return fig


def draw_confusion(matrix: np.ndarray, classes: Sequence[str]) -> object:
    """A confusion matrix (row true, column predicted) with its counts (the run's confusion-SIDE.png)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="black" if n < matrix.max() / 2 else "white")
    fig.tight_layout()
    return fig
