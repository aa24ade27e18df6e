# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd's own PandasBlocks frames (docs/pandas-blocks.md): the compact
encoding of string columns (strings.c), which format a store gets, and
either format read back, whole or damaged."""
import decimal
import os
import pickle
import random
import subprocess
import sys

import pytest

np = pytest.importorskip('numpy')
pd = pytest.importorskip('pandas')

import cpartd  # noqa: E402
import cpartd.pandas as cp  # noqa: E402
from cpartd import _cpartd as C  # noqa: E402
from conftest import damage_rounds  # noqa: E402
from cpartd import Buffer, Dict, File  # noqa: E402
from conftest import build_python_dir  # noqa: E402

LONG = 'é' * 70000 + 'x'
STRINGS = ['', 'a', 'héllo', 'ascii', 'nul\x00inside', '\x00', '日本語',
           '🐍 emoji', LONG, 'z' * 300]
ITEMS = STRINGS + [None, b'', b'by\x00tes', b'\xff' * 5, float('nan'), 1.5,
                   float('-inf'), -0.0]


def objects(items):
    return np.fromiter(items, dtype=object, count=len(items))


def same(a, b):
    """Item by item: equal values of the same type (nan equals nan)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert type(x) is type(y), (x, y)
        if isinstance(x, float) and x != x:
            assert y != y
        elif isinstance(x, float):
            assert x == y and str(x) == str(y)       # -0.0 stays -0.0
        else:
            assert x == y


def kinds(data):
    """The part kinds of one serialized frame."""
    return cp._read_header(C.framesplit(data)[0])[1]


# ------------------------------------------------------ the C encoding

def test_pack_and_into_roundtrip():
    a = objects(ITEMS)
    b = C.strings_pack(a)
    assert b[:4] == b'CPS\x01'
    assert int.from_bytes(b[4:12], 'little') == len(a)
    out = np.empty(len(a), dtype=object)
    C.strings_into([b], out, 1, [len(a)])
    same(out, a)
    assert C.strings_pack(np.empty(0, dtype=object)) is not None


def test_into_concatenates_along_the_last_axis():
    a = objects(ITEMS[:6]).reshape(2, 3)
    b = objects(ITEMS[6:10]).reshape(2, 2)
    out = np.empty((2, 7), dtype=object)
    C.strings_into([C.strings_pack(a), C.strings_pack(b)], out, 2, [3, 2],
                   1)
    assert out[0, 0] is None and out[1, 6] is None
    same(out[:, 1:6].ravel(), np.concatenate([a, b], axis=1).ravel())


@pytest.mark.parametrize('odd', [1, True, (1, 2), decimal.Decimal(1),
                                 '\ud800', np.float64(1.5), np.str_('a'),
                                 pd.NA, object()])
def test_pack_leaves_other_items_to_pickle(odd):
    assert C.strings_pack(objects(['a', odd])) is None


def test_pack_and_into_refuse_bad_arrays():
    with pytest.raises(TypeError):
        C.strings_pack(['a', 'b'])                  # not an array
    with pytest.raises(TypeError):
        C.strings_pack(np.arange(3))                # not objects
    with pytest.raises(ValueError):
        C.strings_pack(objects(['a', 'b', 'c'])[::2])   # not contiguous
    b = C.strings_pack(objects(['a', 'b']))
    ro = np.empty(2, dtype=object)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        C.strings_into([b], ro, 1, [2])
    with pytest.raises(ValueError):                 # does not fit
        C.strings_into([b], np.empty(1, dtype=object), 1, [2])
    with pytest.raises(ValueError):
        C.strings_into([b], np.empty(2, dtype=object), 1, [2], 1)
    with pytest.raises(ValueError):
        C.strings_into([b], np.empty(3, dtype=object), 2, [1])
    with pytest.raises(ValueError):
        C.strings_into([b], np.empty(2, dtype=object), 0, [2])
    with pytest.raises(TypeError):
        C.strings_into([b], np.empty(2, dtype='i8'), 1, [2])


def _bad(piece, n=2):
    with pytest.raises(cpartd.CorruptError) as e:
        C.strings_into([piece], np.empty(n, dtype=object), 1, [n])
    return str(e.value)


def test_corrupt_pieces_raise_clearly():
    good = C.strings_pack(objects(['ab', 'c\u00e9']))
    n = len(good)
    assert 'magic' in _bad(b'XPS\x01' + good[4:])
    assert 'magic' in _bad(b'')
    for cut in range(n):                          # every truncation
        _bad(good[:cut])
    assert 'count' in _bad(good, 3)               # not the header's count
    huge = good[:4] + (1 << 62).to_bytes(8, 'little') + good[12:]
    assert 'count' in _bad(huge)
    with pytest.raises(cpartd.CorruptError):      # never allocated
        cp._decode('s', np.dtype('O'), huge)
    body = bytearray(good)
    body[14:18] = (1000).to_bytes(4, 'little')    # a length past the end
    assert 'past its end' in _bad(bytes(body))
    body = bytearray(good)
    body[12] = 9                                  # an unknown tag
    assert 'tag' in _bad(bytes(body))
    body = bytearray(good)
    body[12] = 0                                  # None with a length
    assert 'length' in _bad(bytes(body))
    body = bytearray(good)
    body[-1] = 0xff                               # bad UTF-8
    assert 'UTF-8' in _bad(bytes(body))
    body = bytearray(good)
    body[22] = 0xc3                               # a high byte in ASCII
    assert 'ASCII' in _bad(bytes(body))
    assert 'after' in _bad(good + b'x')           # trailing bytes
    body = bytearray(C.strings_pack(objects([1.5])))
    body[16] = 7                                  # a float of 7 bytes
    assert 'length' in _bad(bytes(body[:-1]), 1)


def test_random_damage_never_crashes():
    good = C.strings_pack(objects(ITEMS))
    rnd = random.Random(7)
    outcomes = set()
    for _ in range(2000):
        data = bytearray(good)
        for _ in range(rnd.randrange(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            data = data[:rnd.randrange(len(data))]
        out = np.empty(len(ITEMS), dtype=object)
        try:
            C.strings_into([bytes(data)], out, 1, [len(ITEMS)])
            outcomes.add('ok')
        except cpartd.CorruptError:
            outcomes.add('corrupt')
    assert 'corrupt' in outcomes


# --------------------------------------------- frames in either format

def frame(n, seed=0):
    r = np.random.default_rng(seed)
    s = ['s%d' % i for i in r.integers(0, 50, n)]
    return pd.DataFrame(
        {'i': r.integers(-9, 9, n), 'f': r.random(n), 's': s,
         'u': ['ü%d' % i for i in range(n)],
         'm': [None if i % 3 == 0 else ('x' if i % 3 == 1 else np.nan)
               for i in range(n)],
         'c': pd.Categorical(r.choice(['u', 'v'], n), categories=['u', 'v']),
         'n': pd.array([None if i % 4 == 0 else i for i in range(n)],
                       dtype='Int64'),
         't': pd.date_range('2020', periods=n, tz='US/Eastern'),
         'b': [b'b%d' % i for i in range(n)]},
        index=pd.Index(r.integers(0, 100, n), name='idx'))


CASES = {
    'mixed': lambda: [frame(n, n) for n in (5, 1, 7, 3)],
    'odd strings': lambda: [pd.DataFrame({'s': objects(ITEMS)}),
                            pd.DataFrame({'s': objects(ITEMS[::-1])})],
    'string index': lambda: [frame(5).set_index('s'), frame(4).set_index('s')],
    'two object columns one block': lambda: [
        pd.DataFrame(np.array([['a', None], ['b', 'é']], dtype=object),
                     columns=['x', 'y']),
        pd.DataFrame(np.array([['c', 'd']], dtype=object),
                     columns=['x', 'y'])],
    'fallback objects': lambda: [
        pd.DataFrame({'o': objects([(1, 2), decimal.Decimal('1.5'), 'x'])}),
        pd.DataFrame({'o': objects(['\ud800', b'b', 2 ** 80])})],
    'strings then fallback': lambda: [pd.DataFrame({'o': ['a', 'b']}),
                                      pd.DataFrame({'o': objects(['c', 3])}),
                                      pd.DataFrame({'o': ['d']})],
    'empty frames': lambda: [frame(0), frame(2), frame(0)],
    'long strings': lambda: [pd.DataFrame({'s': [LONG, '', LONG]})],
}


@pytest.mark.parametrize('case', sorted(CASES))
@pytest.mark.parametrize('fmt', ['cpartd', 'partd'])
def test_roundtrip(case, fmt, tmp_path):
    dfs = CASES[case]()
    p = cpartd.PandasBlocks(Buffer(Dict(), File(str(tmp_path / 's')), 3000),
                            format=fmt)
    for df in dfs:
        p.append({'k': df, 'one': dfs[0]})
    want = cp.join(dfs)
    pd.testing.assert_frame_equal(p.get('k'), want)
    pd.testing.assert_frame_equal(p.get('one'), cp.join([dfs[0]] * len(dfs)))
    for df in dfs:
        ser = cp.serialize_cpartd(df) if fmt == 'cpartd' else \
            cp.serialize(df)
        pd.testing.assert_frame_equal(cp.deserialize(ser), df)


def test_compact_and_fallback_kinds():
    df = frame(6)
    k = kinds(cp.serialize_cpartd(df))
    # columns, index, then blocks; every object column is compact, the
    # numbers raw, the nullable integers values and mask
    assert k[0] == 's' and set(k[2:]) == {'r', 's', 'm', 'c'}
    assert k.index('c') == 2 + len(df._mgr.blocks)   # the categories
    assert 'p' not in k and 't' not in k
    assert set(kinds(cp.serialize(df))) <= {'t', 'n', 'x'}
    odd = pd.DataFrame({'o': objects([(1, 2), 'x'])})
    assert kinds(cp.serialize_cpartd(odd))[2] == 'p'


@pytest.mark.parametrize('dtype', ['Int64', 'Int8', 'UInt32', 'Float64',
                                   'boolean'])
def test_masked_arrays(dtype, tmp_path):
    def mk(n, seed):
        r = np.random.default_rng(seed)
        v = pd.array(r.integers(0, 2, n), dtype=dtype)
        v[r.random(n) < 0.3] = None
        return pd.DataFrame({'v': v, 'w': pd.array(list(range(n)),
                                                    dtype=dtype)
                             if dtype != 'boolean' else v,
                             'x': np.arange(n)})
    dfs = [mk(n, n) for n in (6, 0, 9, 1)]
    for df in dfs:
        ser = cp.serialize_cpartd(df)
        assert 'm' in kinds(ser)
        pd.testing.assert_frame_equal(cp.deserialize(ser), df)
    p = cpartd.PandasBlocks(Dict())
    for df in dfs:
        p.append({'k': df})
    pd.testing.assert_frame_equal(p.get('k'), cp.join(dfs))
    one = cp.serialize_cpartd(dfs[0][['v']])      # the mask is last
    data = bytearray(one)
    data[-1] = 7                                   # a mask byte of 7
    with pytest.raises(cpartd.CorruptError):
        cp.deserialize(bytes(data))
    frames = [bytes(f) for f in C.framesplit(one)]
    frames[-1] = frames[-1][:-1]                   # a short block
    with pytest.raises(cpartd.CorruptError):
        cp.deserialize(b''.join(C.frame(f) for f in frames))


def test_mixed_str_and_nan_stay_mixed():
    s = pd.Series(['a', np.nan, None, 'b'], dtype=object)
    df = pd.DataFrame({'s': s})
    ser = cp.serialize_cpartd(df)
    assert kinds(ser)[2] == 's'
    back = cp.deserialize(ser)['s'].tolist()
    assert back[0] == 'a' and back[1] != back[1] and back[2] is None


def test_both_formats_in_one_key(tmp_path):
    path = str(tmp_path / 's')
    a = cpartd.PandasBlocks(File(path), format='cpartd')
    b = cpartd.PandasBlocks(File(path), format='partd')
    dfs = [frame(4, 1), frame(3, 2), frame(5, 3)]
    a.append({'k': dfs[0]})
    b.append({'k': dfs[1]})
    a.append({'k': dfs[2]})
    pd.testing.assert_frame_equal(a.get('k'), cp.join(dfs))
    pd.testing.assert_frame_equal(b.get('k'), cp.join(dfs))


def test_store_for_partd_is_read_by_partd(tmp_path, needs_ref):
    """A File with a path of the caller's gets partd's format: the
    reference reads it, and cpartd reads what the reference wrote."""
    path = str(tmp_path / 's')
    ours = cpartd.PandasBlocks(File(path))
    assert ours.format == 'partd'
    theirs = needs_ref.PandasBlocks(needs_ref.File(path))
    dfs = [CASES['odd strings']()[0], frame(5).drop(columns=['n', 'm'])]
    for i, df in enumerate(dfs):
        ours.append({'k%d' % i: df})
        theirs.append({'r%d' % i: df})
    for i, df in enumerate(dfs):
        pd.testing.assert_frame_equal(theirs.get('k%d' % i), df)
        pd.testing.assert_frame_equal(ours.get('r%d' % i), df)


def test_cpartd_format_is_not_partds(tmp_path, needs_ref):
    path = str(tmp_path / 's')
    cpartd.PandasBlocks(File(path), format='cpartd').append(
        {'k': pd.DataFrame({'s': ['a', 'b']})})
    with pytest.raises(Exception):
        needs_ref.PandasBlocks(needs_ref.File(path)).get('k')


def test_format_choice(tmp_path):
    from cpartd.file import cleanup_files
    P = cpartd.PandasBlocks
    assert P().format == 'cpartd'                     # File(): temporary
    assert P(Buffer(Dict(), File())).format == 'cpartd'
    assert P(Dict()).format == 'cpartd'
    assert P(cpartd.Log(str(tmp_path / 'log'))).format == 'cpartd'
    assert P(cpartd.ZLib(File())).format == 'cpartd'
    kept = str(tmp_path / 'kept')
    assert P(File(kept)).format == 'partd'
    assert P(Buffer(Dict(), File(kept))).format == 'partd'
    assert P(cpartd.ZLib(File(kept))).format == 'partd'
    dask_like = str(tmp_path / 'x.partd')             # as dask makes them
    f = File(dask_like)
    cleanup_files.append(dask_like)
    try:
        p = P(Buffer(Dict(), f))
        assert p.format == 'cpartd'
        assert pickle.loads(pickle.dumps(p)).format == 'cpartd'
    finally:
        cleanup_files.remove(dask_like)
    assert pickle.loads(pickle.dumps(P(File(kept)))).format == 'partd'
    assert P(File(kept), format='cpartd').format == 'cpartd'
    with pytest.raises(ValueError):
        P(File(kept), format='pickle')


def test_corrupt_cpartd_store_raises_never_crashes(tmp_path):
    """Damaged bytes (outside the pickled headers, which are unpickled as
    partd does) of a cpartd-format key: an exception, never a crash."""
    p = cpartd.PandasBlocks(File(str(tmp_path / 's')), format='cpartd')
    for n in (5, 1, 7):
        p.append({'k': frame(n, n).drop(columns=['n'])})
    outcomes = damage_rounds(p, 'k', 3)
    assert 'CorruptError' in outcomes, outcomes


def serialize_v1(df):
    """A frame in cpartd's format version 1 (the whole header pickled,
    categories in it), as cpartd wrote before version 2."""
    headers, kinds, parts = cp._parts(df, True)
    return C.blocks_frames(pickle.dumps((cp.MARK, 1, ''.join(kinds),
                                         headers)), parts)


def test_bad_headers_raise_corrupt():
    df = pd.DataFrame({'s': ['a']})
    parts = C.framesplit(serialize_v1(df))
    h = pickle.loads(parts[0])
    for bad in [(cp.MARK, 2) + h[2:], ('other',) + h[1:],
                h[:2] + ('rr' + h[2][2:],) + h[3:],
                h[:2] + ('ss',) + h[3:], 'a string', {'a': 1}]:
        frames = [C.frame(pickle.dumps(bad))] + [C.frame(bytes(x))
                                                 for x in parts[1:]]
        with pytest.raises(cpartd.CorruptError):
            cp.deserialize(b''.join(frames))
    with pytest.raises(cpartd.CorruptError):      # a part missing
        cp.deserialize(b''.join(C.frame(bytes(x)) for x in parts[:-1]))


def test_dask_shuffle_uses_the_cpartd_format(tmp_path):
    """dask's disk shuffle through install_as_partd: its store gets the
    cpartd format, and the shuffle's result is right."""
    pytest.importorskip('dask.dataframe')
    code = r'''
import cpartd
cpartd.install_as_partd()
import numpy as np, pandas as pd, dask, dask.dataframe as dd
import cpartd.pandas as cp
seen = []
init = cp.PandasBlocks.__init__
def spy(self, *a, **k):
    init(self, *a, **k)
    seen.append(self.format)
cp.PandasBlocks.__init__ = spy
n = 3000
df = pd.DataFrame({'k': np.arange(n) % 13, 'x': np.arange(n) * 0.5,
                   's': ['n%d' % i for i in range(n)],
                   'm': ['a' if i % 3 else np.nan for i in range(n)],
                   'c': pd.Categorical(['u', 'v', 'w'] * (n // 3)),
                   'i': pd.array(np.arange(n), dtype='Int64')})
with dask.config.set(scheduler='threads', shuffle='disk'):
    out = dd.from_pandas(df, npartitions=5).shuffle('k').compute()
pd.testing.assert_frame_equal(out.sort_index(), df)
assert seen and set(seen) == {'cpartd'}, seen
print('ok')
'''
    env = dict(os.environ, PYTHONPATH=build_python_dir())
    env.pop('CPARTD_AS_PARTD', None)
    r = subprocess.run([sys.executable, '-c', code], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'ok' in r.stdout
