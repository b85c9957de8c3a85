#!/usr/bin/env python3
"""perf/plot-latency.py — latency by percentile from `braid bench zk --json` files, as SVG.

One curve per file (its "label", or the file name): latency (log scale, ms) against the
percentile on HdrHistogram's axis, log10(1/(1-p)), so 90%, 99%, 99.9%, ... are equally spaced
and the tail gets the room it needs. Labels of perf/compare-zk.sh ("zk3 set", "braid3 set")
pair up: one color per size and workload, ZooKeeper dashed, Braid solid. Written with the
standard library only.

Usage:
  perf/plot-latency.py [--op all|create|set|get|exists|watch] [--title T] --out FILE.svg RUN.json...
--op picks the histogram: all ops (default), one op type, or watch events.
"""

import argparse
import json
import math
import os

WIDTH, HEIGHT = 900, 520
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 50, 60
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]


def series(run, op):
    """The [percentile, µs] points of one run's chosen histogram."""
    if op == "all":
        return run["latency_us"]["percentiles"]
    if op == "watch":
        return run["watch"]["latency_us"]["percentiles"]
    return run["by_op"].get(op, {}).get("latency_us", {}).get("percentiles", [])


def x_of(percentile, x_max):
    """HdrHistogram's percentile axis: log10(1 / (1 - p)); 100% sits at the axis end."""
    if percentile >= 100.0:
        return x_max
    return min(math.log10(100.0 / (100.0 - percentile)), x_max)


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plot(curves, title):
    """curves: [(label, [(percentile, µs)])] -> SVG text."""
    finite = [p for _, points in curves for p, _ in points if p < 100.0]
    x_max = max(3, math.ceil(max((math.log10(100.0 / (100.0 - p)) for p in finite), default=3)))
    values_ms = [max(v, 1) / 1000.0 for _, points in curves for _, v in points]
    y_lo = 10.0 ** math.floor(math.log10(min(values_ms, default=0.1)))
    y_hi = 10.0 ** math.ceil(math.log10(max(values_ms, default=10.0)))
    if y_hi <= y_lo:
        y_hi = y_lo * 10
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x):
        return LEFT + plot_w * x / x_max

    def py(ms):
        return TOP + plot_h * (1 - (math.log10(ms) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    # Grid and axes: a vertical line per nine (90%, 99%, ...), a horizontal one per decade of ms.
    for decade in range(0, x_max + 1):
        x = px(decade)
        label = "0%" if decade == 0 else f"{100 - 100 / 10**decade:.{max(decade - 2, 0)}f}%"
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{label}</text>')
    decade = y_lo
    while decade <= y_hi * 1.0001:
        y = py(decade)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{decade:g}</text>')
        decade *= 10
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 18}" text-anchor="middle">percentile</text>')
    out.append(
        f'<text x="20" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 20 {TOP + plot_h / 2})">latency (ms, log scale)</text>'
    )
    colors = {}
    for i, (label, points) in enumerate(curves):
        system, _, rest = label.partition(" ")
        pair = (system.lstrip("abcdefghijklmnopqrstuvwxyz"), rest)
        color = colors.setdefault(pair, COLORS[len(colors) % len(COLORS)])
        dash = ' stroke-dasharray="6,4"' if system.startswith("zk") else ""
        path = " ".join(
            f"{'M' if j == 0 else 'L'}{px(x_of(p, x_max)):.1f},{py(max(v, 1) / 1000.0):.1f}"
            for j, (p, v) in enumerate(points)
        )
        out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        y = TOP + 16 + 18 * i
        out.append(
            f'<line x1="{LEFT + 12}" y1="{y - 4}" x2="{LEFT + 36}" y2="{y - 4}" stroke="{color}" stroke-width="3"{dash}/>'
        )
        out.append(f'<text x="{LEFT + 42}" y="{y}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", default="all", choices=["all", "create", "set", "get", "exists", "watch"])
    parser.add_argument("--title", default="latency by percentile")
    parser.add_argument("--out", required=True)
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    curves = []
    for path in args.runs:
        run = json.load(open(path))
        points = series(run, args.op)
        if points:
            curves.append((run.get("label") or os.path.basename(path), points))
    if not curves:
        raise SystemExit(f"no {args.op} latency in {', '.join(args.runs)}")
    with open(args.out, "w") as f:
        f.write(plot(curves, args.title))


if __name__ == "__main__":
    main()
