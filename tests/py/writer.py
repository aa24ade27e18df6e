# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""Concurrency writer using the Python reference (test_concurrency_writers.c).

usage: writer.py ROOT WRITER BATCHES KEYS [GOFD]

Each batch appends "<writer>:<batch>:<key>;" to every key k0..k{KEYS-1} in
one partd.File.append call (which holds the store's flock for the whole
call).  If GOFD is given, waits for EOF on that descriptor first.
"""
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _partd_file import File  # noqa: E402


def main():
    root, w, nb, nk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if len(sys.argv) > 5:
        fd = int(sys.argv[5])
        while os.read(fd, 1):
            pass
        os.close(fd)
    p = File(root)
    for b in range(nb):
        p.append({'k%d' % k: ('%d:%d:%d;' % (w, b, k)).encode() for k in range(nk)})
    return 0


if __name__ == '__main__':
    sys.exit(main())
