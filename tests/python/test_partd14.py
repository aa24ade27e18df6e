# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""partd 1.4's behaviour, side by side with the reference where partd 1.3
(Debian's) agrees with 1.4 (the Buffer, pickles, _iset_seen, extension-dtype
columns), against 1.4's documented behaviour where 1.3 differs (extension-
dtype indexes, categorical appends with different categories)."""
import os
import pickle
import random
from collections import defaultdict

import pytest

import cpartd
from conftest import ref

pd = pytest.importorskip('pandas')
import pandas.testing as tm  # noqa: E402

import cpartd.pandas  # noqa: E402,F401  (used as cpartd.pandas; not lazy)


def joined(data):
    """{key: bytes} of a Dict's .data (partd keeps chunks, cpartd one)."""
    return {k: b''.join(v) for k, v in data.items()}


def impls():
    return [cpartd] + ([ref] if ref is not None else [])


# ------------------------------------------------------------------ Buffer

def test_buffer_places_after_appending():
    for m in impls():
        b = m.Buffer(m.Dict(), m.Dict(), available_memory=10)
        b.append({'x': b'Hello', 'y': b'abc'})
        b.append({'x': b'World!', 'y': b'def'})
        assert joined(b.slow.data) == {'x': b'HelloWorld!'}, m
        assert joined(b.fast.data) == {'y': b'abcdef'}, m
        assert b.memory_usage == 6
        assert dict(b.lengths) == {'y': 6}
        assert b.get(['x', 'y']) in ([b'HelloWorld!', b'abcdef'],)


def _workload(m, seed, limit, rounds=250):
    rnd = random.Random(seed)
    b = m.Buffer(m.Dict(), m.Dict(), available_memory=limit)
    states = []
    for r in range(rounds):
        batch = {}
        for _ in range(rnd.randint(1, 5)):
            n = rnd.randint(1, 2000 if rnd.random() < 0.1 else 300)
            batch['k%d' % rnd.randrange(12)] = bytes([65 + r % 26]) * n
        b.append(batch)
        states.append((joined(b.fast.data), joined(b.slow.data),
                       b.memory_usage, dict(b.lengths)))
    return states


@pytest.mark.parametrize('seed,limit', [(1, 1000), (2, 3000), (3, 0),
                                        (4, 100)])
def test_buffer_placement_equals_partd_after_every_append(needs_ref, seed,
                                                          limit):
    mine = _workload(cpartd, seed, limit)
    theirs = _workload(needs_ref, seed, limit)
    for i, (a, b) in enumerate(zip(mine, theirs)):
        assert a == b, 'append %d differs' % i
        assert a[2] <= limit


def test_buffer_over_file_places_as_partd(needs_ref, tmp_path):
    out = []
    for m in (cpartd, needs_ref):
        slow = m.File(str(tmp_path / m.__name__))
        b = m.Buffer(m.Dict(), slow, available_memory=50)
        rnd = random.Random(7)
        for r in range(60):
            b.append({'k%d' % rnd.randrange(6): b'v' * rnd.randint(1, 40)
                      for _ in range(3)})
        keys = ['k%d' % i for i in range(6)]
        out.append((joined(b.fast.data), b.memory_usage,
                    {k: len(v) for k, v in zip(keys, slow.get(keys))}))
    assert out[0] == out[1]


def test_failed_spill_applies_nothing(tmp_path):
    # A directory where slow's file for 'x' goes: slow's append fails.
    slow = cpartd.File(str(tmp_path / 'slow'))
    b = cpartd.Buffer(cpartd.Dict(), slow, available_memory=10)
    b.append({'x': b'Hello', 'y': b'abc'})
    os.mkdir(slow.filename('x'))
    with pytest.raises((OSError, ValueError)) as e:
        b.append({'x': b'World!', 'y': b'def'})
    assert "spill 'x'" in str(e.value)
    assert b.get(['x', 'y']) == [b'Hello', b'abc']
    assert b.memory_usage == 8
    assert joined(b.fast.data) == {'x': b'Hello', 'y': b'abc'}
    os.rmdir(slow.filename('x'))
    b.append({'x': b'World!', 'y': b'def'})
    assert slow.get('x') == b'HelloWorld!'
    assert joined(b.fast.data) == {'y': b'abcdef'}


@pytest.mark.parametrize('slow_kind', ['Dict', 'File'])
def test_pickled_buffer_keeps_its_attributes(tmp_path, slow_kind):
    results = []
    for m in impls():
        slow = m.File(str(tmp_path / m.__name__)) if slow_kind == 'File' \
            else m.Dict()
        b = m.Buffer(m.Dict(), slow, available_memory=10)
        b.append({'x': b'Hello', 'y': b'abc'})
        b.append({'x': b'World!', 'y': b'def'})
        b.append({'z': b'12'})
        b2 = pickle.loads(pickle.dumps(b))
        assert dict(b2.lengths) == dict(b.lengths) == {'y': 6, 'z': 2}
        assert isinstance(b2.lengths, defaultdict)
        assert b2.memory_usage == b.memory_usage == 8
        assert b2.available_memory == b.available_memory == 10
        assert joined(b2.fast.data) == joined(b.fast.data)
        if slow_kind == 'File':
            assert b2.slow.path == b.slow.path
        else:
            assert joined(b2.slow.data) == joined(b.slow.data)
        assert b2.get(['x', 'y', 'z']) == [b'HelloWorld!', b'abcdef', b'12']
        results.append((dict(b2.lengths), b2.memory_usage,
                        joined(b2.fast.data)))
    assert all(r == results[0] for r in results)


# ------------------------------------------------------------ _iset_seen

@pytest.mark.parametrize('kind', ['Dict', 'File', 'Buffer'])
def test_iset_seen(tmp_path, kind):
    seen = []
    for m in impls():
        if kind == 'Dict':
            p = m.Dict()
        elif kind == 'File':
            p = m.File(str(tmp_path / m.__name__))
        else:
            p = m.Buffer(m.Dict(), m.Dict())
        assert p._iset_seen == set()
        p.iset('a', b'1')
        p.iset('a', b'2')                 # seen: left alone
        assert p._iset_seen == {'a'}
        assert p.get('a') == b'1'
        p._iset_seen.clear()              # forgotten: set again, except
        p.iset('a', b'3')                 # through a Buffer's fast, which
        assert p.get('a') == (b'1' if kind == 'Buffer' else b'3')  # saw it
        p.iset(('t', 1), b'x')
        q = pickle.loads(pickle.dumps(p))
        assert q._iset_seen == set()      # a copy starts afresh
        seen.append(set(p._iset_seen))
        p.drop()
        assert p._iset_seen == set()
        assert p.get('a') == b''
    assert all(s == seen[0] for s in seen)
    assert seen[0] == {'a', ('t', 1)}


# ------------------------------------------------- pandas extension dtypes

def _index(dtype):
    if dtype in ('Int64', 'Int32', 'UInt8'):
        return pd.Index(pd.array([4, 5, None], dtype=dtype), name='i')
    if dtype in ('Float64', 'Float32'):
        return pd.Index(pd.array([4.5, 5, None], dtype=dtype), name='i')
    if dtype == 'boolean':
        return pd.Index(pd.array([True, False, None], dtype=dtype))
    if dtype == 'string':
        return pd.Index(pd.array(['a', 'b', None], dtype=dtype))
    if dtype == 'category':
        return pd.CategoricalIndex(['a', 'b', 'a'], name='c')
    if dtype == 'interval':
        return pd.interval_range(0, 3)
    if dtype == 'period':
        return pd.period_range('2000', periods=3, freq='D')
    if dtype == 'datetime64[ns, UTC]':
        return pd.date_range('2000', periods=3, tz='UTC')
    raise AssertionError(dtype)


INDEX_DTYPES = ['Int64', 'Int32', 'UInt8', 'Float64', 'Float32', 'boolean',
                'string', 'category', 'interval', 'period',
                'datetime64[ns, UTC]']


@pytest.mark.parametrize('dtype', INDEX_DTYPES)
def test_extension_dtype_index_round_trips(dtype):
    # partd 1.4 pickles indexes of extension dtypes (1.3 fails on them).
    df = pd.DataFrame({'x': [1, 2, 3]}, index=_index(dtype))
    tm.assert_frame_equal(cpartd.pandas.deserialize(
        cpartd.pandas.serialize(df)), df)
    p = cpartd.PandasBlocks(cpartd.Dict())
    p.append({'k': df})
    p.append({'k': df})
    tm.assert_frame_equal(p.get('k'), pd.concat([df, df]))
    # ... and as columns
    if dtype not in ('boolean',):
        wide = pd.DataFrame([[1, 2, 3]], columns=_index(dtype))
        tm.assert_frame_equal(cpartd.pandas.deserialize(
            cpartd.pandas.serialize(wide)), wide)


def _column(dtype):
    if dtype in ('Int64', 'Int32', 'UInt8', 'Float64', 'Float32'):
        return pd.array([1, None, 3], dtype=dtype)
    if dtype == 'boolean':
        return pd.array([True, None, False], dtype=dtype)
    if dtype == 'string':
        return pd.array(['a', None, 'c'], dtype=dtype)
    if dtype == 'category':
        return pd.Categorical(['a', 'b', 'a'], ordered=True)
    if dtype == 'interval':
        return pd.arrays.IntervalArray.from_breaks([0, 1, 2, 3])
    if dtype == 'period':
        return pd.array(pd.period_range('2000', periods=3, freq='M'))
    if dtype == 'tz':
        return pd.date_range('2000', periods=3, tz='Europe/Paris')
    if dtype == 'sparse':
        return pd.arrays.SparseArray([0, 0, 1])
    raise AssertionError(dtype)


COLUMN_DTYPES = ['Int64', 'Int32', 'UInt8', 'Float64', 'Float32', 'boolean',
                 'string', 'category', 'interval', 'period', 'tz', 'sparse']


@pytest.mark.parametrize('dtype', COLUMN_DTYPES)
def test_extension_dtype_columns_as_partd(needs_ref, dtype, tmp_path):
    df = pd.DataFrame({'a': _column(dtype), 'b': [1.5, 2.5, 3.5]},
                      index=pd.Index([7, 8, 9], name='i'))
    mine = cpartd.pandas.deserialize(cpartd.pandas.serialize(df))
    theirs = needs_ref.pandas.deserialize(needs_ref.pandas.serialize(df))
    tm.assert_frame_equal(mine, df)
    tm.assert_frame_equal(mine, theirs)
    # each reads the other's bytes
    tm.assert_frame_equal(
        needs_ref.pandas.deserialize(cpartd.pandas.serialize(df)), df)
    tm.assert_frame_equal(
        cpartd.pandas.deserialize(needs_ref.pandas.serialize(df)), df)
    # several appends, one get (partd's join; cpartd's concatenation)
    p = cpartd.PandasBlocks(cpartd.File(str(tmp_path / 'c')))
    q = needs_ref.PandasBlocks(needs_ref.File(str(tmp_path / 'r')))
    for s in (p, q):
        s.append({'k': df})
        s.append({'k': df.iloc[:2]})
    tm.assert_frame_equal(p.get('k'), q.get('k'))
    tm.assert_frame_equal(p.get('k'), pd.concat([df, df.iloc[:2]]))


def test_categorical_appends_with_different_categories():
    # partd 1.4's join keeps the column categorical (1.3: object).
    a = pd.DataFrame({'c': pd.Categorical(['x', 'y']), 'n': [1, 2]})
    b = pd.DataFrame({'c': pd.Categorical(['z', 'x']), 'n': [3, 4]},
                     index=[2, 3])
    p = cpartd.PandasBlocks(cpartd.Dict())
    p.append({'k': a})
    p.append({'k': b})
    got = p.get('k')
    assert isinstance(got.dtypes['c'], pd.CategoricalDtype)
    assert list(got['c']) == ['x', 'y', 'z', 'x']
    assert set(got['c'].cat.categories) == {'x', 'y', 'z'}
    assert list(got['n']) == [1, 2, 3, 4]


def test_no_pandas_internals_that_pandas_2_removed(monkeypatch):
    # DataFrame._data and the is_*_dtype helpers are gone or deprecated in
    # pandas 2: cpartd must not need them.
    import pandas.api.types as types

    def gone(*args, **kwargs):
        raise AssertionError('used a pandas API that pandas 2 removed')

    monkeypatch.setattr(pd.DataFrame, '_data', property(gone), raising=False)
    for name in ('is_datetime64tz_dtype', 'is_categorical_dtype',
                 'is_extension_array_dtype', 'is_period_dtype',
                 'is_interval_dtype', 'is_sparse'):
        monkeypatch.setattr(types, name, gone, raising=False)
    df = pd.DataFrame({c: _column(c) for c in COLUMN_DTYPES})
    df.index = _index('Int64')
    p = cpartd.PandasBlocks(cpartd.Dict())
    p.append({'k': df})
    p.append({'k': df})
    tm.assert_frame_equal(p.get('k'), pd.concat([df, df]))
    here = os.path.dirname(cpartd.pandas.__file__)
    src = ''
    for mod in ('pandas.py', 'blocks.py'):
        with open(os.path.join(here, mod)) as f:
            src += f.read()
    for name in ('._data', 'is_datetime64tz_dtype', 'is_categorical_dtype',
                 'is_extension_array_dtype'):
        assert name not in src.replace('# _data', ''), name
