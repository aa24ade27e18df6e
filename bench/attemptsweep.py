#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The cost of writer attempts on `partd demo --store log`: plain appends
against the same shuffle written through attempts (--attempts), --direct
and through the server, in the same run.

    /usr/bin/python3 bench/attemptsweep.py --partd build-bench/partd
        [--runs N] [--quick] [--records N] [--partitions P] [--dir D]
        [--csv FILE] [--json FILE]

Each point is `partd demo -q --store log --records N --partitions P
[--direct] [--attempts]` (100-byte records, 2 workers); N is 4M (400 MB;
400k with --quick), P 64.  Rounds interleave the four points, so drift on a
noisy machine spreads over all of them.  Reported per point: the shuffle's
MB/s (median of --runs, default 3, with min-max) and the demo's whole
wall time (shuffle, read-back, close: through the server the plain appends
wait in the server's Buffer and are spilled at its close, while an
attempt's appends go straight to the Log, so the shuffle phase alone does
not compare the same work); per mode the cost of attempts, 1 - attempts /
plain on the medians of both (the target is at most 5%).

Exit status: 0 when every demo ran; 2 when one failed or its output could
not be parsed.
"""
import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import time

from report import machine  # bench/ is sys.path[0] when run as a script

SHUFFLE = re.compile(r'^shuffle: .* ([\d.]+) MB/s, ([\d.]+) records/s$', re.M)
RECSIZE = 100
TARGET = 0.05


def run_demo(partd, records, parts, direct, attempts, tmpdir):
    cmd = [partd, 'demo', '-q', '--store', 'log', '--records', str(records),
           '--partitions', str(parts)]
    cmd += ['--direct'] if direct else []
    cmd += ['--attempts'] if attempts else []
    env = dict(os.environ)
    if tmpdir:
        env['TMPDIR'] = tmpdir
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, env=env)
    wall = time.perf_counter() - t0
    s = SHUFFLE.search(p.stdout)
    if p.returncode != 0 or not s or 'partd demo: OK' not in p.stdout:
        raise RuntimeError('%s: exit %d\n%s%s' % (' '.join(cmd), p.returncode,
                                                  p.stdout, p.stderr))
    return float(s.group(1)), wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--partd', required=True, help='the partd executable')
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--records', type=int, default=None)
    ap.add_argument('--partitions', type=int, default=64)
    ap.add_argument('--dir', default=None, help='TMPDIR for the stores')
    ap.add_argument('--csv', default=None)
    ap.add_argument('--json', default=None)
    args = ap.parse_args()
    records = args.records or (400000 if args.quick else 4000000)
    if args.runs < 1 or records < 1 or args.partitions < 1:
        sys.exit('attemptsweep.py: --runs, --records and --partitions must '
                 'be positive')
    info = machine()
    print('attemptsweep: partd demo -q --store log, %d records of %d B, %d '
          'partitions, 2 workers, median of %d; %s, %d CPUs, load %.1f' % (
              records, RECSIZE, args.partitions, args.runs, info['cpu'],
              info['nproc'], info['loadavg']), flush=True)
    points = [(d, a) for d in (True, False) for a in (False, True)]
    samples = {pt: [] for pt in points}
    t0 = time.time()
    try:
        for _ in range(args.runs):
            for pt in points:
                samples[pt].append(run_demo(args.partd, records,
                                            args.partitions, pt[0], pt[1],
                                            args.dir))
                print('  %-7s %-8s shuffle %7.1f MB/s, whole demo %6.2f s' % (
                    'direct' if pt[0] else 'served',
                    'attempts' if pt[1] else 'plain', *samples[pt][-1]),
                    flush=True)
    except RuntimeError as e:
        print('attemptsweep.py: demo failed: %s' % e, file=sys.stderr)
        return 2
    rows = []
    print('\n%-7s %-8s %10s %18s %8s %10s %18s %8s' % (
        'mode', 'writes', 'MB/s', '[min-max]', 'cost', 'demo s',
        '[min-max]', 'cost'))
    for d in (True, False):
        plain = statistics.median(x[0] for x in samples[(d, False)])
        pwall = statistics.median(x[1] for x in samples[(d, False)])
        for a in (False, True):
            s = [x[0] for x in samples[(d, a)]]
            w = [x[1] for x in samples[(d, a)]]
            m, mw = statistics.median(s), statistics.median(w)
            cost = 1 - m / plain if a else 0.0
            wcost = mw / pwall - 1 if a else 0.0
            row = {'mode': 'direct' if d else 'served',
                   'writes': 'attempts' if a else 'plain', 'runs': len(s),
                   'mb_s': m, 'mb_s_min': min(s), 'mb_s_max': max(s),
                   'cost': cost, 'wall_s': mw, 'wall_s_min': min(w),
                   'wall_s_max': max(w), 'wall_cost': wcost,
                   'samples_mb_s': s, 'samples_wall_s': w}
            rows.append(row)
            print('%-7s %-8s %10.1f %18s %8s %10.2f %18s %8s' % (
                row['mode'], row['writes'], m,
                '[%.1f-%.1f]' % (min(s), max(s)),
                '%+.1f%%' % (100 * cost) if a else '', mw,
                '[%.2f-%.2f]' % (min(w), max(w)),
                '%+.1f%%' % (100 * wcost) if a else ''))
    info['loadavg_end'] = os.getloadavg()[0]
    worst = max(max(r['cost'], r['wall_cost']) for r in rows)
    print('(%.0f s; load average %.1f at the start, %.1f at the end; the '
          'target, cost <= %.0f%%: %s)' % (
              time.time() - t0, info['loadavg'], info['loadavg_end'],
              100 * TARGET, 'met' if worst <= TARGET else 'MISSED'))
    if args.csv:
        cols = ['mode', 'writes', 'runs', 'mb_s', 'mb_s_min', 'mb_s_max',
                'cost', 'wall_s', 'wall_s_min', 'wall_s_max', 'wall_cost']
        with open(args.csv, 'w', newline='') as f:
            w = csv.DictWriter(f, cols, extrasaction='ignore')
            w.writeheader()
            w.writerows(rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'tool': 'attemptsweep', 'machine': info,
                       'runs': args.runs, 'records': records,
                       'partitions': args.partitions,
                       'record_size': RECSIZE, 'target_cost': TARGET,
                       'rows': rows}, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
