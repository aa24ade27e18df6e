# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The DataFrame of the disk-shuffle benchmarks (bench/shuffle_split.py,
bindings/bench_py.py): `rows` rows of an int64 key 'k' (< 2**40), a float64
'x' and a third column by `kind`:

  num    'y', int64 in [0, 1000)
  str    's', object: short strings ('name-N', 100,000 distinct)
  cat    's', categorical: 1,000 categories ('name-N'); each frame's header
         carries them all (both formats), so a disk shuffle of 100,000 rows
         costs seconds more
  Int64  'y', nullable integers, 10% missing

Seeded: the same arguments give the same frame in every run.
"""
import numpy as np
import pandas as pd

KINDS = ('num', 'str', 'cat', 'Int64')


def shuffle_frame(rows, kind):
    if kind not in KINDS:
        raise ValueError('shuffle_frame: kind %r is none of %s'
                         % (kind, ', '.join(KINDS)))
    rng = np.random.default_rng(0)
    df = pd.DataFrame({'k': rng.integers(0, 1 << 40, rows),
                       'x': rng.random(rows)})
    if kind == 'str':
        df['s'] = pd.Series(['name-%d' % i for i in
                             rng.integers(0, 100000, rows)], dtype=object)
    elif kind == 'cat':
        df['s'] = pd.Categorical.from_codes(
            rng.integers(0, 1000, rows), ['name-%d' % i for i in range(1000)])
    elif kind == 'Int64':
        y = pd.array(rng.integers(0, 1000, rows), dtype='Int64')
        y[rng.random(rows) < 0.1] = None
        df['y'] = y
    else:
        df['y'] = rng.integers(0, 1000, rows)
    return df
