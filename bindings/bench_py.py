"""cpartd vs partd on REFERENCE.md's workload, side by side in one run.

    PYTHONPATH=<build>/python /usr/bin/python3 bindings/bench_py.py [--quick]

Workload: 200k appends of 100-byte values over 1000 keys, 100 keys per
call (2000 calls); then one get per key.  Stores: File, and
Buffer(Dict, File, 64 MB).  Each (implementation, store) runs 3 times,
interleaved, in fresh temporary directories; the median is reported, and
the ratio cpartd/partd (targets: File >= 5x, Buffer appends >= 3x).
Extra rows: the dask collector pattern (one get of a large value) with the
result as bytes vs memoryview-over-frames, and ZLib(File).
"""
import argparse
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

import cpartd  # noqa: E402
import partd  # noqa: E402

NKEYS = 1000
VALUE = 100
PER_CALL = 100


def batches(total):
    """The append calls: each a dict of PER_CALL keys, keys cycling."""
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
    if kind == 'ZLib(File)':
        return mod.ZLib(mod.File(os.path.join(root, 'f')))
    raise ValueError(kind)


def run(mod, kind, calls):
    root = tempfile.mkdtemp(prefix='bench_py.')
    try:
        p = make(mod, kind, root)
        t0 = time.perf_counter()
        for d in calls:
            p.append(d)
        t1 = time.perf_counter()
        total = 0
        for k in range(NKEYS):
            total += len(p.get(k))
        t2 = time.perf_counter()
        assert total == len(calls) * PER_CALL * VALUE, total
        del p
        return (len(calls) * PER_CALL / (t1 - t0), NKEYS / (t2 - t1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def big_get(mod, size, nframes, repeat, views=False):
    """dask's collector: one key holding nframes frames, read with get()
    (views: with _get_views, the zero-copy path Encode takes)."""
    root = tempfile.mkdtemp(prefix='bench_py.')
    try:
        p = mod.File(os.path.join(root, 'f'))
        chunk = os.urandom(size // nframes)
        for _ in range(nframes):
            p.append({0: mod.utils.frame(chunk)})
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            v = p._get_views([0])[0] if views else p.get(0)
            if mod is cpartd:
                frames = cpartd._cpartd.framesplit(v)
            else:
                frames = list(partd.utils.framesplit(v))
            assert len(frames) == nframes
            times.append(time.perf_counter() - t0)
            del v, frames
        return statistics.median(times)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true',
                    help='20k appends instead of 200k (a smoke run)')
    ap.add_argument('--repeat', type=int, default=3)
    args = ap.parse_args()
    total = 20000 if args.quick else 200000
    calls = batches(total)
    kinds = ['File', 'Buffer', 'ZLib(File)']
    res = {}
    for _ in range(args.repeat):
        for kind in kinds:
            for name, mod in (('partd', partd), ('cpartd', cpartd)):
                res.setdefault((name, kind), []).append(run(mod, kind, calls))
    print('workload: %d appends of %d-byte values over %d keys, %d keys per '
          'call; then one get per key; median of %d' %
          (total, VALUE, NKEYS, PER_CALL, args.repeat))
    print('%-12s %14s %14s %14s %14s %8s %8s' %
          ('store', 'partd app/s', 'cpartd app/s', 'partd get/s',
           'cpartd get/s', 'app x', 'get x'))
    ok = True
    for kind in kinds:
        pa = statistics.median(r[0] for r in res[('partd', kind)])
        pg = statistics.median(r[1] for r in res[('partd', kind)])
        ca = statistics.median(r[0] for r in res[('cpartd', kind)])
        cg = statistics.median(r[1] for r in res[('cpartd', kind)])
        print('%-12s %14.0f %14.0f %14.0f %14.0f %8.1f %8.1f' %
              (kind, pa, ca, pg, cg, ca / pa, cg / pg))
        target = {'File': 5, 'Buffer': 3}.get(kind)
        if target and ca / pa < target:
            ok = False
    size = 64 << 20
    for nframes in (1, 64):
        tp = big_get(partd, size, nframes, args.repeat)
        tc = big_get(cpartd, size, nframes, args.repeat)
        tv = big_get(cpartd, size, nframes, args.repeat, views=True)
        print('get+framesplit of one 64 MiB key in %d frames: partd %.1f ms, '
              'cpartd bytes %.1f ms (%.1fx), cpartd memoryviews %.1f ms '
              '(%.1fx)' % (nframes, tp * 1e3, tc * 1e3, tp / tc, tv * 1e3,
                           tp / tv))
    print('targets (File >= 5x, Buffer appends >= 3x):',
          'met' if ok else 'NOT met')
    return 0


if __name__ == '__main__':
    sys.exit(main())
