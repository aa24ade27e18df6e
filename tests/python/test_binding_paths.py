# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The extension's fast paths (bindings/ext/): get and iget of one key,
keys converted without a call (small ints, ASCII str, bytes), batches held
in the call's own memory up to 8 entries, the argument parsing skipped for
one positional argument.  Each must give what the general path gives, raise
the same exceptions, and release what it takes."""
import array
import enum
import sys
import threading

import numpy as np
import pytest

import cpartd
from cpartd import Buffer, Dict, File


@pytest.fixture(params=['Dict', 'File', 'Buffer'])
def store(request, root):
    p = {'Dict': Dict,
         'File': lambda: File(root),
         'Buffer': lambda: Buffer(Dict(), File(root), available_memory=64),
         }[request.param]()
    yield p
    if not p.closed:
        p.close()


class Color(enum.IntEnum):
    RED = 7


class S(str):
    pass


class B(bytes):
    pass


# (key, the str or tuple of str that names the same key)
KEYS = [
    ('abc', 'abc'),
    ('', ''),
    ('é∂', 'é∂'),
    (S('sub'), 'sub'),
    (b'raw', 'raw'),
    (B(b'bsub'), 'bsub'),
    (b'\xff\x00', b'\xff\x00'),
    (0, '0'),
    (7, '7'),
    (-1, '-1'),
    (2**30 - 1, str(2**30 - 1)),     # the largest one-digit int
    (2**30, str(2**30)),             # two digits: the general path
    (-2**30, str(-2**30)),
    (2**63 - 1, str(2**63 - 1)),
    (-2**63, str(-2**63)),
    (2**64, str(2**64)),             # past long long: str(key)
    (-2**70, str(-2**70)),
    (True, 'True'),
    (Color.RED, str(Color.RED)),
    (np.int64(12), '12'),
    (3.0, '3'),
    (-0.0, '0'),
    (0.5, '0.5'),
    (np.float32(2), '2'),
    (('a', 1), ('a', '1')),
    (('a', ('b', (2, b'c'))), ('a', 'b', '2', 'c')),
    ((5,), '5'),
]


@pytest.mark.parametrize('key,alias', KEYS, ids=[repr(k) for k, _ in KEYS])
def test_single_key_every_type(store, key, alias):
    store.append({key: b'x'})
    store.append({alias: b'y'})
    assert store.get(key) == b'xy'
    assert store.get(alias) == b'xy'
    assert store.iget(key) == b'xy'
    assert store.get([key]) == [b'xy']
    assert store._get([key]) == [b'xy']
    assert store.get(key, lock=False) == b'xy'
    store.delete(key)
    assert store.get(alias) == b''


def test_int_text_every_length():
    # Every length of decimal text, both signs, around each power of ten
    # and of two: stored under int k, read back under str(k).
    p = Dict()
    ks = {0, 2**63 - 1, -2**63}
    for e in range(19):
        for d in (-1, 0, 1):
            ks.update({10**e + d, -(10**e + d)})
    for e in range(64):
        for d in (-1, 0, 1):
            ks.update({2**e + d, -(2**e + d)})
    ks = sorted(k for k in ks if -2**63 <= k < 2**63)
    p.append({k: str(k).encode() for k in ks})
    assert p.get([str(k) for k in ks]) == [str(k).encode() for k in ks]
    assert sorted(p.keys(), key=int) == [str(k) for k in ks]


@pytest.mark.parametrize('bad', [None, object(), 1j, frozenset(), {'d': 1},
                                 (), ('a', None), ((),)])
def test_single_key_bad_types(store, bad):
    for call in (store.get, store.iget, store.delete):
        with pytest.raises(TypeError):
            call(bad)
    with pytest.raises(TypeError):
        store.iset(bad, b'1')
    with pytest.raises(TypeError):
        store.append([bad] if isinstance(bad, dict) else {bad: b'1'})


def test_single_key_errors(store):
    with pytest.raises(UnicodeEncodeError):
        store.get('\udc80')
    with pytest.raises(UnicodeEncodeError):
        store.iget(('a', '\udc80'))
    with pytest.raises(ValueError, match='longer than'):
        store.get('x' * 20000)          # past PD_KEY_MAX: libpartd's error
    with pytest.raises(ValueError, match='parts'):
        store.get(tuple('p%d' % i for i in range(100)))
    with pytest.raises(ValueError, match='nested too deep'):
        k = 'x'
        for _ in range(100):
            k = (k,)
        store.get(k)
    store.close()
    for call in (lambda: store.get('x'), lambda: store.iget('x'),
                 lambda: store.get(['x']), lambda: store.get(3)):
        with pytest.raises(ValueError, match='closed'):
            call()


def test_empty_values(store):
    store.append({'e': b'', 1: b'', ('t', 2): bytearray()})
    assert store.get('e') == b''
    assert store.get(1) == b''
    assert store.get(('t', 2)) == b''
    assert store.get('missing') == b''
    assert store.get(['e', 'missing', 1]) == [b'', b'', b'']
    store.iset('i', b'')
    assert store.iget('i') == b''
    assert type(store.get('e')) is bytes


@pytest.mark.parametrize('n', [0, 1, 7, 8, 9, 16, 17, 100])
def test_batch_sizes(store, n):
    # Around the 8 entries a batch holds without allocating, with keys of
    # many parts (past the inline key tables) and keys without.
    data = {}
    for i in range(n):
        key = ('k%d' % i,) + tuple('p%d' % j for j in range(i % 40)) \
            if i % 2 else i
        data[key] = b'%d;' % i
    store.append(data)
    store.append(data)
    keys = list(data)
    assert store.get(keys) == [v * 2 for v in data.values()]
    assert store._get_views(keys) == [v * 2 for v in data.values()]
    store.delete(keys[:n // 2])
    assert store.get(keys) == [b''] * (n // 2) + \
        [v * 2 for v in list(data.values())[n // 2:]]


@pytest.mark.parametrize('n', [1, 8, 9, 30])
@pytest.mark.parametrize('where', ['first', 'last', 'all'])
def test_buffer_values_in_batches(store, n, where):
    # Values that are not bytes take a buffer, wherever they stand.
    vals = [b'v%d' % i for i in range(n)]
    idx = {'first': [0], 'last': [n - 1], 'all': range(n)}[where]
    data = {}
    for i, v in enumerate(vals):
        if i in idx:
            v = [bytearray(v), memoryview(v), array.array('b', v)][i % 3]
        data['k%d' % i] = v
    store.append(data)
    assert store.get(['k%d' % i for i in range(n)]) == vals


def test_views_released_on_error(store):
    # A batch that fails after taking buffers releases them: the bytearrays
    # can be resized again (a held export forbids it).
    bas = [bytearray(b'abc') for _ in range(12)]
    data = {'b%d' % i: ba for i, ba in enumerate(bas)}
    data['bad'] = 'not bytes'
    with pytest.raises(TypeError):
        store.append(data)
    data = {'b%d' % i: ba for i, ba in enumerate(bas)}
    data[None] = b'bad key'
    with pytest.raises(TypeError):
        store.append(data)
    for ba in bas:
        ba.extend(b'more')
    assert store.get('b0') == b''


def test_no_reference_leaks(store):
    class Items:
        """A mapping whose items() go bad after a few pairs."""

        def __init__(self, pairs):
            self.pairs = pairs

        def __getitem__(self, k):
            return dict(self.pairs)[k]

        def keys(self):
            return [k for k, _ in self.pairs]

        def __len__(self):
            return len(self.pairs)

        def items(self):
            return self.pairs + ['not a pair']

    key, val = 'k' + str(id(store)), b'value %d' % id(store)
    big = 2**70
    before = [sys.getrefcount(o) for o in (key, val, big)]
    for _ in range(50):
        store.append({key: val, big: val})
        store.get(key)
        store.get([key, big])
        store.iget(big)
        with pytest.raises(TypeError):
            store.append(Items([(key, val), (big, val)]))
        with pytest.raises(TypeError):
            store.append({key: val, big: 'str'})
    assert [sys.getrefcount(o) for o in (key, val, big)] == before


def test_argument_forms(store):
    store.append({'x': b'1'})
    assert store.get('x') == b'1'
    assert store.get(keys='x') == b'1'
    assert store.get('x', False) == b'1'
    assert store.get('x', lock=True) == b'1'
    assert store.get('x', whatever=1) == b'1'   # partd's **kwargs
    with pytest.raises(TypeError):
        store.get()
    with pytest.raises(TypeError):
        store.get('x', True, 'extra')
    with pytest.raises(TypeError):
        store.get('x', keys='y')
    with pytest.raises(TypeError):
        store.delete('x', bogus=1)
    with pytest.raises(TypeError):
        store.iset('x')                      # value is required
    with pytest.raises(TypeError):
        store.append()
    assert sorted(store.keys(False)) == ['x']
    assert sorted(store.keys(lock=False)) == ['x']
    store.append({'y': b'2'}, False)
    store.append(data={'y': b'3'}, fsync=True)
    assert store.get(['x', 'y']) == [b'1', b'23']


def test_lock_through_helper(store):
    lk = store.lock
    assert lk.acquire()
    assert lk.acquire()                        # recursive
    store.append({'x': b'1'}, lock=False)
    lk.release()
    lk.release()
    with pytest.raises(RuntimeError):
        lk.release()
    with store.lock:
        assert store.get('x', lock=False) == b'1'
    assert not store.lock.locked()


def test_raw_iset_error_keeps_message(root):
    # _iset unlocks after a failed append; the error raised is the append's.
    p = File(root)
    p.append({'a': b'1'})
    with pytest.raises((ValueError, OSError)) as ei:
        p._iset(('a', 'b'), b'2')
    assert 'append' in str(ei.value) and 'a/b' in str(ei.value)
    assert p.get('a') == b'1'
    p._iset('a', b'2')                         # the lock was released
    assert p.get('a') == b'2'
    p.close()


def test_threads_small_batches(root):
    # Inline batches live on each calling thread's stack; the GIL is
    # released during every call.
    p = Buffer(Dict(), File(root), available_memory=2000)
    nthreads, rounds = 4, 300

    def work(t):
        for i in range(rounds):
            p.append({('t', t): b'%d,' % i, i % 5: b'.'})
            assert p.get(('t', t)).endswith(b'%d,' % i)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for t in range(nthreads):
        assert p.get(('t', t)) == b''.join(b'%d,' % i for i in range(rounds))
    assert sum(len(p.get(i)) for i in range(5)) == nthreads * rounds
    p.close()


# ---------------------------------------------------------------------------
# Single-key gets read straight into a bytes object sized from the last one


@pytest.mark.parametrize('kind', ['Dict', 'File', 'Buffer', 'ZLib'])
def test_get_into_sizes(tmp_path, kind):
    if kind == 'Dict':
        p = cpartd.Dict()
    elif kind == 'File':
        p = cpartd.File(str(tmp_path / 'f'))
    elif kind == 'Buffer':
        p = cpartd.Buffer(cpartd.Dict(), cpartd.File(str(tmp_path / 'f')),
                          available_memory=10000)
    else:
        p = cpartd.ZLib(cpartd.File(str(tmp_path / 'f')))
    vals = {}
    # sizes around the guess: equal, a little more, much more, less, empty
    for i, size in enumerate([5000, 5000, 5001, 5000 + 313, 5000 + 5000,
                              70000, 70000, 64, 0, 200000, 200000 + 4096,
                              200000 + 4097, 8192, 1 << 20, 4096]):
        key = 'k%d' % i
        v = bytes((i * 7 + j) % 251 for j in range(min(size, 1000))) * (
            size // 1000) + b'x' * (size % 1000)
        assert len(v) == size
        if size:
            p.append({key: v})
        vals[key] = v
    for _ in range(2):
        for key, v in vals.items():
            got = p.get(key)
            assert type(got) is bytes
            assert got == v, (key, len(got), len(v))
            assert len(got) == len(v) and hash(got) == hash(bytes(v))
            assert got + b'!' == v + b'!'
    # a value that grows between gets of the same key
    p.append({'k0': b'y' * 10000})
    assert p.get('k0') == vals['k0'] + b'y' * 10000
    assert p.get('missing') == b''
    p.close()
