#!/usr/bin/env python3
"""Per-kernel table of an `ncu --csv` report: one line per profiled launch, its metrics.

  ncu --clock-control none --metrics gpu__time_duration.sum --csv PROGRAM > report.csv
  python3 tools/ncu_kernel_times.py report.csv [MAX_LINES]
"""
import csv
import sys


def main():
    rows = list(csv.reader(open(sys.argv[1])))
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
    names = rows[head]
    k, m, v, ident = (names.index(n) for n in ("Kernel Name", "Metric Name", "Metric Value", "ID"))
    launches = {}
    for r in rows[head + 1:]:
        if len(r) > v:
            launches.setdefault(r[ident], [r[k].split("(")[0][:64], {}])[1][r[m]] = r[v]
    for ident, (name, metrics) in list(launches.items())[:limit]:
        cells = " ".join(f"{key.split('.')[0]}={val}" for key, val in metrics.items())
        print(f"{ident:>4} {name:<64} {cells}")


if __name__ == "__main__":
    main()
