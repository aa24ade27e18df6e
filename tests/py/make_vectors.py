# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""Writes the codec cross-compatibility vectors (tests/vectors/).

usage: /usr/bin/python3 tests/py/make_vectors.py [OUTDIR]

For each codec the reference shares with libpartd (ZLib, BZ2, Snappy,
Blosc), builds a small store with the reference's own classes,
partd.<Codec>(partd.File(OUTDIR/<codec>)), and writes OUTDIR/<codec>.expect:
one line per key,

    <key in pd_key_repr form> TAB <decoded size> TAB <frames> TAB <value>

where <frames> is the number of frames in the key's file and <value> is
"hex:<bytes in hex>" (values up to 64 bytes) or "sha256:<digest in hex>".
A key that was never written is listed with size 0 and 0 frames.  Lines
starting with '#' are comments.  tests/test_codec_compat_ref.c reads them.

Keys stay in the reference's safe file-name set (A-Z a-z 0-9 - _ . ( )
space) so that both implementations name the files the same way.  The
output is deterministic: rerunning gives the same bytes.
"""
import hashlib
import os
import shutil
import struct
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _partd_file import File  # noqa: E402  (also registers the partd package)
from partd.compressed import BZ2, Blosc, Snappy, ZLib  # noqa: E402

CODECS = [('zlib', 'ZLib', ZLib), ('bz2', 'BZ2', BZ2),
          ('snappy', 'Snappy', Snappy), ('blosc', 'Blosc', Blosc)]


def big_value():
    """About 100 KB of compressible text, like a CSV of shuffle rows."""
    cats = ['apple', 'banana', 'cherry', 'durian', 'elderberry']
    rows = []
    i = 0
    while sum(map(len, rows)) < 100_000:
        rows.append('row %06d, category %-10s, status ok, weight %d\n'
                    % (i, cats[i % 5], i % 10))
        i += 1
    return ''.join(rows).encode()


# (key, value) appends, in order; a key is a str or a tuple of str.
# Appends to the same key go into separate append calls, so each becomes
# its own frame, as in a shuffle.
APPENDS = [
    ('alpha', b'hello '),
    ('binary', bytes(range(256))),
    ('alpha', b'world'),
    ('alpha', b''),  # an empty value still writes a frame
    ('empty', b''),  # a key holding only an empty value
    ('binary', bytes(range(255, -1, -1))),
    ('big', big_value()),
    ('big', b'tail'),
    (('tuple', 'part'), b'in a directory'),
    (('tuple', 'other'), b'\x00\x01\x02'),
    ('Key With Spaces (1)', b'spaces and parens'),
    ('alpha', b'!'),
    ('7', b'int key'),  # what the reference stores for the int key 7
]
# Many small frames in one key.
APPENDS += [('many', b'%d;' % i) for i in range(40)]
MISSING = ['missing', ('tuple', 'missing')]


def repr_part(b):
    """One quoted part of pd_key_repr's form."""
    out = ["'"]
    for c in b:
        if c == 0x5c:
            out.append('\\\\')
        elif c == 0x27:
            out.append("\\'")
        elif c == 0x09:
            out.append('\\t')
        elif c == 0x0a:
            out.append('\\n')
        elif c == 0x0d:
            out.append('\\r')
        elif 0x20 <= c < 0x7f:
            out.append(chr(c))
        else:
            out.append('\\x%02x' % c)
    out.append("'")
    return ''.join(out)


def key_repr(k):
    if isinstance(k, tuple):
        return '(' + ', '.join(repr_part(p.encode()) for p in k) + ')'
    return repr_part(k.encode())


def count_frames(raw):
    n, off = 0, 0
    while off < len(raw):
        (size,) = struct.unpack_from('<Q', raw, off)
        off += 8 + size
        n += 1
    assert off == len(raw), 'frames do not tile the file'
    return n


def describe(v):
    if len(v) <= 64:
        return 'hex:' + v.hex()
    return 'sha256:' + hashlib.sha256(v).hexdigest()


def make(outdir, name, clsname, cls):
    root = os.path.join(outdir, name)
    if os.path.exists(root):
        shutil.rmtree(root)
    p = cls(File(root))
    want = {}
    order = []
    for k, v in APPENDS:
        if k not in want:
            want[k] = b''
            order.append(k)
        p.append({k: v})
        want[k] += v
    p.iset('isetkey', b'set once')
    p.iset('isetkey', b'ignored: iset is idempotent')
    want['isetkey'] = b'set once'
    order.append('isetkey')
    lines = ['# %s vectors written by the reference: partd.%s(partd.File)'
             % (name, clsname),
             '# key\tdecoded size\tframes\tvalue (hex: bytes, or sha256:)']
    for k in order:
        got = p.get(k)
        assert got == want[k], (name, k)
        with open(p.partd.filename(k), 'rb') as f:
            nframes = count_frames(f.read())
        lines.append('%s\t%d\t%d\t%s' % (key_repr(k), len(want[k]), nframes,
                                         describe(want[k])))
    for k in MISSING:
        assert p.get(k) == b''
        lines.append('%s\t0\t0\thex:' % key_repr(k))
    with open(os.path.join(outdir, name + '.expect'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), '..', 'vectors')
    os.makedirs(outdir, exist_ok=True)
    for name, clsname, cls in CODECS:
        make(outdir, name, clsname, cls)
    return 0


if __name__ == '__main__':
    sys.exit(main())
