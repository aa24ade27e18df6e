# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""dask's disk shuffle done by hand, each part timed apart (CPU seconds,
best of 3): dask's own grouping, the store's appends, the store's gets, and
for scale pd.concat of the same pieces kept in memory.

    PYTHONPATH=<build>/python /usr/bin/python3 bench/shuffle_split.py \
        IMPL ROWS [KIND]

IMPL: cpartd or partd; KIND: str (default: a column of short strings),
cat (1,000 categories), Int64 (nullable, 10% missing) or num (int64):
bench/shuffle_frames.py builds the frame.
32 input partitions, each grouped as dask's shuffle_group_3 does
(groupby('_partitions') and one get_group per output partition) and
appended with fsync=True to PandasBlocks(Buffer(Dict(), File())) in a
temporary directory (as dask's stores), then one get per output partition.
docs/perf-notes.md has the figures.
"""
import gc
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd

BENCH = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0]) == BENCH:
    del sys.path[0]
sys.path.append(BENCH)  # last: only for shuffle_frames
from shuffle_frames import shuffle_frame  # noqa: E402


def frame(rows, kind):
    df = shuffle_frame(rows, kind)
    df['_partitions'] = (df['k'] % 32).astype('int64')
    return df


def main():
    impl, rows = sys.argv[1], int(sys.argv[2])
    kind = sys.argv[3] if len(sys.argv) > 3 else 'str'
    if impl == 'partd':
        import partd as mod
    else:
        import cpartd as mod
        from cpartd.file import cleanup_files
    parts = np.array_split(frame(rows, kind), 32)
    best = {}
    for _ in range(3):
        gc.collect()
        c0 = time.process_time()
        groups = []
        for part in parts:
            g = part.groupby('_partitions')
            groups.append({i: g.get_group(i) for i in g.groups})
        c1 = time.process_time()
        path = tempfile.mkdtemp(suffix='.partd')
        if impl != 'partd':
            cleanup_files.append(path)        # as dask registers its stores
        p = mod.PandasBlocks(mod.Buffer(mod.Dict(), mod.File(path)))
        for d in groups:
            p.append(d, fsync=True)
        c2 = time.process_time()
        outs = [p.get(i) for i in range(32)]
        c3 = time.process_time()
        joined = [pd.concat([d[i] for d in groups]) for i in range(32)]
        c4 = time.process_time()
        assert sum(map(len, outs)) == rows
        for k, v in (('groupby', c1 - c0), ('append', c2 - c1),
                     ('get', c3 - c2), ('pd.concat', c4 - c3)):
            best[k] = min(best.get(k, 1e9), v)
        fmt = getattr(p, 'format', 'partd')
        p.drop()
        del outs, joined, groups, p
        shutil.rmtree(path, ignore_errors=True)
    print('%-7s %-6s %s  format=%s' % (
        impl, kind, '  '.join('%s %.3f' % kv for kv in best.items()), fmt))


if __name__ == '__main__':
    main()
