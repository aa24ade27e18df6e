# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""One operation on a store with the Python reference (tests/*.c helpers).

usage: op.py ROOT append KEY VALUE | iset KEY VALUE | get KEY | delete KEY...
       | drop
A KEY containing ',' is a tuple of its comma-separated parts.
get writes the raw value to stdout.
"""
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _partd_file import File  # noqa: E402


def key(s):
    return tuple(s.split(',')) if ',' in s else s


def main():
    root, op, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    p = File(root)
    if op == 'append':
        p.append({key(args[0]): args[1].encode()})
    elif op == 'iset':
        p.iset(key(args[0]), args[1].encode())
    elif op == 'get':
        sys.stdout.buffer.write(p.get(key(args[0])))
    elif op == 'delete':
        p.delete([key(a) for a in args])
    elif op == 'drop':
        p.drop()
    else:
        print('unknown op', op, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
