# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""Two-way codec check against the reference (tests/test_codec_compat_ref.c).

usage: codec_check.py write ROOT CODEC
       codec_check.py read ROOT CODEC

CODEC is zlib, bz2, snappy or blosc: the reference's partd.ZLib, BZ2,
Snappy, Blosc over partd.File(ROOT).  `write` stores the data set below;
`read` checks that ROOT holds exactly it (values, and one frame per
append in each key's file), printing what differs and exiting 1 if
anything does.  tests/compatfix.h builds the same data set in C
(s_live_value there): keep the two in step.

Data set: keys k0..k5 and the tuple ('t', 'u') (index 6); ROUNDS append
calls, each with every key; the value of key i in round j is
value(i, j) below.  Then iset('iset', b'iset value').
"""
import os
import struct
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _partd_file import File  # noqa: E402  (also registers the partd package)
from partd.compressed import BZ2, Blosc, Snappy, ZLib  # noqa: E402

CODECS = {'zlib': ZLib, 'bz2': BZ2, 'snappy': Snappy, 'blosc': Blosc}
NKEYS = 7
ROUNDS = 4
SIZES = [0, 1, 7, 100, 1000, 4096, 33000, 150000]
ISET_VALUE = b'iset value'


def key(i):
    return ('t', 'u') if i == NKEYS - 1 else 'k%d' % i


def size(i, j):
    return SIZES[(i * 3 + j) % len(SIZES)]


def value(i, j):
    """Half text (compressible), half pseudo-random, in 256-byte runs."""
    out = bytearray(size(i, j))
    for n in range(len(out)):
        if (n >> 8) & 1:
            h = (n * 2654435761 + i * 97 + j * 13) & 0xffffffff
            out[n] = (h >> 13) & 0xff
        else:
            out[n] = 0x61 + (n + i + j) % 26
    return bytes(out)


def count_frames(raw):
    n, off = 0, 0
    while off + 8 <= len(raw):
        (sz,) = struct.unpack_from('<Q', raw, off)
        off += 8 + sz
        n += 1
    return n if off == len(raw) else -1


def main():
    op, root, codec = sys.argv[1], sys.argv[2], sys.argv[3]
    p = CODECS[codec](File(root))
    if op == 'write':
        for j in range(ROUNDS):
            p.append({key(i): value(i, j) for i in range(NKEYS)})
        p.iset('iset', ISET_VALUE)
        return 0
    if op != 'read':
        print('unknown op', op, file=sys.stderr)
        return 2
    bad = 0
    for i in range(NKEYS):
        want = b''.join(value(i, j) for j in range(ROUNDS))
        try:
            got = p.get(key(i))
        except Exception as e:  # the reference fails on undecodable frames
            print('%s: get %r raised %r' % (codec, key(i), e))
            bad += 1
            continue
        if got != want:
            print('%s: key %r: got %d bytes, want %d (first difference at %d)'
                  % (codec, key(i), len(got), len(want),
                     next((n for n, (a, b) in enumerate(zip(got, want))
                           if a != b), min(len(got), len(want)))))
            bad += 1
        with open(p.partd.filename(key(i)), 'rb') as f:
            nf = count_frames(f.read())
        if nf != ROUNDS:
            print('%s: key %r: %d frames in its file, want %d'
                  % (codec, key(i), nf, ROUNDS))
            bad += 1
    got = p.get('iset')
    if got != ISET_VALUE:
        print('%s: iset: got %r' % (codec, got[:40]))
        bad += 1
    if bad:
        return 1
    print('%s: ok' % codec)
    return 0


if __name__ == '__main__':
    sys.exit(main())
