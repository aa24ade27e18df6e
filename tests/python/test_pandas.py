# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""PandasBlocks and Numpy: the C serialization (blocks_frames, text_pickle,
decompress, concat_into), the one-pass get, and the format against partd's
(each reads what the other wrote)."""
import decimal
import os
import pickle

import pytest

np = pytest.importorskip('numpy')
pd = pytest.importorskip('pandas')

import cpartd  # noqa: E402
import cpartd.pandas as cp  # noqa: E402
from cpartd import _cpartd as C  # noqa: E402
from cpartd import Buffer, Dict, File  # noqa: E402
from conftest import DAMAGE_ERRORS, damage_rounds, spinning  # noqa: E402


def frame(n, seed=0, cats=('u', 'v'), tz='US/Eastern'):
    r = np.random.default_rng(seed)
    return pd.DataFrame(
        {'i': r.integers(-9, 9, n), 'f': r.random(n),
         's': ['s%d' % i for i in r.integers(0, 50, n)],
         'c': pd.Categorical(r.choice(list(cats), n), categories=list(cats)),
         't': pd.date_range('2020', periods=n, tz=tz),
         'd': pd.date_range('2021', periods=n),
         'b': r.random(n) > 0.5,
         'u8': r.integers(0, 200, n).astype('u1'),
         'o': [None if i % 3 else 1.5 for i in range(n)],
         'i2': r.integers(0, 9, n)},
        index=pd.Index(r.integers(0, 100, n), name='idx'))


CASES = {
    'same schema': lambda: [frame(n, n) for n in (5, 1, 7, 3)],
    'one frame': lambda: [frame(4)],
    'other categories': lambda: [frame(5), frame(6, cats=('v', 'u', 'w'))],
    'other tz': lambda: [frame(3), frame(3, tz='UTC')],
    'string index': lambda: [frame(5).set_index('s'), frame(4).set_index('s')],
    'one column': lambda: [frame(5)[['i']], frame(3)[['i']]],
    'no columns': lambda: [frame(5)[[]], frame(3)[[]]],
    'range index': lambda: [frame(5).reset_index(drop=True),
                            frame(4).reset_index(drop=True)],
    'multi index': lambda: [frame(5).set_index(['i', 's']),
                            frame(3).set_index(['i', 's'])],
    'datetime index': lambda: [frame(5).set_index('d'),
                               frame(3).set_index('d')],
    'int columns': lambda: [pd.DataFrame(np.arange(6).reshape(3, 2)),
                            pd.DataFrame(np.arange(4).reshape(2, 2))],
    'extension': lambda: [pd.DataFrame({'e': pd.array([1, None], 'Int64')}),
                          pd.DataFrame({'e': pd.array([3], 'Int64')})],
    'odd objects': lambda: [
        pd.DataFrame({'o': [(1, 2), decimal.Decimal('1.5'), 'x']}),
        pd.DataFrame({'o': ['\ud800', b'b', 2 ** 80]})],
    'empty frames': lambda: [frame(0), frame(2), frame(0)],
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_get_is_join_of_appends(case, tmp_path):
    dfs = CASES[case]()
    p = cpartd.PandasBlocks(Buffer(Dict(), File(str(tmp_path / 's')), 2000))
    for df in dfs:
        p.append({'k': df, ('t', 1): df})
    want = cp.join(dfs)
    pd.testing.assert_frame_equal(p.get('k'), want)
    got = p.get(['k', ('t', 1), 'missing'])
    pd.testing.assert_frame_equal(got[1], want)
    assert got[2].empty


@pytest.mark.parametrize('case', sorted(CASES))
def test_cross_implementation(case, tmp_path, needs_ref):
    dfs = CASES[case]()
    path = str(tmp_path / 's')
    ours = cpartd.PandasBlocks(File(path))
    theirs = needs_ref.PandasBlocks(needs_ref.File(path))
    for df in dfs:
        ours.append({'mine': df})
        theirs.append({'theirs': df})
    want = cp.join(dfs)
    # partd 1.3's join loses categoricals whose categories differ (partd
    # 1.4 keeps them, as we do): compare the values there.
    check = {'check_dtype': case != 'other categories',
             'check_categorical': case != 'other categories'}
    pd.testing.assert_frame_equal(ours.get('theirs'), want)
    pd.testing.assert_frame_equal(theirs.get('mine'), pd.concat(dfs),
                                  **check)


def test_join_keeps_categoricals():
    a = pd.DataFrame({'c': pd.Categorical(['x'])})
    b = pd.DataFrame({'c': pd.Categorical(['y'])})
    out = cp.join([a, b])
    assert str(out['c'].dtype) == 'category'
    assert list(out['c']) == ['x', 'y']
    assert cp.join([]).empty


def test_serialize_is_partds_format(needs_ref):
    import partd.pandas as rp
    for case in ('same schema', 'string index', 'multi index', 'extension',
                 'odd objects'):
        for df in CASES[case]():
            pd.testing.assert_frame_equal(rp.deserialize(cp.serialize(df)),
                                          df)
            pd.testing.assert_frame_equal(cp.deserialize(rp.serialize(df)),
                                          df)


def test_dask_shuffle_pattern(tmp_path):
    # 8 input partitions each append one frame to each of 8 keys.
    df = pd.DataFrame({'k': np.arange(4000) % 8, 'x': np.arange(4000) * 0.5,
                       's': ['n%d' % i for i in range(4000)]})
    p = cpartd.PandasBlocks(Buffer(Dict(), File(str(tmp_path / 's'))))
    for part in np.array_split(df, 8):
        p.append({k: g for k, g in part.groupby('k')}, fsync=True)
    for k in range(8):
        pd.testing.assert_frame_equal(p.get(k), df[df.k == k])


def test_corrupt_store_raises_never_crashes(tmp_path):
    """Damaged block bytes, lengths and tails give an exception (mostly
    CorruptError), never a crash or a wrong-sized array.  (The pickled
    headers are left alone: like partd, PandasBlocks unpickles them, and a
    damaged pickle can make numpy itself crash; see bindings/README.md.)"""
    p = cpartd.PandasBlocks(File(str(tmp_path / 's')))
    for df in CASES['same schema']():
        # 'd' (datetime64) is an extension array, pickled whole, as partd
        p.append({'k': df.drop(columns='d')})
    outcomes = damage_rounds(p, 'k', 1,
                             DAMAGE_ERRORS + (UnicodeDecodeError,))
    assert 'CorruptError' in outcomes, outcomes


# ------------------------------------------------------------- C helpers

def test_text_pickle_roundtrip():
    items = ['a', '', 'é' * 300, 'x' * 70000, None, 1.5, float('inf'), -3,
             2 ** 31, -2 ** 63, 2 ** 63 - 1, True, False, b'', b'y' * 300]
    b = C.text_pickle(items)
    assert pickle.loads(b) == items
    assert pickle.loads(C.text_pickle([])) == []
    nan = pickle.loads(C.text_pickle([float('nan')]))[0]
    assert nan != nan
    for odd in [[2 ** 64], [object()], [(1,)], ['\ud800'], [np.float64(1)],
                [1, 2, [3]]]:
        assert C.text_pickle(odd) is None
    with pytest.raises(TypeError):
        C.text_pickle(('a',))


def test_numpy_objects(tmp_path, needs_ref):
    path = str(tmp_path / 's')
    ours = cpartd.Numpy(File(path))
    theirs = needs_ref.Numpy(needs_ref.File(path))
    a = np.array(['x', None, 1, 2.5, b'b'], dtype='O')
    odd = np.array([(1, 2), decimal.Decimal(3)], dtype='O')
    ours.append({'a': a, 'odd': odd})
    theirs.append({'a': a})
    assert list(ours.get('a')) == list(a) * 2
    assert list(theirs.get('a')) == list(a) * 2
    assert list(theirs.get('odd')) == list(odd)
    x = np.arange(10.0).reshape(5, 2)[:, 0]      # not contiguous
    ours.append({'x': x, 'y': np.arange(3)})
    assert (ours.get('x') == x).all() and (theirs.get('y') == np.arange(3)).all()


def test_blocks_frames_and_decompress():
    x = np.arange(1000, dtype='i8')
    out = C.blocks_frames(b'H', [(C.CODEC_BLOSC, x, 8),
                                 (C.CODEC_SNAPPY, ['a', 'b'], 1),
                                 (C.CODEC_RAW, b'raw', 1),
                                 (C.CODEC_BLOSC, b'', 8)])
    frames = C.framesplit(out)
    assert bytes(frames[0]) == b'H'
    assert C.decompress(C.CODEC_BLOSC, frames[1]) == x.tobytes()
    inner = C.decompress(C.CODEC_SNAPPY, frames[2])
    assert pickle.loads(C.framesplit(inner)[0]) == ['a', 'b']
    assert C.decompress(C.CODEC_RAW, frames[3]) == b'raw'
    assert C.decompress(C.CODEC_BLOSC, frames[4]) == b''
    dst = np.zeros(1500, dtype='i8')
    assert C.decompress(C.CODEC_BLOSC, frames[1], dst, 4000) == 8000
    assert (dst[500:] == x).all() and (dst[:500] == 0).all()
    assert C.blocks_frames(b'', [(C.CODEC_BLOSC, [object()], 1)]) is None


def test_c_helpers_bad_input():
    good = C.blocks_frames(b'', [(C.CODEC_BLOSC, np.arange(100), 8)])[16:]
    with pytest.raises(cpartd.CorruptError):
        C.decompress(C.CODEC_BLOSC, b'not blosc at all, really')
    with pytest.raises(cpartd.CorruptError):
        C.decompress(C.CODEC_BLOSC, good[:-5])
    with pytest.raises(cpartd.CorruptError):
        C.decompress(C.CODEC_SNAPPY, b'\xff\xff\xff\xff\x0f')
    with pytest.raises(cpartd.CorruptError):    # does not fit in out
        C.decompress(C.CODEC_BLOSC, good, bytearray(100))
    with pytest.raises(cpartd.CorruptError):
        C.decompress(C.CODEC_BLOSC, good, bytearray(800), 8)
    with pytest.raises(BufferError):            # read-only out
        C.decompress(C.CODEC_BLOSC, good, b'x' * 800)
    with pytest.raises(ValueError):
        C.decompress(7, good)
    with pytest.raises(ValueError):
        C.blocks_frames(b'', [(9, b'x', 1)])
    with pytest.raises(ValueError):
        C.blocks_frames(b'', [(C.CODEC_BLOSC, b'x', 0)])
    with pytest.raises(TypeError):
        C.blocks_frames(b'', [(C.CODEC_BLOSC, 5, 1)])
    with pytest.raises(TypeError):
        C.blocks_frames(b'', ['nope'])


def test_concat_into():
    a = np.arange(6, dtype='i8').reshape(2, 3)
    b = np.arange(100, 104, dtype='i8').reshape(2, 2)
    pa = C.blocks_frames(b'', [(C.CODEC_BLOSC, a, 8)])[16:]
    pb = C.blocks_frames(b'', [(C.CODEC_RAW, b, 8)])[16:]
    out = np.empty((2, 5), dtype='i8')
    C.concat_into(C.CODEC_BLOSC, [pa, pa], np.empty((2, 6), 'i8'), 2, 8,
                  [3, 3])
    C.concat_into(C.CODEC_RAW, [pb, pb], out[:, :4].copy(), 2, 8, [2, 2])
    flat = out.reshape(-1).view(np.uint8)
    C.concat_into(C.CODEC_BLOSC, [pa, C.blocks_frames(
        b'', [(C.CODEC_BLOSC, b, 8)])[16:]], flat, 2, 8, [3, 2])
    assert (out == np.concatenate([a, b], axis=1)).all()
    with pytest.raises(cpartd.CorruptError):    # a piece of the wrong size
        C.concat_into(C.CODEC_BLOSC, [pa, pa], flat, 2, 8, [3, 2])
    with pytest.raises(ValueError):             # out of the wrong size
        C.concat_into(C.CODEC_BLOSC, [pa], flat, 2, 8, [3])
    with pytest.raises(ValueError):
        C.concat_into(C.CODEC_BLOSC, [pa], flat, 0, 8, [3])


def test_compression_releases_gil():
    big = np.random.default_rng(0).random(1 << 23)      # 64 MiB
    with spinning() as count:
        before = count[0]
        out = C.blocks_frames(b'', [(C.CODEC_BLOSC, big, 8)])
        C.decompress(C.CODEC_BLOSC, out[16:])
        during = count[0] - before
    assert during > 1000
