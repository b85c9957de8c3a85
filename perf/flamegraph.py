#!/usr/bin/env python3
"""perf/flamegraph.py — `perf script` output (stdin) to a flame graph (SVG, stdout), with no
other tool: stacks are folded per thread name (root at the bottom), each frame as wide as
the samples under it. Frames under 0.1% of the samples are left out. Hover a frame for its
name, samples and share.

usage: perf script -i perf.data | perf/flamegraph.py [TITLE] > profile.svg
"""
import html
import sys
import zlib
from collections import defaultdict

title = sys.argv[1] if len(sys.argv) > 1 else "flame graph"


def folded(lines):
    stacks = defaultdict(int)
    comm, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                stacks[tuple([comm] + frames[::-1])] += 1
            comm, frames = None, []
        elif not line.startswith((" ", "\t")):
            comm = line.split()[0] if line.split() else "?"
        else:
            parts = line.strip().split(" ", 1)
            symbol = parts[1] if len(parts) > 1 else parts[0]
            symbol = symbol.rsplit(" (", 1)[0].split("+0x")[0]
            frames.append(symbol if symbol != "[unknown]" else "?")
    if comm is not None:
        stacks[tuple([comm] + frames[::-1])] += 1
    return stacks


def tree(stacks):
    root = {"name": "all", "count": 0, "children": {}}
    for stack, count in stacks.items():
        root["count"] += count
        node = root
        for frame in stack:
            child = node["children"].setdefault(frame, {"name": frame, "count": 0, "children": {}})
            child["count"] += count
            node = child
    return root


def depth(node):
    return 1 + max((depth(c) for c in node["children"].values()), default=0)


def color(name):
    h = zlib.crc32(name.encode())
    return f"rgb({205 + h % 50},{(h >> 8) % 180 + 40},{(h >> 16) % 50})"


def main():
    stacks = folded(sys.stdin)
    root = tree(stacks)
    total = max(root["count"], 1)
    width, row = 1200, 16
    rows = depth(root)
    height = rows * row + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="14">{html.escape(title)} ({total} samples)</text>',
    ]

    def draw(node, x, level):
        w = width * node["count"] / total
        if node["count"] / total < 0.001:
            return
        y = height - (level + 1) * row
        label = html.escape(node["name"])
        share = 100 * node["count"] / total
        out.append(
            f'<g><title>{label} ({node["count"]} samples, {share:.2f}%)</title>'
            f'<rect x="{x:.1f}" y="{y}" width="{max(w - 0.5, 0.1):.1f}" height="{row - 1}" fill="{color(node["name"])}"/>'
        )
        chars = int(w / 7)
        if chars >= 3:
            text = node["name"] if len(node["name"]) <= chars else node["name"][: chars - 2] + ".."
            out.append(f'<text x="{x + 2:.1f}" y="{y + row - 4}">{html.escape(text)}</text>')
        out.append("</g>")
        cx = x
        for child in sorted(node["children"].values(), key=lambda c: c["name"]):
            draw(child, cx, level + 1)
            cx += width * child["count"] / total

    draw(root, 0.0, 0)
    out.append("</svg>")
    print("\n".join(out))


main()
