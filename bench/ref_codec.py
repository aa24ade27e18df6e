#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The shuffle payload of bench/bench_codec.c through the Python reference.

Run with /usr/bin/python3 (Debian's python3-partd).  Reads the payload that
`bench_codec --payload FILE` wrote (the same chunks, partitions and append
batches: one append call carries one chunk per partition) and runs it
through partd.File and the reference's Snappy(File), ZLib(File),
Blosc(File) (and BZ2(File) with --bz2): MB/s of raw payload for append and
get (one get per partition), and the compression ratio (raw bytes / bytes in
the store's files).  Median [min-max] of --runs runs after one warm-up run
that also checks every partition read back.  With --csv FILE, appends one
line per row in bench_codec's CSV columns (impl "reference").

    /usr/bin/python3 bench/ref_codec.py --payload FILE [--runs N] [--quick]
        [--dir D] [--csv FILE] [--bz2] [--codec LABEL]
"""

import argparse
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time

try:
    import partd
    from partd.compressed import Blosc, Snappy, ZLib, BZ2
except ImportError as exc:  # the comparison is optional
    print("ref_codec: Python partd not importable (%s): skipped" % exc)
    sys.exit(0)


def read_payload(path):
    with open(path, 'rb') as f:
        data = f.read()
    if data[:8] != b'PDCODEC1':
        sys.exit('ref_codec: %s is not a bench_codec payload' % path)
    nparts, nchunks = struct.unpack_from('<II', data, 8)
    off = 16
    chunks = []
    for _ in range(nchunks):
        part, n = struct.unpack_from('<II', data, off)
        off += 8
        chunks.append((part, data[off:off + n]))
        off += n
    calls = [{'p%02d' % p: v for p, v in chunks[b:b + nparts]}
             for b in range(0, nchunks, nparts)]
    want = {}
    for p, v in chunks:
        want.setdefault('p%02d' % p, []).append(v)
    want = {k: b''.join(v) for k, v in want.items()}
    return calls, want, sum(len(v) for _, v in chunks)


def stored_bytes(root):
    total = 0
    for d, _, files in os.walk(root):
        for f in files:
            if f != '.lock':
                total += os.path.getsize(os.path.join(d, f))
    return total


def one_run(make, calls, want, parent, check):
    root = tempfile.mkdtemp(suffix='.partd', dir=parent)
    try:
        store = make(partd.File(root))
        t0 = time.perf_counter()
        for call in calls:
            store.append(call)
        t_app = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = {k: store.get(k) for k in want}
        t_get = time.perf_counter() - t0
        if check:
            for k, v in want.items():
                if got[k] != v:
                    sys.exit('ref_codec: partition %s reads back wrong' % k)
        return t_app, t_get, stored_bytes(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--payload', required=True)
    ap.add_argument('--runs', type=int)
    ap.add_argument('--quick', action='store_true',
                    help='1 run (as bench_codec --quick)')
    ap.add_argument('--dir', default=os.environ.get('TMPDIR') or '/tmp')
    ap.add_argument('--csv')
    ap.add_argument('--bz2', action='store_true')
    ap.add_argument('--codec', help='only this row (e.g. snappy)')
    a = ap.parse_args()
    if a.runs is None:
        a.runs = 1 if a.quick else 5
    calls, want, total = read_payload(a.payload)
    mb = total / 1e6
    impls = [('none (File)', lambda f: f), ('snappy', Snappy),
             ('zlib', ZLib), ('blosc', Blosc)]
    if a.bz2:
        impls.append(('bz2', BZ2))
    if a.codec:
        impls = [i for i in impls if i[0] == a.codec]
    print('ref_codec: payload %.1f MB in %d calls of %d partitions, %d run(s) '
          '+ warm-up, stores under %s' % (mb, len(calls), len(want), a.runs,
                                          a.dir))
    print('\n== reference (Python partd %s): shuffle payload through '
          'Codec(File) (MB/s of raw payload, median [min-max])'
          % getattr(partd, '__version__', '?'))
    print('%-12s %24s %24s %8s' % ('codec', 'append MB/s', 'get MB/s',
                                   'ratio'))
    csv = open(a.csv, 'a') if a.csv else None
    for label, make in impls:
        apps, gets, ratio = [], [], 0.0
        for run in range(-1, a.runs):
            t_app, t_get, stored = one_run(make, calls, want, a.dir, run < 0)
            ratio = total / stored
            if run >= 0:
                apps.append(t_app)
                gets.append(t_get)
        ma, mg = statistics.median(apps), statistics.median(gets)
        print('%-12s %24s %24s %8.2f' % (
            label,
            '%.0f [%.0f-%.0f]' % (mb / ma, mb / max(apps), mb / min(apps)),
            '%.0f [%.0f-%.0f]' % (mb / mg, mb / max(gets), mb / min(gets)),
            ratio))
        if csv:
            for op, v in (('append', apps), ('get', gets)):
                m = statistics.median(v)
                csv.write('reference,file,%s,%s,%.6f,%.6f,%.6f,%.1f,,,%.4f\n'
                          % (label, op, m, min(v), max(v), mb / m, ratio))
    if csv:
        csv.close()
        print('csv: %s (appended)' % a.csv)
    return 0


if __name__ == '__main__':
    sys.exit(main())
