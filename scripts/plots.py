"""Shared helpers of the benchmark scripts: report paths, JSON results and PNG plots.

Plots use matplotlib's Agg backend (no display needed); every figure is written as a PNG
under ``build/reports`` and its path returned, so a script can list what it wrote.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "build" / "reports"

__all__ = ["REPO", "REPORTS", "bar_chart", "grouped_bars", "line_plot", "relpath",
           "repo_on_path", "write_json"]


def repo_on_path():
    """Make ``systolic`` (and ``sim``) importable when a script runs from a checkout."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def relpath(path):
    """``path`` relative to the repository when it lies inside it (for printed paths)."""
    path = Path(path).resolve()
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def write_json(name, data, folder=None):
    """Write ``data`` to ``<folder>/bench-<name>.json`` (default ``build/reports``);
    returns the path."""
    folder = Path(folder) if folder else REPORTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench-{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def line_plot(path, series, *, title, xlabel, ylabel, xticks=None, ylim=None,
              logx=False, logy=False, annotate=False, value_fmt="{:.2g}"):
    """One line per series.

    Parameters
    ----------
    path : path
        PNG to write.
    series : dict
        ``label -> (xs, ys)`` or ``label -> (xs, ys, style)`` with a matplotlib format
        string such as ``"o--"``.
    title, xlabel, ylabel : str
    xticks : sequence, optional
        Tick positions (and labels) of the x axis.
    ylim : (float, float), optional
    logx, logy : bool
        Logarithmic x axis (base 2), y axis (base 10).
    annotate : bool
        Write each point's value beside it.
    value_fmt : str
        Format of those values.

    Returns
    -------
    Path
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, spec in series.items():
        xs, ys = spec[0], spec[1]
        style = spec[2] if len(spec) > 2 else "o-"
        ax.plot(xs, ys, style, label=label)
        if annotate:
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(value_fmt.format(y), (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    if xticks is not None:
        ax.set_xticks(list(xticks))
        ax.set_xticklabels([str(x) for x in xticks])
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def bar_chart(path, labels, values, *, title, ylabel, limit=None, fmt="{:.0f}%"):
    """A bar per label with its value written on top.

    Parameters
    ----------
    path : path
    labels : sequence of str
    values : sequence of float
    title, ylabel : str
    limit : float, optional
        Draw a dashed line at this value (e.g. 100 % of a device).
    fmt : str
        Format of the value labels.

    Returns
    -------
    Path
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colors = ["tab:red" if limit is not None and v > limit else "tab:blue" for v in values]
    bars = ax.bar(list(labels), list(values), color=colors)
    for bar, v in zip(bars, values, strict=True):
        ax.annotate(fmt.format(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    if limit is not None:
        ax.axhline(limit, color="grey", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def grouped_bars(path, groups, series, *, title, ylabel, limit=None, fmt="{:.0f}%"):
    """Bars grouped by ``groups`` (x positions), one colour per series.

    Parameters
    ----------
    path : path
    groups : sequence of str
        Labels of the groups along the x axis.
    series : dict
        ``label -> values`` (one value per group).
    title, ylabel : str
    limit : float, optional
        Dashed reference line.
    fmt : str
        Format of the value labels.

    Returns
    -------
    Path
    """
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    n = max(1, len(series))
    width = 0.8 / n
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, list(values), width=width, label=label)
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(fmt.format(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    if limit is not None:
        ax.axhline(limit, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(list(groups))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
