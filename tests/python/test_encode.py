# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""Encode and its family over cpartd stores."""
import os
import pickle

import pytest

import cpartd
from cpartd import Dict, File, Buffer, Encode


def codecs():
    out = ['ZLib', 'BZ2']
    for name in ['Snappy', 'Blosc', 'LZ4', 'Zstd']:
        if hasattr(cpartd, name):
            out.append(name)
    return out


@pytest.mark.parametrize('name', codecs())
@pytest.mark.parametrize('inner', ['File', 'Dict', 'Buffer'])
def test_compressed(tmp_path, name, inner):
    root = str(tmp_path / 's')
    q = {'File': lambda: File(root), 'Dict': Dict,
         'Buffer': lambda: Buffer(Dict(), File(root), 100)}[inner]()
    p = getattr(cpartd, name)(q)
    assert isinstance(p, Encode)
    p.append({'x': b'Hello' * 100, 'y': b'1'})
    p.append({'x': b'World' * 100})
    assert p.get('x') == b'Hello' * 100 + b'World' * 100
    assert p.get(['y', 'z']) == [b'1', b'']
    p.iset('i', b'once')
    p.iset('i', b'twice')
    assert p.get('i') == b'once'
    p.delete('y')
    assert p.get('y') == b''
    with p.lock:
        p.append({'x': b'!'}, lock=False)
    assert p.get('x').endswith(b'!')
    p.drop()
    assert p.get('x') == b''


def test_encode_default_file(tmp_path):
    p = cpartd.ZLib()
    assert isinstance(p.partd, File)
    q = cpartd.ZLib(str(tmp_path / 'named'))
    assert q.partd.path == str(tmp_path / 'named')


def test_torn_tail_left_out(tmp_path):
    p = cpartd.ZLib(File(str(tmp_path / 's')))
    p.append({'x': b'a' * 100})
    p.append({'x': b'b' * 100})
    fn = p.partd.filename('x')
    with open(fn, 'r+b') as f:     # a writer killed mid-frame
        f.truncate(os.path.getsize(fn) - 3)
    assert p.get('x') == b'a' * 100


def test_corrupt_frame_raises(tmp_path):
    p = cpartd.ZLib(File(str(tmp_path / 's')))
    if not isinstance(p, cpartd._cpartd.Store):
        pytest.skip('no C Encode layer')
    p.append({'x': b'a' * 100, 'y': b'b'})
    with open(p.partd.filename('x'), 'r+b') as f:
        f.seek(12)
        f.write(b'garbage!')
    with pytest.raises(cpartd.CorruptError, match="'x'"):
        p.get('x')
    assert p.get('y') == b'b'        # other keys are unaffected


def test_c_codec_pickle(tmp_path):
    p = cpartd.ZLib(File(str(tmp_path / 's')))
    p.append({'x': b'1'})
    q = pickle.loads(pickle.dumps(p))
    assert q.get('x') == b'1'


def test_pickle_and_python(tmp_path):
    for cls in [cpartd.Pickle, cpartd.Python]:
        p = cls(Dict())
        p.append({'x': [1, 2, 3], 'y': ['a']})
        p.append({'x': [4]})
        assert p.get('x') == [1, 2, 3, 4]
        assert p.get(['y', 'z']) == [['a'], []]
        q = pickle.loads(pickle.dumps(p))
        assert q.get('x') == [1, 2, 3, 4]


def test_encode_over_python_store():
    from cpartd.buffer import PyBuffer
    inner = PyBuffer(Dict(), Dict(), 10)
    p = cpartd.Pickle(inner)
    p.append({'x': [1] * 10})
    p.append({'x': [2]})
    assert p.get('x') == [1] * 10 + [2]


def test_encode_exit(tmp_path):
    path = str(tmp_path / 's')
    with cpartd.ZLib(File(path)) as p:
        p.append({'x': b'1'})
    assert not os.path.exists(path)


np = pytest.importorskip('numpy')


def test_numpy(tmp_path):
    p = cpartd.Numpy(File(str(tmp_path / 's')))
    x = np.arange(10, dtype='i4')
    p.append({'a': x, ('t', 1): x.astype('f8')})
    p.append({'a': x})
    got = p.get('a')
    assert got.dtype == np.dtype('i4')
    assert (got == np.concatenate([x, x])).all()
    assert (p.get(('t', 1)) == x.astype('f8')).all()
    o = np.array(['a', None, 1], dtype='O')
    p.append({'o': o})
    assert list(p.get('o')) == ['a', None, 1]
    dt = np.dtype('M8[us]')
    p.append({'d': np.array([0, 1], dtype=dt)})
    assert p.get('d').dtype == dt


def test_numpy_structured_dtype_no_eval(tmp_path):
    from cpartd.numpy import parse_dtype
    assert parse_dtype(b"[('a', 'i4')]") == np.dtype([('a', '<i4')])
    assert parse_dtype(b'<M8[us]') == np.dtype('M8[us]')
    marker = tmp_path / 'pwned'
    evil = ("[('a', 'i4')] if __import__('os').system('touch %s') else []"
            % marker).encode()
    with pytest.raises(ValueError):
        parse_dtype(evil)
    assert not marker.exists()
    # through a store: a crafted .dtype file is refused, not run
    p = cpartd.Numpy(File(str(tmp_path / 's')))
    p.append({'a': np.arange(3)})
    with open(p.partd.filename('a.dtype'), 'wb') as f:
        f.write(evil)
    with pytest.raises(ValueError):
        p.get('a')
    assert not marker.exists()


def test_numpy_cross(tmp_path, needs_ref):
    path = str(tmp_path / 's')
    r = needs_ref.Numpy(needs_ref.File(path))
    c = cpartd.Numpy(File(path))
    x = np.arange(5, dtype='u2')
    r.append({'a': x})
    c.append({'a': x})
    assert (c.get('a') == np.concatenate([x, x])).all()
    assert (r.get('a') == np.concatenate([x, x])).all()


pd = pytest.importorskip('pandas')


def frame_(n=5):
    return pd.DataFrame({'a': np.arange(n), 'b': np.arange(n) * 1.5,
                         'c': ['x%d' % i for i in range(n)],
                         'd': pd.Categorical(['u', 'v'] * (n // 2) + ['u'] *
                                             (n % 2))},
                        index=pd.Index(np.arange(n) * 2, name='i'))


def test_pandas_blocks(tmp_path):
    p = cpartd.PandasBlocks(Buffer(Dict(), File(str(tmp_path / 's')), 1000))
    df = frame_()
    p.append({0: df})
    p.append({0: df, 1: df.iloc[:2]})
    got = p.get(0)
    pd.testing.assert_frame_equal(got, pd.concat([df, df]))
    pd.testing.assert_frame_equal(p.get(1), df.iloc[:2])
    assert p.get(2).empty


def test_pandas_blocks_cross(tmp_path, needs_ref):
    path = str(tmp_path / 's')
    r = needs_ref.PandasBlocks(needs_ref.File(path))
    c = cpartd.PandasBlocks(File(path))
    df = frame_()
    r.append({'k': df})
    c.append({'k': df})
    pd.testing.assert_frame_equal(c.get('k'), pd.concat([df, df]))
    pd.testing.assert_frame_equal(r.get('k'), pd.concat([df, df]))


def test_pandas_columns(tmp_path):
    p = cpartd.PandasColumns(File(str(tmp_path / 's')))
    df = frame_()[['a', 'b']]
    p.append({'k': df})
    p.append({'k': df})
    pd.testing.assert_frame_equal(p.get('k'), pd.concat([df, df]))
