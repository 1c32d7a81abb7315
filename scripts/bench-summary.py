#!/usr/bin/env python3
"""Prints the medians of the last criterion run, with each function's ratio
to its group's baseline (`memcpy` in the pipeline groups, the 10-route
`tables` lookup for the LPM groups).

Usage: scripts/bench-summary.py [TARGET_DIR]   (default: target)
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target") / "criterion"
rows = {}
for est in sorted(root.glob("**/new/estimates.json")):
    # criterion stores group "a/b" with function "f" as a_b/f/new/.
    group, fn = est.parent.parent.relative_to(root).parts[:2]
    rows.setdefault(group, {})[fn] = json.loads(est.read_text())["median"]["point_estimate"]


def key(g):
    name, _, size = g.rpartition("_")
    return (name, int(size) if size.isdigit() else 0)


for group in sorted(rows, key=key):
    fns = rows[group]
    base = fns.get("memcpy")
    cells = []
    for fn, ns in sorted(fns.items()):
        cell = f"{fn} {ns:.1f} ns"
        if base and fn != "memcpy":
            cell += f" ({ns / base:.2f}x memcpy)"
        cells.append(cell)
    print(f"{group:24} " + " | ".join(cells))
