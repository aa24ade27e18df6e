# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd vs partd through Python, side by side in one run (the workloads
below, those of the cpartd issue).

    PYTHONPATH=<build>/python /usr/bin/python3 bindings/bench_py.py
        [--quick] [--repeat N] [--only NAME[,NAME...]] [--rows N]
        [--json FILE]

Workloads (each runs --repeat times, partd and cpartd interleaved, each run
in a fresh temporary directory; the median is reported with the ratio
cpartd/partd and the issue's target).  The ratio of the small workloads and
4MiB is the median of the repeats' own ratios (each cpartd run over the
partd run right before it): on a shared machine whose load drifts, the two
runs of a pair see the same load, so this ratio is steadier than the ratio
of the two medians:

  File, Buffer, ZLib(File), Server/Client:
      200k appends of 100-byte values over 1000 keys, 100 keys per call
      (2000 calls); then one get per key.  Buffer is Buffer(Dict(), File(),
      64 MB).  Server/Client: the default server store (Buffer(Dict(),
      File())) over tcp loopback (partd's only transport); the appends are
      timed until the last one is acknowledged.
  Log: the same workload on cpartd.Log against partd.File (the reference
      has no Log: File is what a partd user would use); the gets read the
      Log as it is (not compacted: its handle is still open).
  4MiB: 4 MiB values into a File, 16 keys per call, 4 calls (256 MiB;
      bench/ref_core.py's "File append 4 MiB values"), then one get per key
      (16 MiB each); MB/s.  The target is on appends.
  shuffle: dask's disk shuffle (DataFrame.shuffle(shuffle='disk')) of
      --rows rows (default 4M) x 3 columns (int64 key, float64, int64) from
      32 partitions to 32, threads scheduler, with partd, with cpartd, and
      dask's in-memory tasks shuffle; seconds end to end (compute()).
      `import partd` inside dask resolves to whichever is in
      sys.modules['partd'] at the time.
  shuffle-str: the same with the third column a string (object) column of
      short strings ('name-N', 100,000 distinct).
  shuffle-cat: the third column categorical, 1,000 categories ('name-N').
  shuffle-Int64: the third column nullable integers (Int64, 10% missing).
  Shuffles report the best of the --repeat runs (the machine is shared:
  the fastest run is the least disturbed) and the median.  Targets:
  shuffle >= 1.3x partd; shuffle-str >= 2x partd and at most the tasks
  shuffle's time (best of each).

--json FILE also writes every median with its min, max and samples, and
cpartd's paired ratio (read by bench/report.py).
"""
import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

# bindings/ holds cpartd's sources without the extension: use the build's.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(
        os.path.abspath(__file__)):
    del sys.path[0]
# bench/ last, for shuffle_frames (the frame bench/shuffle_split.py uses too).
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'bench'))

import partd  # noqa: E402  (the reference: imported first, kept aside)
import partd.zmq  # noqa: E402,F401
import partd.pandas  # noqa: E402,F401
import cpartd  # noqa: E402
import cpartd.zmq  # noqa: E402,F401

REF = partd
NKEYS = 1000
VALUE = 100
PER_CALL = 100


def batches(total):
    """The append calls: each a dict of PER_CALL int keys, keys cycling."""
    value = b'v' * VALUE
    calls = []
    k = 0
    for _ in range(total // PER_CALL):
        d = {}
        for _ in range(PER_CALL):
            d[k] = value
            k = (k + 1) % NKEYS
        calls.append(d)
    return calls


def make(mod, kind, root):
    if kind == 'File':
        return mod.File(os.path.join(root, 'f'))
    if kind == 'Buffer':
        return mod.Buffer(mod.Dict(), mod.File(os.path.join(root, 'f')),
                          available_memory=64e6)
    if kind == 'Log':
        if mod is REF:
            return mod.File(os.path.join(root, 'f'))
        return mod.Log(os.path.join(root, 'f'))
    if kind == 'ZLib(File)':
        return mod.ZLib(mod.File(os.path.join(root, 'f')))
    raise ValueError(kind)


def run_small(mod, kind, calls):
    root = tempfile.mkdtemp(prefix='bench_py.')
    server = None
    try:
        if kind == 'Server/Client':
            if mod is REF:
                server = mod.zmq.Server()     # tcp://*:port (its only way)
                port = server.address.decode().rsplit(':', 1)[1]
                p = mod.zmq.Client('tcp://127.0.0.1:' + port)
            else:
                server = mod.zmq.Server(bind='tcp://127.0.0.1:0')
                p = mod.zmq.Client(server.address)
        else:
            p = make(mod, kind, root)
        t0 = time.perf_counter()
        for d in calls:
            p.append(d)
        if server is not None:
            p.get(0)   # waits for the last append's acknowledgement
        t1 = time.perf_counter()
        total = 0
        for k in range(NKEYS):
            total += len(p.get(k))
        t2 = time.perf_counter()
        assert total == len(calls) * PER_CALL * VALUE, total
        if server is not None:
            p.close()
            server.close()
        del p
        return (len(calls) * PER_CALL / (t1 - t0), NKEYS / (t2 - t1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


_BLOCKS = []


def run_big(mod, rounds=4, nkeys=16, size=4 << 20):
    """4 MiB values into a File (bench/ref_core.py's workload: 16 keys per
    call, 4 rounds, distinct random blocks): append MB/s; then one get per
    key (16 MiB each), MB/s."""
    root = tempfile.mkdtemp(prefix='bench_py.')
    try:
        p = mod.File(os.path.join(root, 'f'))
        if not _BLOCKS:
            _BLOCKS.extend(os.urandom(size) for _ in range(16))
        blocks = _BLOCKS
        calls = [{'big%02d' % k: blocks[(r + k) % 16] for k in range(nkeys)}
                 for r in range(rounds)]
        t0 = time.perf_counter()
        for d in calls:
            p.append(d)
        t1 = time.perf_counter()
        total = 0
        for k in range(nkeys):
            total += len(p.get('big%02d' % k))
        t2 = time.perf_counter()
        assert total == rounds * nkeys * size
        mb = total / 1e6
        return (mb / (t1 - t0), mb / (t2 - t1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


_FRAMES = {}


# The shuffle workloads: the third column of each.
SHUFFLES = ('shuffle', 'shuffle-str', 'shuffle-cat', 'shuffle-Int64')
SHUFFLE_TARGETS = {'shuffle': 1.3, 'shuffle-str': 2.0}
SHUFFLE_VS_TASKS = {'shuffle-str': 1.0}   # cpartd s / tasks s at most


def shuffle_frame(rows, label):
    """bench/shuffle_frames.py's frame of the workload `label` (kept for
    the next run)."""
    key = (rows, label)
    if key not in _FRAMES:
        from shuffle_frames import shuffle_frame as build
        kind = label.partition('-')[2] or 'num'
        _FRAMES[key] = build(rows, kind)
    return _FRAMES[key]


def run_shuffle(impl, rows, label='shuffle'):
    """Seconds for dask's shuffle of `rows` rows, 32 -> 32 partitions."""
    import dask
    import dask.dataframe as dd
    df = shuffle_frame(rows, label)
    ddf = dd.from_pandas(df, npartitions=32)
    method = 'tasks' if impl == 'tasks' else 'disk'
    saved = sys.modules['partd']
    sys.modules['partd'] = cpartd if impl == 'cpartd' else REF
    try:
        gc.collect()
        t0 = time.perf_counter()
        with dask.config.set(scheduler='threads', shuffle=method):
            out = ddf.shuffle('k', npartitions=32).compute()
        t = time.perf_counter() - t0
    finally:
        sys.modules['partd'] = saved
    assert len(out) == rows
    del out
    return t


def median(xs):
    return statistics.median(xs)


def paired(res, kind, i):
    """The median of the repeats' ratios cpartd / partd of field i (0:
    appends, 1: gets): each pair ran back to back, under one load."""
    return median(c[i] / p[i] for p, c in zip(res[('partd', kind)],
                                              res[('cpartd', kind)]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true',
                    help='20k small appends, 400k shuffle rows (a smoke run)')
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--rows', type=int, default=None)
    ap.add_argument('--only', default='',
                    help='comma-separated: File,Buffer,ZLib(File),'
                    'Server/Client,Log,4MiB,' + ','.join(SHUFFLES))
    ap.add_argument('--json', default=None,
                    help='also write the results as JSON to this file')
    args = ap.parse_args()
    total = 20000 if args.quick else 200000
    rows = args.rows or (400000 if args.quick else 4000000)
    only = set(filter(None, args.only.split(',')))

    def want(name):
        return not only or name in only

    calls = batches(total)
    small = [k for k in ('File', 'Buffer', 'ZLib(File)', 'Server/Client',
                         'Log') if want(k)]
    targets = {'File': (5, 5), 'Buffer': (3, None), 'ZLib(File)': (3, None),
               'Server/Client': (5, 5), 'Log': (10, None),
               '4MiB': (1, None)}
    res = {}
    impls = (('partd', REF), ('cpartd', cpartd))
    for _ in range(args.repeat):
        for kind in small:
            for name, mod in impls:
                res.setdefault((name, kind), []).append(
                    run_small(mod, kind, calls))
        if want('4MiB'):
            for name, mod in impls:
                res.setdefault((name, '4MiB'), []).append(run_big(mod))
        for label in SHUFFLES:
            if not want(label):
                continue
            for impl in ('partd', 'cpartd', 'tasks'):
                res.setdefault((impl, label), []).append(
                    run_shuffle(impl, rows, label))

    print('cpartd %s (libpartd %s) vs partd %s; median of %d; load average '
          '%.1f' % (cpartd.__version__, cpartd.libpartd_version,
                    REF.__version__, args.repeat, os.getloadavg()[0]))
    print('small: %d appends of %d-byte values over %d keys, %d keys per '
          'call; then one get per key' % (total, VALUE, NKEYS, PER_CALL))
    print('%-14s %12s %12s %12s %12s %7s %7s  %s' %
          ('workload', 'partd app', 'cpartd app', 'partd get', 'cpartd get',
           'app x', 'get x', 'target'))
    ok = True
    rows_out = [k for k in small] + (['4MiB'] if want('4MiB') else [])
    for kind in rows_out:
        pa = median(r[0] for r in res[('partd', kind)])
        pg = median(r[1] for r in res[('partd', kind)])
        ca = median(r[0] for r in res[('cpartd', kind)])
        cg = median(r[1] for r in res[('cpartd', kind)])
        xa, xg = paired(res, kind, 0), paired(res, kind, 1)
        ta, tg = targets[kind]
        met = (xa >= ta) and (tg is None or xg >= tg)
        ok &= met
        unit = ' MB/s' if kind == '4MiB' else '/s'
        print('%-14s %12s %12s %12s %12s %7.2f %7.2f  >= %sx app%s: %s' % (
            kind, '%.0f%s' % (pa, unit), '%.0f%s' % (ca, unit),
            '%.0f%s' % (pg, unit), '%.0f%s' % (cg, unit), xa, xg,
            ta, '' if tg is None else ', >= %sx get' % tg,
            'met' if met else 'NOT met'))
    for label in SHUFFLES:
        if not want(label):
            continue
        tp, tc, tt = (min(res[(i, label)]) for i in ('partd', 'cpartd',
                                                     'tasks'))
        mp, mc, mt = (median(res[(i, label)]) for i in ('partd', 'cpartd',
                                                        'tasks'))
        goal = SHUFFLE_TARGETS.get(label)
        vs = SHUFFLE_VS_TASKS.get(label)
        met = ((goal is None or tp / tc >= goal)
               and (vs is None or tc / tt <= vs))
        ok &= met
        want_txt = ', '.join(
            ([] if goal is None else ['>= %gx partd' % goal]) +
            ([] if vs is None else ['<= %gx tasks' % vs])) or 'reported'
        print('%-14s best: partd %.2f s, cpartd %.2f s (%.2fx), tasks %.2f s '
              '(cpartd/tasks %.2f); median %.2f/%.2f/%.2f  %s: %s' % (
                  label, tp, tc, tp / tc, tt, tc / tt, mp, mc, mt, want_txt,
                  ('met' if met else 'NOT met') if want_txt != 'reported'
                  else '-'))
    print('(%d rows x 3 columns, 32 -> 32 partitions, threads scheduler)'
          % rows)
    print('all targets:', 'met' if ok else 'NOT met')
    if args.json:
        write_json(args, res, targets, total, rows)
    return 0


def write_json(args, res, targets, total, rows):
    """Every (implementation, workload) series: median, min, max, samples.

    Small workloads and 4MiB: rates (appends or gets per second; MB/s for
    4MiB); shuffle: seconds."""
    def stat(xs):
        xs = list(xs)
        return {'median': median(xs), 'min': min(xs), 'max': max(xs),
                'samples': xs}

    out = []
    for (impl, kind), rs in sorted(res.items()):
        if kind.startswith('shuffle'):
            out.append(dict(impl=impl, workload=kind, op='shuffle',
                            unit='s', **stat(rs)))
            continue
        unit = 'MB/s' if kind == '4MiB' else '/s'
        for i, op in enumerate(('append', 'get')):
            out.append(dict(impl=impl, workload=kind, op=op, unit=unit,
                            **stat(r[i] for r in rs)))
            if impl == 'cpartd' and ('partd', kind) in res:
                out[-1]['paired_ratio'] = paired(res, kind, i)
    doc = {'tool': 'bench_py', 'cpartd': cpartd.__version__,
           'libpartd': cpartd.libpartd_version, 'partd': REF.__version__,
           'repeat': args.repeat, 'small_appends': total, 'shuffle_rows': rows,
           'targets': {k: {'append': a, 'get': g}
                       for k, (a, g) in targets.items()},
           'shuffle_target': 1.3, 'shuffle_targets': SHUFFLE_TARGETS,
           'shuffle_vs_tasks': SHUFFLE_VS_TASKS, 'loadavg': os.getloadavg()[0],
           'rows': out}
    with open(args.json, 'w') as f:
        json.dump(doc, f, indent=1)


if __name__ == '__main__':
    sys.exit(main())
