#!/usr/bin/env python3
"""Turn one bench/run.sh results directory into summary.md, results.csv and results.json.

usage: report.py RESULTS_DIR

Reads what run.sh left there: cells.tsv (workload, builder, status), per cell ID=WORKLOAD-BUILDER
the hyperfine export ID.json, ID.rss (GNU time's peak RSS of each run, KiB), for BuildKit
ID.daemon-idle / ID.daemon-peak (summed RSS of the daemons, KiB), and layer.tsv with the
layer-writing runs (layer-DATA-WRITER.json/.rss). Prints summary.md.
"""
import csv
import json
import os
import statistics
import sys



def labels(p):
    """What each workload does, with the sizes this run used."""
    files, big, w5 = f"{p.get('small_files', 20000):,}", p.get("big_mib", 250), p.get("w5_mib", 512)
    w8 = f"{p.get('w8_files', 5000):,} files + {p.get('w8_mib', 100)} MiB"
    return {
        "W1": "20 RUN steps, cold",
        "W2": f"COPY . of {files} files + {big} MiB, cold",
        "W3": "no-op rebuild of W2",
        "W4": "one-file-edit rebuild of W2",
        "W5": f"{w5} MiB urandom RUN layer, build + archive",
        "W5z": f"{w5} MiB zero RUN layer, build + archive",
        "W6": "4 parallel 2 s stages + COPY --from, cold",
        "W7": f"pull of a {p.get('pull_mib', 96)} MiB-payload base from a local registry",
        "W8": f"one-file-edit rebuild, RUN reading a warm cache mount of {w8}",
        "W8c": f"cold runner given W8's cache mount ({w8}) by the last build "
               "(BuildKit cannot: a plain cold build)",
        "W10": f"cold runner building W2's context + 10 RUN steps from a registry cache "
               "(BuildKit: --cache-from an inline-cache image; rbuild-cold: no cache)",
    }




def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def peak_kib(path):
    values = [int(x) for x in (read(path, "") or "").split() if x.isdigit()]
    return max(values) if values else None


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:.0f} MiB"


def timing(res, cell_id):
    text = read(os.path.join(res, cell_id + ".json"))
    if not text:
        return None
    r = json.loads(text)["results"][0]
    times = r["times"]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": len(times),
        "times_s": times,
        "user_s": r.get("user"),
        "system_s": r.get("system"),
    }


def main(res):
    what = labels(json.loads(read(os.path.join(res, "params.json"), "{}") or "{}"))
    rows = []
    for line in (read(os.path.join(res, "cells.tsv"), "") or "").splitlines():
        w, b, status = line.split("\t")
        cid = f"{w}-{b}"
        row = {"workload": w, "builder": b, "status": status}
        t = timing(res, cid) if status == "ok" else None
        if t:
            row.update(t)
        row["peak_rss_kib"] = peak_kib(os.path.join(res, cid + ".rss"))
        idle = peak_kib(os.path.join(res, cid + ".daemon-idle"))
        peak = peak_kib(os.path.join(res, cid + ".daemon-peak"))
        if idle is not None and peak:
            row["daemon_idle_kib"], row["daemon_peak_kib"] = idle, peak
        rows.append(row)

    median = {(r["workload"], r["builder"]): r["median_s"] for r in rows if "median_s" in r}
    for r in rows:
        mine = median.get((r["workload"], "rbuild"))
        if r["builder"] != "rbuild" and mine and "median_s" in r:
            r["rbuild_ratio"] = mine / r["median_s"]

    layer = []
    for line in (read(os.path.join(res, "layer.tsv"), "") or "").splitlines():
        data, writer, size, status = line.split("\t")
        lid = f"layer-{data}-{writer}"
        row = {"data": data, "writer": writer, "input_bytes": int(size), "status": status}
        t = timing(res, lid) if status == "ok" else None
        if t:
            row.update(t)
            row["mb_per_s"] = int(size) / 1e6 / t["median_s"]
        row["peak_rss_kib"] = peak_kib(os.path.join(res, lid + ".rss"))
        layer.append(row)

    out = []
    out.append("| workload | builder | median s | min–max s | runs | peak RSS | daemons' RSS idle → peak | rbuild ÷ this |")
    out.append("|---|---|---|---|---|---|---|---|")
    shown = set()
    for r in rows:
        label = r["workload"] if r["workload"] in shown else f"{r['workload']} {what.get(r['workload'], '')}"
        shown.add(r["workload"])
        if "median_s" not in r:
            out.append(f"| {label} | {r['builder']} | {r['status']} | | | | | |")
            continue
        daemon = "-"
        if "daemon_peak_kib" in r:
            delta = r["daemon_peak_kib"] - r["daemon_idle_kib"]
            daemon = f"{mib(r['daemon_idle_kib'])} → {mib(r['daemon_peak_kib'])} (+{delta / 1024:.0f})"
        ratio = f"{r['rbuild_ratio']:.2f}" if "rbuild_ratio" in r else "-"
        out.append(
            f"| {label} | {r['builder']} | {r['median_s']:.2f} | {r['min_s']:.2f}–{r['max_s']:.2f} | "
            f"{r['runs']} | {mib(r['peak_rss_kib'])} | {daemon} | {ratio} |"
        )
    builders = list(dict.fromkeys(r["builder"] for r in rows))
    peers = [b for b in builders if b != "rbuild"]
    if "rbuild" in builders and peers:
        out.append("")
        out.append("rbuild's median divided by each peer's (below 1: rbuild is faster):")
        out.append("")
        out.append("| workload | " + " | ".join(f"{b} s" for b in builders) + " | "
                   + " | ".join(f"rbuild ÷ {b}" for b in peers) + " |")
        out.append("|---" * (1 + len(builders) + len(peers)) + "|")
        for w in dict.fromkeys(r["workload"] for r in rows):
            cells = [f"{median[(w, b)]:.2f}" if (w, b) in median else "-" for b in builders]
            ratios = [f"{median[(w, 'rbuild')] / median[(w, b)]:.2f}"
                      if (w, "rbuild") in median and (w, b) in median else "-" for b in peers]
            out.append(f"| {w} | " + " | ".join(cells + ratios) + " |")
    w5 = [r for r in rows if r["workload"] in ("W5", "W5z") and r["builder"] == "rbuild" and r["peak_rss_kib"]]
    if w5:
        out.append("")
        for r in w5:
            verdict = "under" if r["peak_rss_kib"] < 100 * 1024 else "OVER"
            out.append(f"rbuild peak RSS on {r['workload']}: {mib(r['peak_rss_kib'])} ({verdict} the 100 MiB limit)")
    if layer:
        out.append("")
        out.append("Layer writing, same data (one file, as W5's layer): rbuild's `Store::write_layer` "
                   "(tar + sha256 + compression + blob fsync, `store/benches/layer_throughput.rs`) "
                   "against `tar -c | pigz > file`. MB/s = 10^6 bytes of input per second.")
        out.append("")
        out.append("| data | writer | median s | min–max s | MB/s | peak RSS |")
        out.append("|---|---|---|---|---|---|")
        for r in layer:
            if "median_s" not in r:
                out.append(f"| {r['data']} | {r['writer']} | {r['status']} | | | |")
                continue
            out.append(
                f"| {r['data']} {r['input_bytes'] / 2**20:.0f} MiB | {r['writer']} | {r['median_s']:.2f} | "
                f"{r['min_s']:.2f}–{r['max_s']:.2f} | {r['mb_per_s']:.0f} | {mib(r['peak_rss_kib'])} |"
            )
    summary = "\n".join(out) + "\n"
    with open(os.path.join(res, "summary.md"), "w") as f:
        f.write(summary)

    fields = ["workload", "builder", "status", "median_s", "min_s", "max_s", "runs", "user_s", "system_s",
              "peak_rss_kib", "daemon_idle_kib", "daemon_peak_kib", "rbuild_ratio"]
    with open(os.path.join(res, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(res, "results.json"), "w") as f:
        json.dump({"machine": read(os.path.join(res, "machine.txt"), ""), "cells": rows, "layer_writing": layer},
                  f, indent=1)
    sys.stdout.write(summary)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
