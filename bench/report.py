#!/usr/bin/env python3
"""Turn one bench/run.sh results directory into summary.md, results.csv and results.json, or
compare two of them.

usage: report.py RESULTS_DIR
       report.py --compare RESULTS_A RESULTS_B

Reads what run.sh left there: cells.tsv (workload, builder, status, disk), workloads.tsv (name,
mode, context, label), per cell ID=WORKLOAD-BUILDER (WORKLOAD-BUILDER-fresh on the fresh disk)
the hyperfine export ID.json, ID.rss (GNU time's peak RSS of each run, KiB), for BuildKit
ID.daemon-idle / ID.daemon-peak (summed RSS of the daemons, KiB), and layer.tsv with the
layer-writing runs (layer-DATA-WRITER.json/.rss). Prints summary.md.

--compare reads each folder's results.json and prints, per cell of both, B's median against
A's and rbuild's ratio to each peer in A and in B; a cell whose rbuild median or ratio grew by
more than 10% is marked "slower".
"""
import csv
import json
import os
import statistics
import sys



def labels(p, res):
    """What each workload does, with the sizes this run used: run.sh's workloads.tsv, else (an
    older results folder) the labels of that time."""
    listed = {}
    for line in (read(os.path.join(res, "workloads.tsv"), "") or "").splitlines():
        parts = line.split("\t")
        if len(parts) == 4:
            listed[parts[0]] = parts[3]
    if listed:
        return listed
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
    out = {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": len(times),
        "times_s": times,
        "user_s": r.get("user"),
        "system_s": r.get("system"),
    }
    if len(times) >= 4:
        q = statistics.quantiles(times, n=4)
        out["q1_s"], out["q3_s"] = q[0], q[2]
    return out


def spread(r):
    """min–max, and the interquartile range when there are runs enough for one."""
    text = f"{r['min_s']:.2f}–{r['max_s']:.2f}"
    if "q1_s" in r:
        text += f" (IQR {r['q1_s']:.2f}–{r['q3_s']:.2f})"
    return text


def main(res):
    what = labels(json.loads(read(os.path.join(res, "params.json"), "{}") or "{}"), res)
    rows = []
    for line in (read(os.path.join(res, "cells.tsv"), "") or "").splitlines():
        w, b, status, *rest = line.split("\t")
        disk = rest[0] if rest else "host"
        # disk "-": a reference outside the builders (skopeo), compared with rbuild on every disk
        cid = f"{w}-{b}" if disk in ("host", "-") else f"{w}-{b}-{disk}"
        row = {"workload": w, "builder": b, "disk": disk, "status": status}
        t = timing(res, cid) if status == "ok" else None
        if t:
            row.update(t)
        row["peak_rss_kib"] = peak_kib(os.path.join(res, cid + ".rss"))
        idle = peak_kib(os.path.join(res, cid + ".daemon-idle"))
        peak = peak_kib(os.path.join(res, cid + ".daemon-peak"))
        if idle is not None and peak:
            row["daemon_idle_kib"], row["daemon_peak_kib"] = idle, peak
        rows.append(row)

    median = {(r["workload"], r["disk"], r["builder"]): r["median_s"] for r in rows if "median_s" in r}
    disks = {}
    for r in rows:
        if r["disk"] != "-":
            disks.setdefault(r["workload"], []).append(r["disk"])
    for (w, d, b), value in list(median.items()):
        if d == "-":
            del median[(w, d, b)]
            for disk in dict.fromkeys(disks.get(w, ["host"])):
                median[(w, disk, b)] = value
    for r in rows:
        on = disks.get(r["workload"], ["host"])[0] if r["disk"] == "-" else r["disk"]
        mine = median.get((r["workload"], on, "rbuild"))
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
    out.append("| workload | disk | builder | median s | spread s | runs | peak RSS | daemons' RSS idle → peak | rbuild ÷ this |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    shown = set()
    for r in rows:
        label = r["workload"] if r["workload"] in shown else f"{r['workload']} {what.get(r['workload'], '')}"
        shown.add(r["workload"])
        if "median_s" not in r:
            out.append(f"| {label} | {r['disk']} | {r['builder']} | {r['status']} | | | | | |")
            continue
        daemon = "-"
        if "daemon_peak_kib" in r:
            delta = r["daemon_peak_kib"] - r["daemon_idle_kib"]
            daemon = f"{mib(r['daemon_idle_kib'])} → {mib(r['daemon_peak_kib'])} (+{delta / 1024:.0f})"
        ratio = f"{r['rbuild_ratio']:.2f}" if "rbuild_ratio" in r else "-"
        out.append(
            f"| {label} | {r['disk']} | {r['builder']} | {r['median_s']:.2f} | {spread(r)} | "
            f"{r['runs']} | {mib(r['peak_rss_kib'])} | {daemon} | {ratio} |"
        )
    builders = list(dict.fromkeys(r["builder"] for r in rows))
    peers = [b for b in builders if b != "rbuild"]
    if "rbuild" in builders and peers:
        out.append("")
        out.append("rbuild's median divided by each peer's (below 1: rbuild is faster):")
        out.append("")
        out.append("| workload | disk | " + " | ".join(f"{b} s" for b in builders) + " | "
                   + " | ".join(f"rbuild ÷ {b}" for b in peers) + " |")
        out.append("|---" * (2 + len(builders) + len(peers)) + "|")
        for w, d in dict.fromkeys((r["workload"], r["disk"]) for r in rows if r["disk"] != "-"):
            cells = [f"{median[(w, d, b)]:.2f}" if (w, d, b) in median else "-" for b in builders]
            ratios = [f"{median[(w, d, 'rbuild')] / median[(w, d, b)]:.2f}"
                      if (w, d, "rbuild") in median and (w, d, b) in median else "-" for b in peers]
            out.append(f"| {w} | {d} | " + " | ".join(cells + ratios) + " |")
    w5 = [r for r in rows if r["workload"] in ("W5", "W5z") and r["builder"] == "rbuild" and r["peak_rss_kib"]]
    if w5:
        out.append("")
        for r in w5:
            verdict = "under" if r["peak_rss_kib"] < 100 * 1024 else "OVER"
            out.append(f"rbuild peak RSS on {r['workload']} ({r['disk']} disk): {mib(r['peak_rss_kib'])} "
                       f"({verdict} the 100 MiB limit)")
    if layer:
        out.append("")
        out.append("Layer writing, same data (one file, as W5's layer): rbuild's `Store::write_layer` "
                   "(tar + sha256 + compression + blob fsync, `store/benches/layer_throughput.rs`) "
                   "against `tar -c | pigz > file`. MB/s = 10^6 bytes of input per second.")
        out.append("")
        out.append("| data | writer | median s | spread s | MB/s | peak RSS |")
        out.append("|---|---|---|---|---|---|")
        for r in layer:
            if "median_s" not in r:
                out.append(f"| {r['data']} | {r['writer']} | {r['status']} | | | |")
                continue
            out.append(
                f"| {r['data']} {r['input_bytes'] / 2**20:.0f} MiB | {r['writer']} | {r['median_s']:.2f} | "
                f"{spread(r)} | {r['mb_per_s']:.0f} | {mib(r['peak_rss_kib'])} |"
            )
    summary = "\n".join(out) + "\n"
    with open(os.path.join(res, "summary.md"), "w") as f:
        f.write(summary)

    fields = ["workload", "builder", "disk", "status", "median_s", "min_s", "max_s", "q1_s", "q3_s", "runs",
              "user_s", "system_s",
              "peak_rss_kib", "daemon_idle_kib", "daemon_peak_kib", "rbuild_ratio"]
    with open(os.path.join(res, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(res, "results.json"), "w") as f:
        json.dump({"machine": read(os.path.join(res, "machine.txt"), ""),
                   "params": json.loads(read(os.path.join(res, "params.json"), "{}") or "{}"),
                   "workloads": what, "cells": rows, "layer_writing": layer},
                  f, indent=1)
    sys.stdout.write(summary)


def load_medians(res):
    """(workload, disk, builder) -> median seconds, from a results folder's results.json."""
    text = read(os.path.join(res, "results.json"))
    if text is None:
        sys.exit(f"{res}: no results.json (not a bench/run.sh results folder, or its report did not run)")
    cells = json.loads(text)["cells"]
    return {(c["workload"], c.get("disk", "host"), c["builder"]): c["median_s"] for c in cells if "median_s" in c}


def compare(a_dir, b_dir):
    """Print B against A, cell by cell: absolute medians and rbuild's ratio to each peer."""
    a, b = load_medians(a_dir), load_medians(b_dir)
    out = [f"A = {a_dir}", f"B = {b_dir}", "",
           "| workload | disk | builder | A s | B s | B ÷ A | rbuild ÷ this, A | B | B ÷ A | |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    slower = 0
    for key in dict.fromkeys(list(a) + list(b)):
        w, d, builder = key
        if key not in a or key not in b:
            where = "A" if key in a else "B"
            out.append(f"| {w} | {d} | {builder} | {a.get(key, '-')} | {b.get(key, '-')} | only in {where} | | | | |")
            continue
        change = b[key] / a[key]
        ratio_a = ratio_b = ratio_change = None
        mine = (w, d, "rbuild")
        if builder != "rbuild" and mine in a and mine in b:
            ratio_a, ratio_b = a[mine] / a[key], b[mine] / b[key]
            ratio_change = ratio_b / ratio_a
        note = ""
        if (builder == "rbuild" and change > 1.10) or (ratio_change is not None and ratio_change > 1.10):
            note, slower = "slower", slower + 1
        fmt = (lambda x: "-" if x is None else f"{x:.3f}")
        out.append(f"| {w} | {d} | {builder} | {a[key]:.2f} | {b[key]:.2f} | {change:.2f} | "
                   f"{fmt(ratio_a)} | {fmt(ratio_b)} | {fmt(ratio_change)} | {note} |")
    out.append("")
    out.append(f"{slower} cell(s) where rbuild's median or its ratio to a peer grew by more than 10% from A to B."
               if slower else "No cell where rbuild's median or its ratio to a peer grew by more than 10%.")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        sys.exit(__doc__)
