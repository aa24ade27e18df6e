#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# Tests of `partd --codec`: round trips, bad options, corrupt and torn
# data, and interop with the Python reference (partd.File, its
# compressed layers).
# Usage: bash tests/test_cli_codecs.sh /path/to/partd
# Prints one line per check and a last line "N passed, N failed"; exits
# non-zero if any check failed.
set -u

. "$(dirname "${BASH_SOURCE[0]}")/clifix.sh" "$@"

# ------------------------------------------------------------ codecs
CODECS="zlib bz2 snappy blosc lz4 zstd"
head -c 300000 /dev/urandom >"$W/rnd"
seq 1 40000 >"$W/seq"
: >"$W/empty"
for c in $CODECS; do
    D=$A/codec-$c
    run_in "$W/seq" append --codec "$c" "$D" k
    expect_rc "$c: append" 0
    run_in "$W/rnd" append --codec "$c" "$D" k
    run_in "$W/empty" append --codec "$c" "$D" k
    cat "$W/seq" "$W/rnd" >"$W/want-$c"
    roundtrip "$c: two appends and an empty one read back in order" \
        "$D" "$W/want-$c" --codec "$c" k
    run get --codec "$c" "$D" missing
    expect_rc "$c: a missing key reads as empty" 0
    check "$c: ... with no output" test ! -s "$W/out"
    run get "$D" k
    if [ "$RC" -eq 0 ] && ! cmp -s "$W/out" "$W/want-$c"; then
        ok "$c: without --codec, get gives the framed bytes"
    else
        bad "$c: without --codec, get gives the framed bytes" "exit $RC"
    fi
done
run_in "$W/seq" append --codec zstd --level 19 "$A/zstd19" k
expect_rc "zstd --level 19" 0
roundtrip "zstd --level 19 reads back" "$A/zstd19" "$W/seq" --codec zstd k
run_in "$W/seq" append --codec nosuch "$A/nosuch" k
expect_rc "an unknown codec is a usage error" 2
check "... naming the known codecs" grep -q zstd "$W/err"
run_in "$W/seq" append --codec zlib --level 42 "$A/lvl" k
expect_rc "a level out of range is a usage error" 2
run_in "$W/seq" append --codec zlib --level x "$A/lvl" k
expect_rc "a level that is not a number is a usage error" 2
run_in "$W/seq" append --level 3 "$A/lvl" k
expect_rc "--level without --codec is a usage error" 2

# Corrupt data: a clear error naming the layer and the key, exit 1; other
# keys stay readable.
D=$A/corrupt
printf 'fine' | "$PARTD" append --codec zlib "$D" good
run_in "$W/seq" append --codec zlib "$D" bad
"$PY" -c '
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
for i in range(20, 60): b[i] ^= 0x55
open(p, "wb").write(bytes(b))' "$D/bad" 2>/dev/null ||
    printf 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' |
    dd of="$D/bad" bs=1 seek=20 conv=notrunc 2>/dev/null
run get --codec zlib "$D" bad
expect_rc "corrupt frame: get fails with exit 1" 1
check "... the message names the layer" grep -q zlib "$W/err"
check "... and the key" grep -q "'bad'" "$W/err"
printf 'fine' >"$W/fine"
roundtrip "... another key stays readable" "$D" "$W/fine" --codec zlib good
printf '\377\377\377\377\377\377\377\177abc' >"$D/huge"
run get --codec zlib "$D" huge
expect_rc "a length prefix past the data: exit 1" 1
check "... message names the key" grep -q "'huge'" "$W/err"
run get --codec snappy "$D" good
expect_rc "zlib data read as snappy: exit 1, no crash" 1

# A torn tail (a writer killed mid-append): the complete frames come back,
# a warning on stderr, exit 0; repair rewrites the key.
D=$A/torn
printf 'one-' | "$PARTD" append --codec zstd "$D" t
run_in "$W/seq" append --codec zstd "$D" t
size=$(stat -c %s "$D/t")
truncate -s $((size - 7)) "$D/t"
printf 'one-' >"$W/one"
roundtrip "torn tail: get returns the complete frames" "$D" "$W/one" --codec zstd t
check "... and warns on stderr" grep -q "torn" "$W/err"
printf -- '-three' | "$PARTD" append --codec zstd "$D" t
printf 'one--three' >"$W/one3"
roundtrip "a torn frame followed by an append: both complete frames read" \
    "$D" "$W/one3" --codec zstd t
run repair --codec zstd "$D" t
expect_rc "repair" 0
check "... prints the bytes removed" grep -qx '[1-9][0-9]*' "$W/out"
"$PARTD" get --codec zstd "$D" t >"$W/rt" 2>"$W/err"
check "after repair, no warning" test ! -s "$W/err"
same_bytes "after repair, the same content" "$W/one3" "$W/rt"

# Python partd's compressed layers read what we write, and the reverse.
if "$PY" -c 'import partd, snappy, blosc' 2>/dev/null; then
    for pair in zlib:ZLib bz2:BZ2 snappy:Snappy blosc:Blosc; do
        c=${pair%%:*}
        cls=${pair#*:}
        D=$A/py-$c
        "$PY" -c '
import sys, partd
p = getattr(partd, sys.argv[2])(partd.File(sys.argv[1]))
p.append({"k": b"from-python-" * 1000})
p.append({"k": bytes(range(256))})' "$D" "$cls"
        "$PY" -c '
import sys
sys.stdout.buffer.write(b"from-python-" * 1000 + bytes(range(256)))' >"$W/pywant"
        roundtrip "$c: partd get --codec reads Python partd's $cls" \
            "$D" "$W/pywant" --codec "$c" k
        run_in "$W/rnd" append --codec "$c" "$D" k
        cat "$W/pywant" "$W/rnd" >"$W/pywant2"
        "$PY" -c '
import sys, partd
p = getattr(partd, sys.argv[2])(partd.File(sys.argv[1]))
sys.stdout.buffer.write(p.get("k"))' "$D" "$cls" >"$W/pyget" 2>"$W/err"
        same_bytes "$c: Python partd's $cls reads what partd appended" \
            "$W/pywant2" "$W/pyget"
    done
else
    echo "SKIP - codec interop: $PY cannot import partd, snappy and blosc"
fi


# ------------------------------------------------------------ Python interop
if ! "$PY" -c 'import partd' 2>/dev/null; then
    echo "SKIP - Python interop: $PY cannot import partd (apt-get install python3-partd)"
else
    P=$A/py1
    "$PY" - "$P" "$W" <<'EOF' 2>"$W/err"
import sys, partd
p = partd.File(sys.argv[1])
p.append({'x': b'x-from-python\x00\xff', 'part-1': b'p1',
          ('a', 'b'): b'tuple-from-python'})
p.append({'x': b'+more'})
for name, val in [('x', b'x-from-python\x00\xff+more'), ('p1', b'p1'),
                  ('ab', b'tuple-from-python')]:
    open(sys.argv[2] + '/py-' + name, 'wb').write(val)
EOF
    check "Python partd.File wrote a store" test -d "$P"
    roundtrip "Python writes 'x', partd get reads it" "$P" "$W/py-x" x
    roundtrip "Python writes 'part-1', partd get reads it" "$P" "$W/py-p1" part-1
    roundtrip "Python writes ('a','b'), partd get -r reads it" "$P" "$W/py-ab" \
        -r "('a', 'b')"
    run keys "$P"
    printf '%s\n' "'part-1'" "'x'" "('a', 'b')" >"$W/want"
    same_bytes "partd keys lists the Python-written keys" "$W/want" "$W/out"

    Q=$A/py2
    printf 'x-from-c\000\377' >"$W/c-x"
    printf 'p1-from-c' >"$W/c-p1"
    printf 'tuple-from-c' >"$W/c-ab"
    {
        "$PARTD" append "$Q" x <"$W/c-x"
        "$PARTD" append "$Q" part-1 <"$W/c-p1"
        "$PARTD" append -r "$Q" "('a', 'b')" <"$W/c-ab"
    } 2>"$W/err"
    "$PY" - "$Q" "$W" <<'EOF' >"$W/out" 2>"$W/err"
import sys, partd
p = partd.File(sys.argv[1])
w = sys.argv[2]
want = {'x': open(w + '/c-x', 'rb').read(), 'part-1': open(w + '/c-p1', 'rb').read(),
        ('a', 'b'): open(w + '/c-ab', 'rb').read()}
got = p.get(list(want))
for (k, v), g in zip(want.items(), got):
    print('same' if v == g else 'DIFF', repr(k), repr(g))
p.append({'x': b'|py', ('a', 'b'): b'|py'})
EOF
    check "partd append 'x', Python get reads it" grep -q "^same 'x'" "$W/out"
    check "partd append 'part-1', Python get reads it" grep -q "^same 'part-1'" "$W/out"
    check "partd append -r ('a','b'), Python get reads it" \
        grep -q "^same ('a', 'b')" "$W/out"
    printf '|py' >>"$W/c-x"
    printf '|py' >>"$W/c-ab"
    roundtrip "partd then Python appends to 'x' concatenate" "$Q" "$W/c-x" x
    roundtrip "partd then Python appends to ('a','b') concatenate" "$Q" \
        "$W/c-ab" -r "('a', 'b')"
    printf '|c' | "$PARTD" append "$Q" x 2>"$W/err"
    printf '|c' >>"$W/c-x"
    "$PY" -c '
import sys, partd
sys.stdout.buffer.write(partd.File(sys.argv[1]).get("x"))' "$Q" >"$W/pyget"
    same_bytes "Python reads partd, Python, partd appends in order" "$W/c-x" "$W/pyget"
    "$PY" -c '
import sys, partd
partd.File(sys.argv[1]).delete(["part-1"])' "$Q"
    roundtrip "Python delete is seen by partd" "$Q" "$W/empty" part-1
    run delete "$Q" x
    "$PY" -c '
import sys, partd
print(repr(partd.File(sys.argv[1]).get("x")))' "$Q" >"$W/out"
    check "partd delete is seen by Python" grep -qx "b''" "$W/out"
fi

tap_summary
