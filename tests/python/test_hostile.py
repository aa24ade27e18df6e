# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""Hostile keys stay inside the store, never collide, and bad input fails
with the right exception."""
import errno
import os

import pytest

import cpartd
from cpartd import Buffer, Dict, File

HOSTILE = ['../x', '../../etc/passwd', '/abs/path', '.lock', '.', '..', '',
           'x!y', 'xy', 'ключ', 'a/b', 'n\x00ul', 'k' * 300, '%41', '%',
           '%#tmp', ('up', '..', 'x'), ('a', '..', 'b'), ('/', ''), b'\xff\xfe',
           ('клю', 'x' * 600), ' ', '\n']


def listing(root):
    out = []
    for d, dirs, files in os.walk(root):
        out += [os.path.join(d, f) for f in files]
    return out


def test_hostile_keys_stay_inside(tmp_path):
    root = str(tmp_path / 'store')
    p = File(root)
    outside = set(os.listdir(str(tmp_path)))
    data = {k: ('value of %r' % (k,)).encode() for k in HOSTILE}
    p.append(data)
    p.append(data)
    for k in HOSTILE:
        assert p.get(k) == data[k] * 2, k
        fn = os.path.realpath(p.filename(k))
        assert fn.startswith(os.path.realpath(root) + os.sep), (k, fn)
    assert set(os.listdir(str(tmp_path))) == outside   # nothing written beside
    assert not os.path.exists('/abs/path')
    # the lock file is still the lock file
    with open(os.path.join(root, '.lock'), 'rb') as f:
        assert f.read() == b''
    # no two keys share a file
    assert len({p.filename(k) for k in HOSTILE}) == len(HOSTILE)
    assert len(listing(root)) == len(HOSTILE) + 1
    got = p.keys()
    assert len(got) == len(HOSTILE)
    p.delete(list(HOSTILE))
    assert p.get(list(HOSTILE)) == [b''] * len(HOSTILE)


def test_xy_collision_fixed(tmp_path):
    p = File(str(tmp_path / 's'))
    p.append({'x!y': b'1', 'xy': b'2'})
    assert p.get(['x!y', 'xy']) == [b'1', b'2']


def test_long_keys(tmp_path):
    p = File(str(tmp_path / 's'))
    k = 'é' * 5000                        # 10000 bytes of UTF-8
    p.append({k: b'1'})
    assert p.get(k) == b'1'
    with pytest.raises(ValueError):
        p.append({'x' * 20000: b'1'})    # past PD_KEY_MAX
    with pytest.raises(ValueError):
        p.append({tuple(str(i) for i in range(100)): b'1'})  # too many parts


@pytest.mark.parametrize('make', [Dict, lambda: File()])
def test_wrong_types(make):
    p = make()
    for bad in [None, object(), ['list'], {'d': 1}, frozenset(), 1j]:
        with pytest.raises(TypeError):
            p.append({bad: b'1'} if _hashable(bad) else [bad])
        with pytest.raises(TypeError):
            p.get(bad if not isinstance(bad, list) else [[None]])
    with pytest.raises(TypeError):
        p.append({'k': 'a str value'})
    with pytest.raises(TypeError):
        p.append({'k': 5})
    with pytest.raises(TypeError):
        p.append(['k', b'v'])
    with pytest.raises(TypeError):
        p.append({(): b'1'})             # an empty tuple is no key
    with pytest.raises(TypeError):
        p.append({('a', None): b'1'})
    with pytest.raises(TypeError):
        p.iset('k')
    with pytest.raises(TypeError):
        p.delete('k', bogus=1)
    with pytest.raises(TypeError):
        p._get('k')
    with pytest.raises(UnicodeEncodeError):
        p.append({'\udc80': b'1'})
    assert p.get('k') == b''              # nothing was half-applied
    if isinstance(p, File):
        p.close()


def _hashable(x):
    try:
        hash(x)
        return True
    except TypeError:
        return False


@pytest.mark.parametrize('make', [Dict, lambda: File(),
                                  lambda: Buffer(Dict(), File(), 10)])
def test_float_keys(make):
    # dask's shuffles append with float partition keys (test_rearrange) and
    # get with ints: an integral float is the int it equals, as in a Python
    # dict (partd's Dict); any other float is str(key), as partd's File.
    import numpy as np
    p = make()
    p.append({1.0: b'a', -0.0: b'b', 0.25: b'c', np.float32(2): b'd',
              np.float64(0.5): b'e', 1e20: b'f', float('nan'): b'g',
              ('t', 3.0): b'h'})
    assert p.get([1, 0, '0.25', 2, '0.5', 10**20, 'nan', ('t', 3)]) == \
        [b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h']
    assert p.get(0.25) == b'c'


def test_int_like_keys():
    import enum
    import numpy as np

    class E(enum.IntEnum):
        A = 1
    p = Dict()
    p.append({np.int64(3): b'a', True: b'b', -5: b'c', 2**70: b'd'})
    assert p.get(['3', 'True', '-5', str(2**70)]) == [b'a', b'b', b'c', b'd']
    p.append({E.A: b'e'})
    assert p.get(str(E.A)) == b'e'


def test_atomic_batch_on_bad_value():
    p = Dict()
    p.append({'a': b'1'})
    with pytest.raises(TypeError):
        p.append({'a': b'2', 'b': 'not bytes'})
    assert p.get(['a', 'b']) == [b'1', b'']


@pytest.mark.parametrize('make', [Dict, lambda: File(),
                                  lambda: Buffer(Dict(), Dict())])
def test_closed_handle(make):
    p = make()
    p.close()
    assert p.closed
    for call in [lambda: p.append({'x': b'1'}), lambda: p.get('x'),
                 lambda: p.delete('x'), lambda: p.iset('x', b'1'),
                 lambda: p.drop(), lambda: p.keys(), lambda: p.lock.acquire(),
                 lambda: p.iget('x')]:
        with pytest.raises(ValueError, match='closed'):
            call()


def test_oserror_with_errno(tmp_path):
    f = tmp_path / 'plain'
    f.write_bytes(b'')
    with pytest.raises(OSError) as ei:
        File(str(f))
    assert ei.value.errno in (errno.ENOTDIR, errno.EEXIST)
    assert str(f) in str(ei.value)


def test_key_conflict_is_valueerror(tmp_path):
    p = File(str(tmp_path / 's'))
    p.append({'a': b'1'})
    with pytest.raises((ValueError, OSError)) as ei:
        p.append({('a', 'b'): b'2'})
    assert 'a' in str(ei.value)
    assert p.get('a') == b'1'


def test_read_only_store(tmp_path):
    if os.geteuid() == 0:
        pytest.skip('root ignores permissions')
    root = str(tmp_path / 's')
    File(root).append({'x': b'1'})
    os.chmod(root, 0o500)
    try:
        p = File(root)
        assert p.get('x') == b'1'
        with pytest.raises(PermissionError):
            p.append({'y': b'1'})
    finally:
        os.chmod(root, 0o700)


def test_symlink_not_followed(tmp_path):
    root = str(tmp_path / 's')
    target = tmp_path / 'target'
    target.write_bytes(b'secret')
    p = File(root)
    os.symlink(str(target), os.path.join(root, 'link'))
    with pytest.raises(ValueError, match='symlink'):   # PD_ERR_KEY
        p.append({'link': b'x'})
    assert target.read_bytes() == b'secret'
    p.drop()
    assert target.read_bytes() == b'secret'


def test_corrupt_error_class():
    assert issubclass(cpartd.CorruptError, ValueError)
    assert issubclass(cpartd.ProtocolError, ConnectionError)
