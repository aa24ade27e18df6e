#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The workloads of bench/bench_core.c, run on the Python reference (partd).

Run with /usr/bin/python3 (the interpreter that has Debian's python3-partd).
Measures the same append/get workloads as bench_core on partd.File,
partd.Dict and partd.Buffer(partd.Dict(), partd.File(), limit), with the same
key names, value sizes, call batches and memory limits.  When given the JSON
that bench_core wrote (--c-json), it takes the workload sizes from it (so both
sides always run the same thing) and prints a combined table: libpartd's
median, the reference's median, and libpartd / reference.

Exits 0 with a message when partd cannot be imported (nothing to compare).

    /usr/bin/python3 bench/ref_core.py [--runs N] [--quick] [--dir D]
        [--c-json FILE] [--json FILE]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

try:
    import partd
except ImportError as exc:  # the comparison is optional
    print("ref_core: Python partd not importable (%s): skipped" % exc)
    sys.exit(0)


def defaults(quick):
    """The same sizes as s_cfg_defaults() in bench_core.c."""
    return {
        "nkeys": 200 if quick else 1000,
        "vsize": 100,
        "per_call": 100,
        "nvals": 20000 if quick else 200000,
        "buffer_limit": 64 << 20,
        "spill_limit": (512 << 10) if quick else (4 << 20),
        "big_size": 4 << 20,
        "big_keys": 4 if quick else 16,
        "big_rounds": 4,
    }


class Workload:
    """Append i puts value i (vsize bytes) under key i % nkeys, per_call
    appends per call; the calls are built as dicts before any timing."""

    def __init__(self, w):
        self.w = w
        self.names = ["k%04d" % k for k in range(w["nkeys"])]
        pool = os.urandom(w["nvals"] * w["vsize"])
        vs = w["vsize"]
        self.calls = []
        for start in range(0, w["nvals"], w["per_call"]):
            stop = min(start + w["per_call"], w["nvals"])
            self.calls.append({self.names[i % w["nkeys"]]: pool[i * vs:(i + 1) * vs]
                               for i in range(start, stop)})
        self.per_key = (w["nvals"] // w["nkeys"]) * vs
        # 4 MiB values: 16 distinct blocks, value (round r, key k) is block
        # (r + k) % 16, big_keys keys per call.
        blocks = [os.urandom(w["big_size"]) for _ in range(16)]
        bnames = ["big%02d" % k for k in range(w["big_keys"])]
        self.big_calls = [{bnames[k]: blocks[(r + k) % 16]
                           for k in range(w["big_keys"])}
                          for r in range(w["big_rounds"])]
        self.big_bytes = w["big_keys"] * w["big_rounds"] * w["big_size"]


def run_appends(store, wl):
    t0 = time.perf_counter()
    for call in wl.calls:
        store.append(call)
    return wl.w["nvals"] / (time.perf_counter() - t0)


def run_gets(store, wl):
    total = 0
    t0 = time.perf_counter()
    for name in wl.names:
        total += len(store.get(name))
    dt = time.perf_counter() - t0
    if total != wl.per_key * len(wl.names):
        raise RuntimeError("gets returned %d bytes, expected %d"
                           % (total, wl.per_key * len(wl.names)))
    return len(wl.names) / dt


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


# As in bench_core: the small-value section's directories are removed at its
# end, not after each round, because creating files on ext4 right after many
# deletions is slow (the inode allocator skips recently deleted inodes) and
# the benchmark would measure its own deletions.
TRASH = []


def new_file(d, defer=True):
    # A fresh directory per round.
    path = tempfile.mkdtemp(suffix=".partd", dir=d)
    if defer:
        TRASH.append(path)
    return partd.File(path)


def empty_trash():
    while TRASH:
        rmtree(TRASH.pop())


def round_file(wl, d, res):
    f = new_file(d)
    res["file_append"].append(run_appends(f, wl))
    res["file_get"].append(run_gets(f, wl))
    res["file_append_warm"].append(run_appends(f, wl))


def round_dict(wl, d, res):
    p = partd.Dict()
    res["dict_append"].append(run_appends(p, wl))
    res["dict_get"].append(run_gets(p, wl))


def round_buffer(wl, d, res, limit, prefix):
    f = new_file(d)
    b = partd.Buffer(partd.Dict(), f, available_memory=limit)
    res[prefix + "_append"].append(run_appends(b, wl))
    res[prefix + "_get"].append(run_gets(b, wl))


def round_big(wl, d, res):
    # Dropped after each round (256 MiB of page cache per round otherwise).
    f = new_file(d, defer=False)
    try:
        t0 = time.perf_counter()
        for call in wl.big_calls:
            f.append(call)
        res["file_append_4m"].append(wl.big_bytes / (time.perf_counter() - t0) / 1e9)
    finally:
        rmtree(f.path)


ROWS = [  # id, name, unit
    ("file_append", "File append, new store", "rec/s"),
    ("file_append_warm", "File append, keys exist (2nd pass)", "rec/s"),
    ("file_get", "File get (1 key per call)", "keys/s"),
    ("buffer_append", "Buffer(Dict,File,64MiB) append, no spill", "rec/s"),
    ("dict_append", "Dict append", "rec/s"),
    ("buffer_spill_append", "Buffer(Dict,File,small) append, spills", "rec/s"),
    ("dict_get", "Dict get (1 key per call)", "keys/s"),
    ("buffer_get", "Buffer(Dict,File,64MiB) get", "keys/s"),
    ("buffer_spill_get", "Buffer(Dict,File,small) get, spilled", "keys/s"),
    ("file_append_4m", "File append 4 MiB values", "GB/s"),
]


def fmt(x, unit):
    if x is None:
        return "-"
    if unit in ("GB/s", "MiB"):
        return "%.0f" % x if x >= 100 else "%.1f" % x if x >= 10 else "%.2f" % x
    sfx = ""
    for lim, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= lim:
            x /= lim
            sfx = s
            break
    return ("%.0f%s" if x >= 100 else "%.1f%s" if x >= 10 else "%.2f%s") % (x, sfx)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dir", default=os.environ.get("TMPDIR") or "/tmp")
    ap.add_argument("--c-json", help="bench_core's JSON: sizes + combined table")
    ap.add_argument("--json", help="write the reference's results here")
    a = ap.parse_args()

    cjson = None
    if a.c_json:
        with open(a.c_json) as fp:
            cjson = json.load(fp)
    w = defaults(a.quick if cjson is None else cjson["quick"])
    if cjson is not None:
        w.update({k: v for k, v in cjson["workload"].items() if k in w})
    runs = a.runs or (cjson["runs"] if cjson else (1 if a.quick else 5))

    print("ref_core: Python partd %s (%s), %d run(s) + warm-up, stores under %s"
          % (partd.__version__, platform.python_version(), runs, a.dir))
    sys.stdout.flush()
    wl = Workload(w)
    res = {rid: [] for rid, _, _ in ROWS}
    errors = {}
    # The same order as bench_core: 4 MiB values first, then small values.
    sections = [
        [("big", lambda r: round_big(wl, a.dir, r))],
        [("file", lambda r: round_file(wl, a.dir, r)),
         ("dict", lambda r: round_dict(wl, a.dir, r)),
         ("buffer", lambda r: round_buffer(wl, a.dir, r, w["buffer_limit"],
                                           "buffer")),
         ("buffer_spill", lambda r: round_buffer(wl, a.dir, r, w["spill_limit"],
                                                 "buffer_spill"))],
    ]
    try:
        for steps in sections:
            for run in range(runs + 1):  # run 0 is the warm-up, discarded
                target = res if run > 0 else {rid: [] for rid, _, _ in ROWS}
                for name, fn in steps:
                    if name in errors:
                        continue
                    try:
                        fn(target)
                    except Exception as exc:  # report, don't abort
                        errors[name] = "%s: %s" % (type(exc).__name__, exc)
            empty_trash()
    finally:
        empty_trash()

    out = {"tool": "ref_core", "partd_version": partd.__version__,
           "python": platform.python_version(), "runs": runs, "workload": w,
           "errors": errors, "rows": []}
    print("\n== Python reference (median [min-max] over %d runs)" % runs)
    print("%-44s %8s %-17s %s" % ("benchmark", "median", "[min-max]", "unit"))
    for rid, name, unit in ROWS:
        v = res[rid]
        med = statistics.median(v) if v else None
        row = {"id": rid, "name": name, "unit": unit, "median": med,
               "min": min(v) if v else None, "max": max(v) if v else None,
               "samples": v}
        out["rows"].append(row)
        rng = "[%s-%s]" % (fmt(row["min"], unit), fmt(row["max"], unit)) if v else "-"
        print("%-44s %8s %-17s %s" % (name, fmt(med, unit), rng, unit))
    for name, msg in errors.items():
        print("    error in %s: %s" % (name, msg))

    if cjson is not None:
        cmed = {r["id"]: r["median"] for r in cjson["rows"]}
        print("\n== libpartd vs Python reference, same machine, same run of bench/run")
        print("%-44s %10s %10s %-7s %12s" % ("benchmark", "libpartd", "reference",
                                            "unit", "lib / ref"))
        for row in out["rows"]:
            c, r = cmed.get(row["id"]), row["median"]
            ratio = "%.1fx" % (c / r) if c and r else "-"
            print("%-44s %10s %10s %-7s %12s" % (row["name"], fmt(c, row["unit"]),
                                                fmt(r, row["unit"]), row["unit"], ratio))
            row["libpartd_median"] = c
            row["libpartd_over_reference"] = c / r if c and r else None

    if a.json:
        with open(a.json, "w") as fp:
            json.dump(out, fp, indent=2)
        print("json: %s" % a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
