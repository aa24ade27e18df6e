# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""A Python partd.Client against a server, for the interop tests
(tests/test_server_interop.c).

usage: zmq_client.py ADDRESS SCENARIO

Scenarios (each asserts what it reads; exit 0 means every check passed):
  basic   appends (str, bytes with NUL, tuple keys, a repeated key), gets
          (single, list, nested, missing keys), iset idempotence, delete,
          a 10 MB value; leaves b'from-python' under 'py-left' and b'T'
          under ('tu', 'ple') for the C side to read
  check   reads what the C side left: 'c-left' == b'from-c', ('c', 'tuple')
          == b'ct', 'big' is 1 MB of b'z'
  drop    drop(), then every key above reads empty
  close   close_server()
"""
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__

from partd.zmq import Client  # noqa: E402


def check(got, want, what):
    if got != want:
        g = got if len(repr(got)) < 200 else repr(got)[:200] + '...'
        w = want if len(repr(want)) < 200 else repr(want)[:200] + '...'
        raise SystemExit('zmq_client.py: %s: got %r, want %r' % (what, g, w))


def basic(c):
    c.append({'a': b'1', b'bin\x00key': b'2', ('x', 'y'): b'3'})
    c.append({'a': b'4', ('x', 'y'): b'5'})
    check(c.get('a'), b'14', "get('a')")
    check(c.get(b'bin\x00key'), b'2', 'get(binary key)')
    check(c.get(('x', 'y')), b'35', 'get(tuple key)')
    check(c.get(['a', 'missing', ('x', 'y')]), [b'14', b'', b'35'],
          'get(list)')
    check(c.get([['a'], 'missing']), [[b'14'], b''], 'get(nested)')
    c.iset('i', b'first')
    c.iset('i', b'second')
    check(c.get('i'), b'first', 'iset idempotent')
    c.delete(['a'])
    check(c.get('a'), b'', 'get after delete')
    big = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    c.append({'big': big})
    check(c.get('big'), big, 'get(10 MB)')
    c.delete(['big'])
    c.append({'py-left': b'from-python', ('tu', 'ple'): b'T'})
    check(c.get('py-left'), b'from-python', 'get(py-left)')


def main():
    addr, scenario = sys.argv[1], sys.argv[2]
    c = Client(addr)
    if scenario == 'basic':
        basic(c)
    elif scenario == 'check':
        check(c.get('c-left'), b'from-c', "get('c-left')")
        check(c.get(('c', 'tuple')), b'ct', "get(('c', 'tuple'))")
        check(c.get('big'), b'z' * (1 << 20), "get('big')")
    elif scenario == 'drop':
        c.drop()
        check(c.get(['py-left', 'c-left', ('tu', 'ple')]), [b'', b'', b''],
              'get after drop')
    elif scenario == 'close':
        c.close_server()
    else:
        raise SystemExit('zmq_client.py: unknown scenario %r' % scenario)
    # Reads the last ack, so an error reply to the last request fails here.
    c.socket.recv_multipart()
    c.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
