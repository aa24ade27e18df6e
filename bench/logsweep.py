#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The Log store against File on `partd demo`, beside sequential page-cache
floors measured in the same run.

    /usr/bin/python3 bench/logsweep.py --partd build-bench/partd
        [--runs N] [--quick] [--records N] [--partitions LIST] [--dir D]
        [--csv FILE] [--json FILE]

Each point is `partd demo -q --records N --partitions P --store S [--direct]`
(100-byte records, 2 workers), for P in 1, 16, 64, 1024, 4096, 16384, 65536,
S in file and log, --direct (workers append to the store themselves) and
through the server (Buffer(Dict, S) with the demo's 256 MiB).  N is 4M (400
MB; 400k with --quick).  Reported per point: the shuffle's and the read
phase's MB/s (median of --runs, default 1, with min-max).

The floors, measured once per round between the demos and in the same
directory: writing the same number of bytes sequentially to one new file
with 1 MiB write() calls (the page cache's sequential write bandwidth: what
a store that writes every byte once, in order, cannot beat), and reading
them back from the page cache with 1 MiB read() calls into one buffer.
Rounds interleave every point, so drift on a noisy machine spreads over all
of them.

Exit status: 0 when every demo ran; 2 when one failed or its output could
not be parsed.
"""
import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

import report  # bench/ is sys.path[0] when run as a script
from report import machine

SHUFFLE = re.compile(r'^shuffle: .* ([\d.]+) MB/s, ([\d.]+) records/s$', re.M)
READ = re.compile(r'^read: .* ([\d.]+) MB/s, ([\d.]+) records/s$', re.M)
PARTS = (1, 16, 64, 1024, 4096, 16384, 65536)
RECSIZE = 100
CHUNK = 1 << 20


def floors(nbytes, tmpdir):
    """(write MB/s, read MB/s): nbytes written sequentially to a new file in
    1 MiB write() calls, then read back (cached) in 1 MiB read() calls."""
    buf = bytes(range(256)) * (CHUNK // 256)
    d = tempfile.mkdtemp(prefix='logsweep.', dir=tmpdir)
    path = os.path.join(d, 'floor')
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        left = nbytes
        t0 = time.perf_counter()
        while left > 0:
            left -= os.write(fd, buf if left >= CHUNK else buf[:left])
        tw = time.perf_counter() - t0
        os.close(fd)
        rb = bytearray(CHUNK)
        fd = os.open(path, os.O_RDONLY)
        got = 0
        t0 = time.perf_counter()
        with os.fdopen(fd, 'rb', buffering=0) as f:
            while True:
                n = f.readinto(rb)
                if not n:
                    break
                got += n
        tr = time.perf_counter() - t0
        assert got == nbytes, got
        return nbytes / 1e6 / tw, nbytes / 1e6 / tr
    finally:
        os.unlink(path) if os.path.exists(path) else None
        os.rmdir(d)


def run_demo(partd, records, parts, store, direct, tmpdir):
    cmd = [partd, 'demo', '-q', '--records', str(records), '--partitions',
           str(parts), '--store', store] + (['--direct'] if direct else [])
    out, s, r = report.run_demo(cmd, tmpdir, SHUFFLE, READ)
    return float(s.group(1)), float(r.group(1))


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--partd', required=True, help='the partd executable')
    ap.add_argument('--runs', type=int, default=1)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--records', type=int, default=None)
    ap.add_argument('--partitions', default=','.join(map(str, PARTS)))
    ap.add_argument('--dir', default=None, help='TMPDIR for the stores')
    ap.add_argument('--csv', default=None)
    ap.add_argument('--json', default=None)
    args = ap.parse_args()
    records = args.records or (400000 if args.quick else 4000000)
    parts = [int(x) for x in args.partitions.split(',') if x]
    if args.runs < 1 or records < 1 or not parts:
        sys.exit('logsweep.py: --runs, --records and --partitions must be '
                 'positive')
    tmpdir = args.dir or os.environ.get('TMPDIR') or '/tmp'
    info = machine()
    print('logsweep: partd demo -q, %d records of %d B, 2 workers, median '
          'of %d; %s, %d CPUs, Linux %s, load %.1f' % (
              records, RECSIZE, args.runs, info['cpu'], info['nproc'],
              info['kernel'], info['loadavg']), flush=True)
    points = [(p, s, d) for p in parts for s in ('file', 'log')
              for d in (True, False)]
    samples = {pt: [] for pt in points}
    fw, fr = [], []
    t0 = time.time()
    try:
        for _ in range(args.runs):
            w, r = floors(records * RECSIZE, tmpdir)
            fw.append(w)
            fr.append(r)
            for pt in points:
                samples[pt].append(run_demo(args.partd, records, pt[0], pt[1],
                                            pt[2], args.dir))
                print('  %6d partitions, %-4s %-7s shuffle %7.1f MB/s, read '
                      '%7.1f MB/s' % (pt[0], pt[1],
                                      'direct' if pt[2] else 'served',
                                      *samples[pt][-1]), flush=True)
            w, r = floors(records * RECSIZE, tmpdir)
            fw.append(w)
            fr.append(r)
    except RuntimeError as e:
        print('logsweep.py: demo failed: %s' % e, file=sys.stderr)
        return 2
    floor_w, floor_r = med(fw), med(fr)
    print('\nfloors (%d measurements, before and after each round): '
          'sequential write %.0f MB/s [%.0f-%.0f], cached read %.0f MB/s '
          '[%.0f-%.0f]' % (len(fw), floor_w, min(fw), max(fw), floor_r,
                           min(fr), max(fr)))
    print('%6s  %-4s %-7s %10s %18s %10s %8s %8s' % (
        'parts', 'kind', 'mode', 'MB/s', '[min-max]', 'read MB/s',
        '/wfloor', '/rfloor'))
    rows = []
    for pt in points:
        s = samples[pt]
        sh = [x[0] for x in s]
        rd = [x[1] for x in s]
        row = {'partitions': pt[0], 'store': pt[1],
               'mode': 'direct' if pt[2] else 'served', 'runs': len(s),
               'mb_s': med(sh), 'mb_s_min': min(sh), 'mb_s_max': max(sh),
               'read_mb_s': med(rd), 'read_mb_s_min': min(rd),
               'read_mb_s_max': max(rd), 'samples_mb_s': sh,
               'samples_read_mb_s': rd}
        rows.append(row)
        print('%6d  %-4s %-7s %10.1f %18s %10.1f %8.2f %8.3f' % (
            pt[0], pt[1], row['mode'], row['mb_s'],
            '[%.1f-%.1f]' % (min(sh), max(sh)), row['read_mb_s'],
            row['mb_s'] / floor_w, row['read_mb_s'] / floor_r))
    info['loadavg_end'] = os.getloadavg()[0]
    print('(%.0f s; load average %.1f at the start, %.1f at the end)' % (
        time.time() - t0, info['loadavg'], info['loadavg_end']))
    if args.csv:
        cols = ['partitions', 'store', 'mode', 'runs', 'mb_s', 'mb_s_min',
                'mb_s_max', 'read_mb_s', 'read_mb_s_min', 'read_mb_s_max']
        report.write_csv(args.csv, cols, rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'tool': 'logsweep', 'machine': info, 'runs': args.runs,
                       'records': records, 'record_size': RECSIZE,
                       'floor_write_mb_s': floor_w, 'floor_read_mb_s': floor_r,
                       'floor_write_samples': fw, 'floor_read_samples': fr,
                       'rows': rows}, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
