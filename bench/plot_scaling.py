#!/usr/bin/python3
"""Draw how build time grows with the size of the work, from a `bench/run.sh --scaling` results
folder: scaling.svg and scaling.png beside its results.json.

usage: plot_scaling.py RESULTS_DIR

Four panels, log-log: a cold COPY of N files + one RUN (W2xN), the no-op rebuild (W3xN), the
one-file-edit rebuild (W4xN), and N RUN steps cold (W1xN); one line per builder (solid on the
fresh disk, dashed on the host's), the median with a bar from the fastest to the slowest run.
Needs matplotlib (Debian's python3-matplotlib, which run.sh installs for --scaling).
"""
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)

PANELS = [
    ("W2", "cold: COPY . of N files + one RUN", "files in the context"),
    ("W3", "no-op rebuild", "files in the context"),
    ("W4", "rebuild after a one-file edit", "files in the context"),
    ("W1", "N RUN steps, cold", "RUN steps"),
]
COLOURS = {"rbuild": "#1b7837", "buildkit": "#2166ac", "buildah": "#b2182b"}


def main(res):
    with open(os.path.join(res, "results.json")) as f:
        cells = [c for c in json.load(f)["cells"] if "median_s" in c]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    drawn = 0
    for ax, (shape, title, xlabel) in zip(axes.flat, PANELS):
        series = {}
        for c in cells:
            m = re.fullmatch(shape + r"x(\d+)", c["workload"])
            if m:
                series.setdefault((c["builder"], c.get("disk", "host")), []).append((int(m.group(1)), c))
        for (builder, disk), points in sorted(series.items()):
            points.sort(key=lambda p: p[0])
            xs = [n for n, _ in points]
            med = [c["median_s"] for _, c in points]
            low = [c["median_s"] - c["min_s"] for _, c in points]
            high = [c["max_s"] - c["median_s"] for _, c in points]
            ax.errorbar(xs, med, yerr=[low, high], marker="o", capsize=3,
                        linestyle="-" if disk == "fresh" else "--",
                        color=COLOURS.get(builder), label=f"{builder} ({disk} disk)")
            drawn += 1
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds (median, min–max)")
        ax.grid(True, which="both", alpha=0.3)
        if series:
            ax.legend(fontsize=8)
    if not drawn:
        sys.exit(f"{res}: no W1x/W2x/W3x/W4x cells with timings (not a --scaling run?)")
    fig.suptitle("How build time grows with the work (bench/run.sh --scaling)")
    fig.tight_layout()
    fig.savefig(os.path.join(res, "scaling.svg"))
    fig.savefig(os.path.join(res, "scaling.png"), dpi=90)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
