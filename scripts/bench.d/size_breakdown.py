#!/usr/bin/env python3
"""What each crate and module adds to the wasm, for scripts/bench's size section.

Reads `twiggy top -n 1000000 -f csv WASM` (a build with function names kept) on stdin
and prints a Markdown table of shallow bytes per owner, largest first. An item is
counted to the first `edgemeter::<module>` path in its name (for edge, rating, ledger,
flush, surface and usage: `edgemeter::<module>::<file>`), so a generic instance such as
`core::ptr::drop_in_place<edgemeter::rating::invoice::Invoice>` counts to the module
that made it; otherwise to the crate its name starts with. Data segments are `data`;
the name sections themselves (absent from the deployed build) are left out.

  size_breakdown.py [--top N]
"""

import argparse
import collections
import csv
import re
import sys

NESTED = {"edge", "rating", "ledger", "flush", "surface", "usage"}
OURS = re.compile(r"edgemeter::(\w+)(?:::(\w+))?")
LEADING = re.compile(r"[<&\s]*(?:mut\s+)?(?:dyn\s+)?([A-Za-z_][A-Za-z_0-9]*)")
# The Ledger and the rating endpoint: what a separate rating Worker would take out of
# the edge's bundle (the rating engine stays: the counter prices spend with it).
RATING_WORKER = re.compile(r"^edgemeter::(ledger|reconcile|invoice_numbers|edge::(ledger\w*|rating_api|invoice_numbers))$")


def owner(name: str) -> str | None:
    if '"function names"' in name or '"data names"' in name or name.startswith('"'):
        return None
    if name.startswith("data segment"):
        return "data"
    m = OURS.search(name)
    if m:
        module, file = m.group(1), m.group(2)
        if module in NESTED and file and file != "_":
            return f"edgemeter::{module}::{file}"
        return f"edgemeter::{module}"
    m = LEADING.match(name)
    return m.group(1) if m else "other"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    sizes: collections.Counter = collections.Counter()
    for row in csv.DictReader(sys.stdin):
        who = owner(row["Name"])
        if who is not None:
            sizes[who] += int(row["ShallowSize"])
    total = sum(sizes.values())
    if total == 0:
        print("twiggy reported no items", file=sys.stderr)
        return 1
    ours = sum(v for k, v in sizes.items() if k.startswith("edgemeter::"))
    rating = sum(v for k, v in sizes.items() if RATING_WORKER.match(k))
    print(f"Code and data without the name sections: {total} B. Counted to edgemeter's own "
          f"modules (their generic instances included): {ours} B ({100 * ours / total:.0f}%). "
          f"The Ledger and the rating endpoint (what a separate rating Worker would take "
          f"out): {rating} B ({100 * rating / total:.0f}%).")
    print()
    print("| owner | bytes (raw) | share |")
    print("|---|---:|---:|")
    for who, size in sizes.most_common(a.top):
        print(f"| `{who}` | {size} | {100 * size / total:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
