# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""A File's single-key get with no size to go by (a fresh handle, or the
last large value did not fit its guess) asks the key's file size first
(lstat, without the store's lock) and reads straight into a bytes object of
that size (bindings/ext/methods.c, s_get_one).  The size is only a guess:
whatever happens to the file between the guess and the read, the get
returns what the file holds when it is read under the lock, never garbage
and never a mix."""
import multiprocessing as mp
import os
import struct
import time

import pytest

import cpartd

# Sizes around the binding's threshold for reading into a bytes object
# (4096), around the File's read slack (size / 16, 256..4096 bytes) and
# the binding's "keep the block" margin (8192), and a large value.
SIZES = [0, 1, 4095, 4096, 4097, 8191, 8192, 8193, 65535, 65536, 65537,
         (1 << 20) - 1, 1 << 20, (1 << 20) + 4097, (16 << 20) + 1]


def pattern(size, seed):
    block = bytes((seed * 31 + j) % 251 for j in range(4096))
    return (block * (size // 4096 + 1))[:size]


@pytest.mark.parametrize('size', SIZES)
def test_fresh_handle_first_get(tmp_path, size):
    path = str(tmp_path / 'f')
    v = pattern(size, size % 97)
    w = cpartd.File(path)
    if size:
        w.append({'k': v[:size // 2]})
        w.append({'k': v[size // 2:]})
    w.close()
    for getter in ('get', 'iget'):
        p = cpartd.File(path)   # no size known: the probe runs
        got = p.get('k') if getter == 'get' else p.iget('k')
        assert type(got) is bytes
        assert len(got) == size and got == v
        assert got + b'!' == v + b'!'   # the terminating NUL is in place
        # the same key again (size known), and a missing one
        assert p.get('k') == v
        assert p.get('missing') == b''
        p.close()


def test_every_size_after_every_size(tmp_path):
    """Each size read right after each other size on one handle: the
    guess (the last size, or the probe after a large miss) too small, too
    large by a little or by a lot, and exact."""
    p = cpartd.File(str(tmp_path / 'f'))
    vals = {}
    for i, size in enumerate(SIZES[:-1]):
        vals['k%d' % i] = pattern(size, i)
        if size:
            p.append({'k%d' % i: vals['k%d' % i]})
    keys = list(vals)
    for a in keys:
        for b in keys:
            assert p.get(a) == vals[a]
            assert p.get(b) == vals[b], (a, b)
    p.close()


def test_value_changed_by_another_handle(tmp_path):
    """Another handle grows, replaces and deletes the value between this
    handle's gets: every get returns the current value."""
    path = str(tmp_path / 'f')
    r = cpartd.File(path)
    w = cpartd.File(path)
    w.append({'k': pattern(5000, 1)})
    assert r.get('k') == pattern(5000, 1)          # probe: 5000
    w.append({'k': pattern(3 << 20, 2)})           # grows far past the guess
    want = pattern(5000, 1) + pattern(3 << 20, 2)
    assert r.get('k') == want                      # a miss: copied
    w.append({'k': b'z' * 100})                    # grows a little
    want += b'z' * 100
    assert r.get('k') == want                      # probe again: exact
    w.delete('k')
    w.append({'k': pattern(6000, 3)})              # shrinks
    assert r.get('k') == pattern(6000, 3)
    w.delete('k')
    assert r.get('k') == b''
    w.close()
    r.close()


def test_key_file_replaced_by_symlink(tmp_path):
    """A symlink where the key's file should be: lstat does not follow it,
    so the guess stays unknown, and the get refuses it as the store does
    (it never follows symlinks)."""
    path = tmp_path / 'f'
    outside = tmp_path / 'outside'
    outside.write_bytes(b'secret' * 10000)
    p = cpartd.File(str(path))
    os.symlink(str(outside), str(path / 'k'))
    for _ in range(2):   # the second get: the guess still unknown
        with pytest.raises(ValueError, match='symlink'):
            p.get('k')
    p.close()


# -------------------------------------------------- a concurrent writer

CHUNK_HDR = struct.Struct('<II')   # chunk length, chunk index


def make_chunk(i, size):
    body = bytes([i % 251]) * (size - CHUNK_HDR.size)
    return CHUNK_HDR.pack(size, i) + body


def check_value(v):
    """v must be chunks 0, 1, 2, ... whole, each as make_chunk made it.
    Returns how many."""
    pos = i = 0
    while pos < len(v):
        assert len(v) - pos >= CHUNK_HDR.size, ('torn header', pos, len(v))
        size, idx = CHUNK_HDR.unpack_from(v, pos)
        assert idx == i, ('chunk out of order', pos, idx, i)
        assert size >= CHUNK_HDR.size and pos + size <= len(v), \
            ('torn chunk', pos, size, len(v))
        assert v[pos:pos + size] == make_chunk(i, size), ('bad bytes', i)
        pos += size
        i += 1
    return i


def writer(path, stop_at, sizes):
    p = cpartd.File(path)
    i = 0
    while time.monotonic() < stop_at:
        p.append({'k': make_chunk(i, sizes[i % len(sizes)])})
        i += 1
    p.close()


def test_value_grows_while_read_by_another_process(tmp_path):
    """A writer process appends chunks of 4 KiB .. 1 MiB to the key as fast
    as it can, so the file grows between the size guess and the read: every
    get (fresh handles, whose first get probes, and one long-lived handle)
    returns whole chunks in order, and never fewer than before."""
    path = str(tmp_path / 'f')
    cpartd.File(path).close()
    sizes = [4096, 1 << 20, 5000, 300000, 4097, 70000]
    ctx = mp.get_context('fork')
    proc = ctx.Process(target=writer,
                       args=(path, time.monotonic() + 3.0, sizes))
    proc.start()
    long_lived = cpartd.File(path)
    seen = 0
    gets = 0
    try:
        while proc.is_alive() or gets < 10:
            p = cpartd.File(path)
            for h in (p, long_lived):
                n = check_value(h.get('k'))
                assert n >= seen
                seen = n
                gets += 1
            p.close()
    finally:
        proc.join(30)
    assert proc.exitcode == 0
    assert check_value(long_lived.get('k')) >= seen > 0
    long_lived.close()
