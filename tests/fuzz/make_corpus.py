# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""Writes the seed corpora of fuzz_frame and fuzz_decode.

usage: /usr/bin/python3 tests/fuzz/make_corpus.py

Seeds are small valid and damaged framed values of every codec: zlib, bz2,
snappy and blosc made with the Python modules the reference uses (its
defaults), lz4 and zstd with the `lz4` / `zstd` command-line tools (their
seeds are skipped when a tool is missing).  fuzz_decode's input is
[codec index, limit selector] + a key's raw bytes (see fuzz_decode.c).
Seeds named regress-* are not written here: they are inputs that once
failed, kept by hand.
"""
import bz2
import os
import shutil
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CODECS = ['zlib', 'bz2', 'snappy', 'blosc', 'lz4', 'zstd']


def tool(name, args, data):
    if not shutil.which(name):
        return None
    return subprocess.run([name] + args, input=data, check=True,
                          stdout=subprocess.PIPE).stdout


def encoder(codec):
    if codec == 'zlib':
        return zlib.compress
    if codec == 'bz2':
        return bz2.compress
    if codec == 'snappy':
        import snappy
        return snappy.compress
    if codec == 'blosc':
        import blosc
        return blosc.compress
    if codec == 'lz4':
        if not shutil.which('lz4'):
            return None
        return lambda d: tool('lz4', ['-q', '-c', '--content-size'], d)
    if not shutil.which('zstd'):
        return None
    return lambda d: tool('zstd', ['-q', '-c'], d)


def frame(payload):
    return struct.pack('<Q', len(payload)) + payload


def write(target, name, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def decode_seeds():
    text = b'partd shuffle row, ' * 6
    for ci, codec in enumerate(CODECS):
        enc = encoder(codec)
        if enc is None:
            print('skipped %s: no encoder' % codec, file=sys.stderr)
            continue
        f1 = frame(enc(text))
        f2 = frame(enc(b'second value \x00\x01\x02'))
        f3 = frame(enc(bytes(range(64))))
        big = frame(enc(b'x' * 1000))
        lim = bytes([ci, 4])  # limit 1 KiB
        seeds = {
            'one': lim + f1,
            'three': lim + f1 + f2 + f3,
            'empty-value': lim + frame(enc(b'')),
            'torn-tail': lim + f1 + f2[:len(f2) // 2],
            'torn-tail-header': lim + f1 + f2[:5],
            'torn-middle': lim + f1 + f2[:len(f2) // 2] + f3,
            'torn-middle-header': lim + f1 + f2[:3] + f3,
            'zero-tail': lim + f1 + b'\0' * 24,
            'over-limit': bytes([ci, 0]) + big,  # 1000 bytes, limit 64
            'garbage': lim + f1 + frame(b'not a payload of this codec'),
        }
        for what, data in seeds.items():
            write('fuzz_decode', '%s-%s' % (codec, what), data)


def frame_seeds():
    f1, f2 = frame(b'hello'), frame(b'')
    write('fuzz_frame', 'empty', b'')
    write('fuzz_frame', 'one', f1)
    write('fuzz_frame', 'three', f1 + f2 + frame(bytes(range(40))))
    write('fuzz_frame', 'torn-payload', f1 + frame(b'abcdefgh')[:12])
    write('fuzz_frame', 'torn-header', f1 + f1[:5])
    write('fuzz_frame', 'huge-length', f1 + b'\xff' * 8 + b'tail')
    write('fuzz_frame', 'zeros', b'\0' * 40)


def main():
    decode_seeds()
    frame_seeds()
    return 0


if __name__ == '__main__':
    sys.exit(main())
