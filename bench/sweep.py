#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""How libpartd's cost grows: `partd demo -q` swept over records,
partitions and workers (issue 6).

    /usr/bin/python3 bench/sweep.py --partd build-bench/partd
        [--runs N] [--quick] [--large] [--scale F] [--only records,partitions,workers]
        [--dir D] [--csv FILE] [--json FILE]

Sweeps (default workload of `partd demo`: 100-byte records, a server with a
256 MiB Buffer, no codec):
  records     1M, 2M, 5M, 10M (100M more with --large); 2 workers, 64 partitions
  partitions  16, 64, 256, 1024, 4096 at 2M records, 2 workers
  workers     1, 2, 4, 8 at 2M records, 64 partitions
Each point runs --runs times (default 3; 1 with --quick, which also divides
every record count by 10); --scale F multiplies the record counts instead.
Reported per point: the median shuffle throughput (MB/s and records/s from
the demo's "shuffle:" line) with min-max, the read-back throughput, and the
median throughput relative to the median over its sweep's points; a point
is "flat" when that ratio is within 0.8..1.2.  The points of one sweep run
interleaved (round r runs every point once), so drift on a noisy machine
spreads over all points instead of landing on one.

Exit status: 0 when every point ran (flat or not); 2 when a demo failed or
its output could not be parsed.
"""
import argparse
import json
import os
import re
import statistics
import sys

import report  # bench/ is sys.path[0] when run as a script
from report import machine

SHUFFLE = re.compile(
    r'^shuffle: (\d+) records, ([\d.]+) MB in ([\d.]+) s: ([\d.]+) MB/s, '
    r'([\d.]+) records/s$', re.M)
READ = re.compile(
    r'^read: +(\d+) partitions, ([\d.]+) MB in ([\d.]+) s: ([\d.]+) MB/s, '
    r'([\d.]+) records/s$', re.M)
PEAK = re.compile(r'^memory: +peak RSS: server ([\d.]+) MB', re.M)
BAND = 0.20


def sweeps(args):
    def n(x):
        return max(1000, int(x * args.scale))

    recs = [1e6, 2e6, 5e6, 10e6] + ([100e6] if args.large else [])
    out = {
        'records': [dict(records=n(r), partitions=64, workers=2)
                    for r in recs],
        'partitions': [dict(records=n(2e6), partitions=p, workers=2)
                       for p in (16, 64, 256, 1024, 4096)],
        'workers': [dict(records=n(2e6), partitions=64, workers=w)
                    for w in (1, 2, 4, 8)],
    }
    only = set(filter(None, args.only.split(',')))
    bad = only - set(out)
    if bad:
        sys.exit('sweep.py: --only: unknown sweep %s' % ', '.join(sorted(bad)))
    return {k: v for k, v in out.items() if not only or k in only}


def run_demo(partd, point, tmpdir):
    cmd = [partd, 'demo', '-q', '--records', str(point['records']),
           '--workers', str(point['workers']),
           '--partitions', str(point['partitions'])]
    out, s, r = report.run_demo(cmd, tmpdir, SHUFFLE, READ)
    m = PEAK.search(out)
    return {'secs': float(s.group(3)), 'mb_s': float(s.group(4)),
            'rec_s': float(s.group(5)), 'read_mb_s': float(r.group(4)),
            'server_rss_mb': float(m.group(1)) if m else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--partd', required=True, help='the partd executable')
    ap.add_argument('--runs', type=int, default=None)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--large', action='store_true',
                    help='add 100M records to the records sweep (10 GB)')
    ap.add_argument('--scale', type=float, default=None)
    ap.add_argument('--only', default='')
    ap.add_argument('--dir', default=None, help='TMPDIR for the demo stores')
    ap.add_argument('--csv', default=None)
    ap.add_argument('--json', default=None)
    args = ap.parse_args()
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.scale is None:
        args.scale = 0.1 if args.quick else 1.0
    if args.runs < 1 or args.scale <= 0:
        sys.exit('sweep.py: --runs and --scale must be positive')

    info = machine()
    plan = sweeps(args)
    print('sweep: partd demo -q, median of %d, record counts x %g; %s, '
          '%d CPUs, Linux %s, load %.1f' % (
              args.runs, args.scale, info['cpu'], info['nproc'],
              info['kernel'], info['loadavg']))
    rows = []
    for name, points in plan.items():
        samples = [[] for _ in points]
        try:
            for _ in range(args.runs):
                for i, pt in enumerate(points):
                    samples[i].append(run_demo(args.partd, pt, args.dir))
        except RuntimeError as e:
            print('sweep.py: demo failed: %s' % e, file=sys.stderr)
            return 2
        meds = [statistics.median(x['rec_s'] for x in s) for s in samples]
        centre = statistics.median(meds)
        print('\n%-10s %10s %5s %4s %10s %20s %9s %9s %6s  %s' % (
            name, 'records', 'parts', 'wrk', 'MB/s', 'records/s [min-max]',
            'read MB/s', 'srv RSS', 'rel', 'flat'))
        for pt, s, med in zip(points, samples, meds):
            rec = [x['rec_s'] for x in s]
            rel = med / centre if centre else 0.0
            flat = abs(rel - 1.0) <= BAND
            rss = [x['server_rss_mb'] for x in s if x['server_rss_mb']]
            row = {
                'sweep': name, 'records': pt['records'],
                'partitions': pt['partitions'], 'workers': pt['workers'],
                'runs': len(s),
                'mb_s': statistics.median(x['mb_s'] for x in s),
                'rec_s': med, 'rec_s_min': min(rec), 'rec_s_max': max(rec),
                'read_mb_s': statistics.median(x['read_mb_s'] for x in s),
                'server_rss_mb': max(rss) if rss else None,
                'sweep_median_rec_s': centre, 'rel': rel,
                'flat': flat, 'samples_rec_s': rec,
            }
            rows.append(row)
            print('%-10s %10d %5d %4d %10.1f %8.0f [%.0f-%.0f] %9.1f %9s '
                  '%6.2f  %s' % (
                      '', pt['records'], pt['partitions'], pt['workers'],
                      row['mb_s'], med, min(rec), max(rec), row['read_mb_s'],
                      '%.0f MB' % row['server_rss_mb']
                      if row['server_rss_mb'] else '-', rel,
                      'yes' if flat else 'NO (outside +-20%)'))
    info['loadavg_end'] = os.getloadavg()[0]
    if args.csv:
        cols = ['sweep', 'records', 'partitions', 'workers', 'runs', 'mb_s',
                'rec_s', 'rec_s_min', 'rec_s_max', 'read_mb_s',
                'server_rss_mb', 'sweep_median_rec_s', 'rel', 'flat']
        report.write_csv(args.csv, cols, rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'tool': 'sweep', 'machine': info, 'runs': args.runs,
                       'scale': args.scale, 'band': BAND, 'rows': rows},
                      f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
