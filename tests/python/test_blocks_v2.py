# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd's frame format version 2 (docs/pandas-blocks.md): the struct
header before a static header pickled once per DataFrame's pieces, the
categories in parts of their own; version 1 frames still read."""
import pickle

import numpy as np
import pandas as pd
import pytest

import cpartd
import cpartd.pandas as cp
from cpartd import _cpartd as C


def serialize_v1(df):
    """A frame as cpartd's format version 1 wrote it."""
    headers, kinds, parts = cp._parts(df, True)
    return C.blocks_frames(pickle.dumps((cp.MARK, 1, ''.join(kinds),
                                         headers)), parts)


def frame(n, seed=0, cats=('u', 'v', 'w')):
    r = np.random.default_rng(seed)
    return pd.DataFrame(
        {'i': r.integers(-9, 9, n), 'f': r.random(n),
         's': ['s%d' % i for i in r.integers(0, 50, n)],
         'c': pd.Categorical(r.choice(list(cats), n), categories=list(cats)),
         'n': pd.array([None if i % 4 == 0 else i for i in range(n)],
                       dtype='Int64')},
        index=pd.Index(r.integers(0, 100, n), name='idx'))


def store(frames):
    """A Dict-backed PandasBlocks whose key 'k' holds these serialized
    frames."""
    p = cp.PandasBlocks(cpartd.Dict())
    p.partd.append({'k': b''.join(C.frame(f) for f in frames)})
    return p


def test_header_is_version_2():
    data = cp.serialize_cpartd(frame(5))
    head = C.framesplit(data)[0]
    assert bytes(head[:4]) == cp.MAGIC2
    assert int.from_bytes(head[4:12], 'little') == 5
    h = pickle.loads(head[12:])
    assert h[:2] == (cp.MARK, 2) and h[2].endswith('c')
    assert "'u'" not in repr(h)    # the categories are not in the header
    pd.testing.assert_frame_equal(cp.deserialize(data), frame(5))


@pytest.mark.parametrize('order', ['v1 v2', 'v2 v1', 'v2 v2', 'v1 v1'])
def test_old_and_new_frames_in_one_key(order):
    dfs = [frame(n, n) for n in (4, 1, 6, 3)]
    ser = {'v1': serialize_v1, 'v2': cp.serialize_cpartd}
    fmts = order.split() * 2
    got = store([ser[f](df) for f, df in zip(fmts, dfs)]).get('k')
    pd.testing.assert_frame_equal(got, pd.concat(dfs))
    assert isinstance(got['c'].dtype, pd.CategoricalDtype)


def test_pieces_of_one_frame_share_one_header():
    df = frame(40)
    pieces = [df.iloc[i::4] for i in range(4)]
    data = [cp.serialize_cpartd(p) for p in pieces]
    heads = [bytes(C.framesplit(d)[0][12:]) for d in data]
    assert len(set(heads)) == 1
    got = store(data).get('k')
    pd.testing.assert_frame_equal(got, pd.concat(pieces))


def test_the_header_cache_tells_frames_apart():
    # alike in layout, different in dtype, names, order or categories
    a = frame(5)
    b = frame(5).rename(columns={'i': 'j'})
    c = frame(5).astype({'i': 'int32'})
    d = frame(5, cats=('u', 'v', 'w', 'x'))
    e = frame(5).assign(c=lambda x: x['c'].cat.as_ordered())
    f = frame(5)[['f', 'i', 's', 'c', 'n']]
    # index names equal under == but of other types: kept apart
    g, h, i = (frame(5).rename_axis(n) for n in (1, 1.0, True))
    for df in [a, b, c, d, e, f, a, f, b, g, h, i, g]:
        pd.testing.assert_frame_equal(
            cp.deserialize(cp.serialize_cpartd(df)), df)
        got = cp.deserialize(cp.serialize_cpartd(df)).index.name
        assert type(got) is type(df.index.name)
    got = store([cp.serialize_cpartd(x) for x in (a, d, e)]).get('k')
    pd.testing.assert_frame_equal(got, cp.join([a, d, e]))


def test_different_categories_join():
    a, b = frame(5, 1, ('u', 'v', 'w')), frame(6, 2, ('w', 'v', 'u'))
    got = store([cp.serialize_cpartd(a), cp.serialize_cpartd(b)]).get('k')
    pd.testing.assert_frame_equal(got, cp.join([a, b]))


def test_many_categories_in_proportion(tmp_path):
    """100,000 categories, 64 frames: each frame's categories cost a
    byte comparison, not an unpickle and an Index comparison, and the
    keys of a get share one CategoricalDtype."""
    cats = ['name-%d' % i for i in range(100000)]
    r = np.random.default_rng(0)
    n = 16000
    df = pd.DataFrame({'k': r.integers(0, 1 << 40, n),
                       'c': pd.Categorical.from_codes(
                           r.integers(0, len(cats), n), cats)},
                      index=pd.Index(np.arange(n)))   # as in a shuffle
    p = cp.PandasBlocks(cpartd.File(str(tmp_path / 'f')), format='cpartd')
    for i in range(4):     # 4 appends of 16 pieces, as a shuffle does
        p.append({'k%d' % j: df.iloc[j::16] for j in range(16)})
    got = p.get(['k%d' % j for j in range(16)])
    for j, g in enumerate(got):
        assert len(g) == 4 * len(df.iloc[j::16])
        assert g['c'].cat.categories.equals(df['c'].cat.categories)
        pd.testing.assert_frame_equal(g.iloc[:len(df.iloc[j::16])],
                                      df.iloc[j::16])
    # the same through partd's path (a join): one dtype for all frames
    p.append({'k0': df.iloc[:3].reset_index(drop=True)})
    g = p.get('k0')
    assert len(g) == 4 * len(df.iloc[0::16]) + 3
    assert g['c'].cat.categories.equals(df['c'].cat.categories)


def corrupted(data, at, value):
    b = bytearray(data)
    b[at] = value
    return bytes(b)


def test_corrupt_v2_headers_raise_corrupt():
    df = frame(6)
    parts = [bytes(x) for x in C.framesplit(cp.serialize_cpartd(df))]
    head = parts[0]
    h = pickle.loads(head[12:])
    statics = [(cp.MARK, 3) + h[2:], ('other',) + h[1:],
               h[:2] + ('r' + h[2][1:],) + h[3:],
               h[:2] + (h[2][:-1],) + h[3:],
               h[:2] + (h[2] + 'r',) + h[3:],
               h[:3] + (h[3][:1],), h[:3] + ('x',), 'a string', 7]
    blocks = h[3]
    for j, b in enumerate(blocks[2:]):
        bad = list(blocks)
        bad[2 + j] = b[:3] + (('categorical_type', (False, 1)),)
        statics.append(h[:3] + (bad,))
        bad[2 + j] = b[:2] + ((-1,),) + b[3:]
        statics.append(h[:3] + (bad,))
        bad[2 + j] = b[:1] + ('int64',) + b[2:]
        statics.append(h[:3] + (bad,))
    heads = [head[:12] + pickle.dumps(s) for s in statics]
    heads += [head[:12], head[:7], head[:12] + b'\x80\x05junk',
              cp.MAGIC2 + (10 ** 9).to_bytes(8, 'little') + head[12:],
              cp.MAGIC2 + (5).to_bytes(8, 'little') + head[12:]]
    for hd in heads:
        frames = [hd] + parts[1:]
        with pytest.raises(cpartd.CorruptError):
            cp.deserialize(b''.join(C.frame(f) for f in frames))
        with pytest.raises(cpartd.CorruptError):   # through the concat
            store([b''.join(C.frame(f) for f in frames),
                   cp.serialize_cpartd(df)]).get('k')


def test_corrupt_categories_part_raises_corrupt():
    df = frame(6)
    parts = [bytes(x) for x in C.framesplit(cp.serialize_cpartd(df))]
    for bad in [b'', b'junk', pickle.dumps([1, 2])]:
        frames = parts[:-1] + [bad]
        data = b''.join(C.frame(f) for f in frames)
        with pytest.raises(cpartd.CorruptError):
            cp.deserialize(data)
        with pytest.raises(cpartd.CorruptError):
            store([data, data]).get('k')


def test_random_header_bytes_never_crash():
    df = frame(6)
    parts = [bytes(x) for x in C.framesplit(cp.serialize_cpartd(df))]
    r = np.random.default_rng(1)
    for _ in range(300):
        head = corrupted(parts[0], int(r.integers(0, len(parts[0]))),
                         int(r.integers(0, 256)))
        data = b''.join(C.frame(f) for f in [head] + parts[1:])
        try:
            cp.deserialize(data)
        except (cpartd.CorruptError, ValueError, TypeError, KeyError,
                IndexError, AttributeError):
            pass
