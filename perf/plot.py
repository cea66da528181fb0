"""Throughput vs p99 latency, one line per model (or per run), each point labelled with its load."""
from __future__ import annotations

from pathlib import Path

from perf.csvfmt import Row, format_load


def save_figure(fig, path: Path) -> Path:  # fig: matplotlib.figure.Figure
    """Lay out, write (creating the folder) and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_throughput_latency(results: dict[str, list[Row]], path: Path, title: str, load_name: str = "c") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for name, rows in results.items():
        rows = sorted(rows, key=lambda r: r.load)
        if not rows:
            continue
        xs, ys = [r.throughput for r in rows], [r.p99_us / 1000 for r in rows]
        ax.plot(xs, ys, marker="o", label=name)
        for r, x, y in zip(rows, xs, ys):
            ax.annotate(f"{load_name}={format_load(r.load)}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("throughput (inferences/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return save_figure(fig, path)
