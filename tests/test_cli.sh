#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# Tests of the `partd` command-line tool, and of its interop with the Python
# reference (partd.File).  Usage: bash tests/test_cli.sh /path/to/partd
# Prints one line per check and a last line "N passed, N failed"; exits
# non-zero if any check failed.
set -u

PARTD=${1:-}
if [ -z "$PARTD" ] || [ ! -x "$PARTD" ]; then
    echo "usage: bash tests/test_cli.sh /path/to/partd" >&2
    exit 2
fi
case $PARTD in /*) ;; *) PARTD=$PWD/$PARTD ;; esac
PY=/usr/bin/python3

T=$(mktemp -d "${TMPDIR:-/tmp}/partd-cli.XXXXXX") || exit 1
trap 'chmod -R u+rwx "$T" 2>/dev/null; rm -rf "$T"' EXIT
W=$T/work            # the test's own scratch files
A=$T/arena           # stores, and the canaries beside them
mkdir -p "$W" "$A"

# ------------------------------------------------------------ helpers
. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"
# first_line FILE: waits up to 10 s for FILE's first line (the address a
# server prints) and prints it.
first_line() {
    local l=
    for _ in $(seq 1 100); do
        l=$(head -n 1 "$1" 2>/dev/null)
        [ -n "$l" ] && break
        sleep 0.1
    done
    printf '%s' "$l"
}
# run ARGS...: runs partd with stdin from /dev/null; sets RC, output in
# $W/out and $W/err.
run() {
    "$PARTD" "$@" </dev/null >"$W/out" 2>"$W/err"
    RC=$?
}
# run_in FILE ARGS...: the same with stdin from FILE.
run_in() {
    local in=$1
    shift
    "$PARTD" "$@" <"$in" >"$W/out" 2>"$W/err"
    RC=$?
}
# same_bytes DESC WANTFILE GOTFILE
same_bytes() {
    if cmp -s "$2" "$3"; then
        ok "$1"
    else
        bad "$1" "bytes differ: $(cmp "$2" "$3" 2>&1 | head -c 200)" \
            "want $(wc -c <"$2") bytes, got $(wc -c <"$3") bytes"
    fi
}
# put DIR KEYARGS... < value: append, expecting success.
# roundtrip DESC DIR WANTFILE KEYARGS...: get must give WANTFILE's bytes.
roundtrip() {
    local d=$1 dir=$2 want=$3
    shift 3
    "$PARTD" get "$dir" "$@" >"$W/rt" 2>"$W/err" </dev/null
    local rc=$?
    if [ $rc -ne 0 ]; then
        bad "$d" "get exited $rc"
    elif cmp -s "$want" "$W/rt"; then
        ok "$d"
    else
        bad "$d" "got $(wc -c <"$W/rt") bytes, want $(wc -c <"$want")" \
            "got: $(head -c 80 "$W/rt" | od -An -c | head -2 | tr -s ' \n' ' ')"
    fi
}
# raw_status CMD...: prints the raw wait status of CMD run with SIGPIPE at
# its default and stdout a pipe closed after one byte was read: "exit N" or
# "signal N".  Uses perl to see a signal death that a shell would report
# as 128+N (indistinguishable from an exit code).
raw_status() {
    perl -e '
        $SIG{PIPE} = "DEFAULT";
        my $pid = open(my $fh, "-|") // die "fork: $!";
        if ($pid == 0) {
            open(STDERR, ">", shift @ARGV) or die;
            exec(@ARGV) or exit 127;
        }
        shift @ARGV;
        read($fh, my $b, 1);
        close($fh);
        my $s = $?;
        print(($s & 127) ? "signal " . ($s & 127) : "exit " . ($s >> 8));
    ' "$W/err" "$@"
}

echo "# partd: $PARTD"
echo "# tmp:   $T"

# ------------------------------------------------------------ basics
run --version
expect_rc "--version exits 0" 0
check "--version prints the version" grep -q '^partd [0-9]' "$W/out"

run --help
expect_rc "--help exits 0" 0
for word in append get keys delete drop help -r --sizes --fsync 'Exit status' \
    "('a', 'b')" 141; do
    check "--help mentions $word" grep -qF -- "$word" "$W/out"
done
run help get
expect_rc "help get exits 0" 0
check "help get shows get's usage" grep -q 'partd get' "$W/out"
run get --help
expect_rc "get --help exits 0" 0

# ------------------------------------------------------------ usage errors
usage_case() {
    local d=$1
    shift
    run "$@"
    if [ "$RC" -eq 2 ] && grep -qi usage "$W/err" && [ ! -s "$W/out" ]; then
        ok "usage error exits 2 with usage on stderr: $d"
    else
        bad "usage error exits 2 with usage on stderr: $d" "exit $RC"
    fi
}
S=$A/s
usage_case "no arguments"
usage_case "unknown verb" frobnicate "$S"
usage_case "unknown global option" --frob
usage_case "get without KEY" get "$S"
usage_case "get with an extra argument" get "$S" k extra
usage_case "append without arguments" append
usage_case "keys with two dirs" keys "$S" "$S"
usage_case "delete without KEY" delete "$S"
usage_case "drop with a KEY" drop "$S" k
usage_case "unknown short option" get -z "$S" k
usage_case "unknown long option" get --zap "$S" k
usage_case "option of another verb" keys --fsync "$S"
usage_case "help for an unknown verb" help frobnicate
check "usage errors created no store" test ! -e "$S"

# ------------------------------------------------------------ option parsing
# One parser for every verb: "--" ends the options, values as --opt=VALUE
# or --opt VALUE, short options grouped, sizes with their units, and usage
# errors that name the verb and the option.
O=$A/opts
printf 'dash' >"$W/dash"
run_in "$W/dash" append "$O" -- -x
expect_rc "append DIR -- -x: a KEY starting with '-'" 0
roundtrip "get DIR -- -x reads it" "$O" "$W/dash" -- -x
run keys -s -- "$O"
check "keys -s -- DIR lists it with its size" grep -qxF "4	'-x'" "$W/out"
run get -r -- "$O" "'-x'"
same_bytes "get -r -- DIR 'KEY'" "$W/dash" "$W/out"
run delete "$O" -- -x -
expect_rc "delete DIR -- -x - (and '-' is a KEY)" 0
run keys "$O"
check "... the key is gone" test ! -s "$W/out"
run drop -- "$O"
expect_rc "drop -- DIR" 0
printf 'zz' >"$W/zz"
run_in "$W/zz" append --codec=zstd --level=3 "$O" z
expect_rc "append --codec=zstd --level=3" 0
run get --codec=zstd "$O" z
same_bytes "get --codec=zstd" "$W/zz" "$W/out"
run get "$O" z --codec zstd
same_bytes "get DIR KEY --codec zstd (options after the arguments)" "$W/zz" "$W/out"
run get --cod zstd "$O" z
same_bytes "get --cod zstd (a long option shortened)" "$W/zz" "$W/out"
run keys --sizes -- "$O"
check "keys --sizes --" grep -qE "^[0-9]+	'z'$" "$W/out"
run get -rh
expect_rc "get -rh (grouped short options) shows the help" 0
check "... get's help" grep -q '^  partd get ' "$W/out"
run serve -qh
expect_rc "serve -qh (grouped short options) shows the help" 0
check "... serve's help" grep -q '^  partd serve ' "$W/out"
usage_msg "get -rs: -s is not get's" "^partd: get: unknown option '-s'" \
    get -rs "$O" z
usage_msg "get --zap" "^partd: get: unknown option '--zap'" get --zap "$O" z
usage_msg "get --zap=1" "^partd: get: unknown option '--zap'" get --zap=1 "$O" z
usage_msg "keys --sizes=1" "^partd: keys: option '--sizes' takes no value" \
    keys --sizes=1 "$O"
usage_msg "get KEY --codec (no value)" "^partd: get: option '--codec' needs a value" \
    get "$O" z --codec
usage_msg "get --co (ambiguous)" "^partd: get: option '--co' is ambiguous: --codec, --connect" \
    get --co zlib "$O" z
usage_msg "get --level x" "^partd: get: --level 'x': not an integer" \
    get --codec zlib --level x "$O" z
usage_msg "append --fsync=yes" "^partd: append: option '--fsync' takes no value" \
    append --fsync=yes "$O" z
usage_msg "serve --bogus" "^partd: serve: unknown option '--bogus'" serve --bogus
usage_msg "serve -x" "^partd: serve: unknown option '-x'" serve -x
usage_msg "serve -- extra" "^partd: serve: unexpected argument 'extra'" serve -- extra
usage_msg "serve --bind (no value)" "^partd: serve: option '--bind' needs a value: ADDR" \
    serve --bind
usage_msg "serve --timeout=x" "^partd: serve: --timeout 'x': not a whole number" \
    serve --timeout=x
usage_msg "help a b" "^partd: help: too many arguments" help get keys
# Sizes: --memory (serve) takes bytes, K, M, G, T, KiB ... TiB (any case),
# powers of 1024.  Options are handled in order, so a good size before
# --help gives the help, a bad one a usage error.
for m in 1 65536 64k 64K 64KiB 64kib 1M 1MiB 2g 2GiB 1t 1TiB; do
    run serve --memory "$m" --help
    expect_rc "serve --memory $m is a size" 0
done
for m in 1Q 1KB 1Ki 1.5M -1 " 1" "" 0 0K k 99999999999T; do
    usage_msg "serve --memory '$m' is not a size" \
        "^partd: serve: --memory '$m': (not a size|must be at least 1 byte)" \
        serve --memory "$m" --help
done
run serve --memory=64KiB --timeout=1 -q --path="$A/srv-opts" --
expect_rc "serve --memory=64KiB --timeout=1 -q --path=DIR -- (stops when idle)" 0
check "... printed its address" grep -q '^ipc://' "$W/out"
check "... and made its store" test -d "$A/srv-opts"

# ------------------------------------------------------------ round trips
printf 'hello, world\n' >"$W/text"
printf 'a\000b\000\000\377\376\n\r\\x' >"$W/bin"
: >"$W/empty"
head -c 8388608 /dev/urandom >"$W/big"

run_in "$W/text" append "$S" text
expect_rc "append text creates the store and exits 0" 0
check "append created DIR" test -d "$S"
check "append created DIR/.lock" test -e "$S/.lock"
check "append prints nothing" test ! -s "$W/out"
roundtrip "text round-trips" "$S" "$W/text" text

run_in "$W/bin" append "$S" bin
expect_rc "append binary exits 0" 0
roundtrip "binary value with NULs round-trips" "$S" "$W/bin" bin

run_in "$W/empty" append "$S" empty
expect_rc "append empty value exits 0" 0
roundtrip "empty value round-trips" "$S" "$W/empty" empty
roundtrip "a key never written reads as empty" "$S" "$W/empty" never-written

run_in "$W/big" append "$S" big
expect_rc "append 8 MiB exits 0" 0
roundtrip "8 MiB random value round-trips (cmp)" "$S" "$W/big" big

cat "$W/text" | "$PARTD" append "$S" piped 2>"$W/err"
RC=$?
expect_rc "append from a pipe exits 0" 0
roundtrip "value from a pipe round-trips" "$S" "$W/text" piped

run_in "$W/text" append --fsync "$S" synced
expect_rc "append --fsync exits 0" 0
roundtrip "append --fsync round-trips" "$S" "$W/text" synced

printf 'abc' | "$PARTD" append "$S" cat 2>"$W/err"
printf '\000def' | "$PARTD" append "$S" cat 2>"$W/err"
printf 'ghi' | "$PARTD" append "$S" cat 2>"$W/err"
printf 'abc\000defghi' >"$W/want"
roundtrip "appends concatenate in order" "$S" "$W/want" cat

printf 'dash' | "$PARTD" append "$S" -- -x 2>"$W/err"
printf 'dash' >"$W/want"
roundtrip "a key starting with '-' after --" "$S" "$W/want" -- -x

# ------------------------------------------------------------ keys listing
K=$A/k
{
    printf 'xx' | "$PARTD" append "$K" x
    printf '12345' | "$PARTD" append "$K" part-1
    printf 'T' | "$PARTD" append -r "$K" "('a', 'b')"
    printf 'F' | "$PARTD" append "$K" a/b
    printf 'NUL' | "$PARTD" append -r "$K" "'a\\x00b'"
} 2>"$W/err"
run keys "$K"
expect_rc "keys exits 0" 0
printf '%s\n' "'a/b'" "'a\\x00b'" "'part-1'" "'x'" "('a', 'b')" >"$W/want"
same_bytes "keys lists every key, quoted, sorted" "$W/want" "$W/out"
run keys --sizes "$K"
expect_rc "keys --sizes exits 0" 0
printf '1\t%s\n' "'a/b'" >"$W/want"
printf '3\t%s\n' "'a\\x00b'" >>"$W/want"
printf '5\t%s\n' "'part-1'" >>"$W/want"
printf '2\t%s\n' "'x'" >>"$W/want"
printf '1\t%s\n' "('a', 'b')" >>"$W/want"
same_bytes "keys --sizes prints size<TAB>key" "$W/want" "$W/out"
run keys -s "$K"
same_bytes "keys -s is --sizes" "$W/want" "$W/out"

printf 'T' >"$W/T"
printf 'F' >"$W/F"
roundtrip "tuple ('a', 'b') via -r" "$K" "$W/T" -r "('a', 'b')"
roundtrip "flat 'a/b' is a different key" "$K" "$W/F" a/b
roundtrip "-r accepts ('a','b') without the space" "$K" "$W/T" -r "('a','b')"
printf 'NUL' >"$W/want"
roundtrip "binary key 'a\\x00b' via -r" "$K" "$W/want" -r "'a\\x00b'"
printf 'xx' >"$W/want"
roundtrip "-r 'x' names the flat key x" "$K" "$W/want" -r "'x'"
roundtrip "-r ('x',) is the key x" "$K" "$W/want" -r "('x',)"

# feed every listed key back with -r: its size must match
"$PARTD" keys --sizes "$K" >"$W/listing" 2>"$W/err"
n=0
nok=0
while IFS=$'\t' read -r size key; do
    n=$((n + 1))
    got=$("$PARTD" get -r "$K" "$key" 2>/dev/null | wc -c)
    [ "$got" -eq "$size" ] && nok=$((nok + 1))
done <"$W/listing"
if [ "$n" -eq 5 ] && [ "$nok" -eq 5 ]; then
    ok "every key printed by keys reads back with -r"
else
    bad "every key printed by keys reads back with -r" "$nok of $n"
fi

# A flat key and a tuple with it as first part share a name in the
# reference's layout (file 'c' vs directory 'c/'): the second may fail, but
# cleanly, and must not damage the first.
printf 'flat' | "$PARTD" append "$K" c 2>"$W/err"
printf 'tuple' | "$PARTD" append -r "$K" "('c', 'd')" 2>"$W/err"
RC=$?
printf 'flat' >"$W/want"
if [ "$RC" -eq 0 ] || { [ "$RC" -eq 1 ] && grep -q '^partd: append: ' "$W/err"; }; then
    ok "flat 'c' then tuple ('c', 'd'): exit $RC, cleanly"
else
    bad "flat 'c' then tuple ('c', 'd'): exit $RC, cleanly"
fi
roundtrip "flat 'c' intact after ('c', 'd')" "$K" "$W/want" c
"$PARTD" delete -r "$K" "'c'" "('c', 'd')" 2>"$W/err"

run get -r "$K" "('a', 'b'"
expect_rc "bad -r syntax exits 1" 1
check "bad -r syntax: message 'partd: get: ...'" grep -q '^partd: get: ' "$W/err"
run get -r "$K" "x"
expect_rc "unquoted -r key exits 1" 1

# ------------------------------------------------------------ hostile keys
H=$A/store
mkdir -p "$A/canary"
printf 'canary' >"$A/canary/file"
ABS=$A/abs-target
LONG=$(head -c 3000 /dev/zero | tr '\0' k)
NL=$'new\nline'
ls_outside() { find "$A" -path "$H" -prune -o -print | LC_ALL=C sort; }
ls_outside >"$W/outside.before"

# key arguments (flat, literal) and the value each gets
HOSTILE=("../x" "../canary/file" "../canary/new" "$ABS" "/tmp" ".lock" "."
         ".." "" "$LONG" "$NL" "a/../../x" "./y" "%2e%2e" "%#tmp")
i=0
for k in "${HOSTILE[@]}"; do
    printf 'value-%d' "$i" >"$W/h$i"
    run_in "$W/h$i" append "$H" "$k"
    expect_rc "append hostile key #$i ($(printf '%q' "${k:0:30}")) exits 0" 0
    i=$((i + 1))
done
ls_outside >"$W/outside.after"
same_bytes "hostile keys: nothing created or changed outside the store" \
    "$W/outside.before" "$W/outside.after"
check "hostile keys: no ../x beside the store" test ! -e "$A/x"
check "hostile keys: no file at the absolute path" test ! -e "$ABS"
printf 'canary' >"$W/want"
same_bytes "hostile keys: canary file unchanged" "$W/want" "$A/canary/file"
check "hostile keys: .lock is still a regular file" test -f "$H/.lock"
i=0
for k in "${HOSTILE[@]}"; do
    roundtrip "hostile key #$i round-trips" "$H" "$W/h$i" "$k"
    i=$((i + 1))
done
run keys "$H"
n=$(wc -l <"$W/out")
if [ "$n" -eq "${#HOSTILE[@]}" ]; then
    ok "keys lists ${#HOSTILE[@]} distinct hostile keys"
else
    bad "keys lists ${#HOSTILE[@]} distinct hostile keys" "got $n lines"
fi
check "keys prints the newline key as 'new\\nline'" grep -qxF "'new\\nline'" "$W/out"
check "keys prints the empty key as ''" grep -qxF "''" "$W/out"
printf 'value-10' >"$W/want"
roundtrip "newline key read back with -r" "$H" "$W/want" -r "'new\\nline'"
printf 'value-8' >"$W/want"
roundtrip "empty key read back with -r ''" "$H" "$W/want" -r "''"

run_in "$W/text" append "$H" "$(head -c 20000 /dev/zero | tr '\0' k)"
if [ "$RC" -eq 1 ] && grep -q '^partd: append: ' "$W/err"; then
    ok "a key over PD_KEY_MAX fails cleanly (exit 1)"
else
    bad "a key over PD_KEY_MAX fails cleanly (exit 1)" "exit $RC"
fi

# ------------------------------------------------------------ symlinks
printf 'ORIG' >"$A/outside-target"
mkdir -p "$A/outside-dir"
mkdir -p "$H"
ln -s "$A/outside-target" "$H/victim"
ln -s "$A/outside-dir" "$H/vdir"
ls_outside >"$W/outside.before"
printf 'EVIL' >"$W/evil"
run_in "$W/evil" append "$H" victim
echo "# append through a planted file symlink: exit $RC"
run_in "$W/evil" append -r "$H" "('vdir', 'f')"
echo "# append through a planted directory symlink: exit $RC"
printf 'ORIG' >"$W/want"
same_bytes "symlink in the store: outside target unchanged" \
    "$W/want" "$A/outside-target"
check "symlink in the store: nothing written in the outside dir" \
    test -z "$(ls -A "$A/outside-dir")"
ls_outside >"$W/outside.after"
same_bytes "symlinks: nothing created or changed outside the store" \
    "$W/outside.before" "$W/outside.after"
run get "$H" victim
if [ "$RC" -ne 0 ] || ! grep -q ORIG "$W/out"; then
    ok "get through a planted symlink does not read the outside file"
else
    bad "get through a planted symlink does not read the outside file"
fi
rm -f "$H/victim" "$H/vdir"

# ------------------------------------------------------------ errors
"$PARTD" append "$S" from-dir <"$W" >"$W/out" 2>"$W/err"
RC=$?
if [ "$RC" -eq 1 ] && grep -q 'stdin' "$W/err"; then
    ok "stdin read error (a directory) exits 1 naming stdin"
else
    bad "stdin read error (a directory) exits 1 naming stdin" "exit $RC"
fi
"$PARTD" append "$S" closed-stdin <&- >"$W/out" 2>"$W/err"
RC=$?
expect_rc "closed stdin exits 1" 1
run keys "$S"
check "failed appends stored nothing" test -z "$(grep -e from-dir -e closed-stdin "$W/out")"

M=$A/missing/dir
for verb in get keys delete drop; do
    case $verb in
    get | delete) run "$verb" "$M" k ;;
    *) run "$verb" "$M" ;;
    esac
    if [ "$RC" -eq 1 ] && grep -qF "$M" "$W/err" && grep -q "^partd: $verb: " "$W/err"; then
        ok "$verb on a missing directory exits 1 naming the path"
    else
        bad "$verb on a missing directory exits 1 naming the path" "exit $RC"
    fi
done
check "get/keys/delete/drop did not create the directory" test ! -e "$A/missing"
run get "$A/canary/file" k
if [ "$RC" -eq 1 ] && grep -qF "$A/canary/file" "$W/err"; then
    ok "get on a regular file exits 1 naming the path"
else
    bad "get on a regular file exits 1 naming the path" "exit $RC"
fi

# ------------------------------------------------------------ broken pipes
"$PARTD" get "$S" big 2>"$W/err" | head -c1 >"$W/one"
rc=${PIPESTATUS[0]}
case $rc in
0 | 1 | 141) ok "get | head -c1: exit $rc (no crash)" ;;
*) bad "get | head -c1: exit $rc" ;;
esac
check "get | head -c1 gave one byte" test "$(wc -c <"$W/one")" -eq 1
# closed_pipe DESC ARGS...: partd ARGS into a pipe closed after one byte.
closed_pipe() {
    local d=$1 st
    shift
    if ! command -v perl >/dev/null; then
        echo "SKIP - $d: no perl to see the raw wait status"
        return
    fi
    st=$(raw_status "$PARTD" "$@")
    case $st in
    "exit 0" | "exit 1" | "exit 141") ok "$d: $st" ;;
    *) bad "$d: $st" ;;
    esac
}
closed_pipe "get into a closed pipe (SIGPIPE default)" get "$S" big
check "get into a closed pipe is quiet" test ! -s "$W/err"
for i in $(seq 1 300); do
    printf 'v' | "$PARTD" append "$A/many" "key-$i" 2>>"$W/err"
done
closed_pipe "keys into a closed pipe" keys "$A/many"
closed_pipe "--help into a closed pipe" --help
run get "$S" text
if [ -w /dev/full ]; then
    "$PARTD" get "$S" text >/dev/full 2>"$W/err"
    RC=$?
    if [ "$RC" -eq 1 ] && grep -q 'write' "$W/err"; then
        ok "get into /dev/full exits 1 with a write error"
    else
        bad "get into /dev/full exits 1 with a write error" "exit $RC"
    fi
fi

# ------------------------------------------------------------ delete, drop
run delete "$K" x part-1
expect_rc "delete two keys exits 0" 0
run delete -r "$K" "('a', 'b')" "'a\\x00b'"
expect_rc "delete -r two keys exits 0" 0
run delete "$K" never-there
expect_rc "delete a missing key exits 0" 0
roundtrip "a deleted key reads as empty" "$K" "$W/empty" x
run keys "$K"
printf '%s\n' "'a/b'" >"$W/want"
same_bytes "keys after delete lists only 'a/b'" "$W/want" "$W/out"

run drop "$S"
expect_rc "drop exits 0" 0
run keys "$S"
check "keys after drop is empty" test ! -s "$W/out"
check "drop keeps DIR" test -d "$S"
check "drop keeps DIR/.lock" test -e "$S/.lock"
roundtrip "a dropped key reads as empty" "$S" "$W/empty" text
run_in "$W/text" append "$S" after-drop
expect_rc "append after drop exits 0" 0
roundtrip "store usable after drop" "$S" "$W/text" after-drop

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

# ------------------------------------------------------------ serve, --connect
S=$A/served
"$PARTD" serve --path "$S" >"$W/serve.out" 2>"$W/serve.err" </dev/null &
SPID=$!
ADDR=$(first_line "$W/serve.out")
case $ADDR in
ipc://*) ok "serve prints its ipc address first: $ADDR" ;;
*) bad "serve prints its ipc address first" "got '$ADDR'" ;;
esac
SOCK=${ADDR#ipc://}
check "... a socket in a private 0700 directory" \
    test "$(stat -c %a "$(dirname "$SOCK")")" = 700
run_in "$W/seq" append --connect "$ADDR" k
expect_rc "append --connect" 0
run_in "$W/rnd" append --connect "$ADDR" -r "('t', 'u')"
cat "$W/seq" >"$W/want-srv"
"$PARTD" get --connect "$ADDR" k >"$W/rt" 2>"$W/err" </dev/null
same_bytes "get --connect" "$W/want-srv" "$W/rt"
"$PARTD" get --connect "$ADDR" -r "('t', 'u')" >"$W/rt" 2>"$W/err" </dev/null
same_bytes "get --connect, a tuple key" "$W/rnd" "$W/rt"
run keys --connect "$ADDR"
check "keys --connect lists both keys" grep -qx "('t', 'u')" "$W/out"
run delete --connect "$ADDR" k
expect_rc "delete --connect" 0
run get --connect "$ADDR" k
check "... the key is gone" test ! -s "$W/out"
if "$PY" -c 'import partd, zmq' 2>/dev/null; then
    "$PY" -c '
import sys, partd
c = partd.Client(sys.argv[1])
c.append({"py": b"from-python"})
assert c.get("py") == b"from-python", c.get("py")
assert c.get(("t", "u"))[:10] == open(sys.argv[2], "rb").read()[:10]
c.close()' "$ADDR" "$W/rnd" 2>"$W/err"
    check "Python partd.Client talks to partd serve" test $? -eq 0
    "$PARTD" get --connect "$ADDR" py >"$W/rt" 2>"$W/err" </dev/null
    check "... and we read what it appended" grep -qx from-python "$W/rt"
fi
kill -TERM "$SPID"
wait "$SPID"
RC=$?
expect_rc "serve exits 0 on SIGTERM" 0
check "... the socket and its directory are removed" test ! -e "$(dirname "$SOCK")"
printf 'from-python' >"$W/fp"
roundtrip "... and the store was flushed to --path" "$S" "$W/rnd" -r "('t', 'u')"
run get --connect "$ADDR" --timeout 0.5 k
expect_rc "get --connect to a dead server fails" 1
check "... naming the address" grep -qF "$ADDR" "$W/err"
run get --connect "$ADDR" "$S" k
expect_rc "--connect with a DIR too is a usage error" 2
run get --timeout 1 "$S" k
expect_rc "--timeout without --connect is a usage error" 2
run serve --no-such-option
expect_rc "serve: an unknown option is a usage error" 2

# ------------------------------------------- several servers, stats, --path x2
# --connect A,B is one store spread over both servers (a Fanout): the same
# list in the same order reads everything back, and each server holds only
# the keys that list maps to it.
"$PARTD" serve -q >"$W/sa.out" 2>"$W/sa.err" </dev/null &
SAPID=$!
"$PARTD" serve --path "$A/fan1" --path "$A/fan2" --memory 4 \
    >"$W/sb.out" 2>"$W/sb.err" </dev/null &
SBPID=$!
SA=$(first_line "$W/sa.out")
SB=$(first_line "$W/sb.out")
for i in 1 2 3 4 5 6 7 8; do
    printf 'val-%s' "$i" >"$W/fv$i"
    run_in "$W/fv$i" append --connect "$SA,$SB" "fk$i"
done
expect_rc "append --connect A,B" 0
allback=0
for i in 1 2 3 4 5 6 7 8; do
    "$PARTD" get --connect "$SA,$SB" "fk$i" >"$W/rt" 2>"$W/err" </dev/null
    cmp -s "$W/fv$i" "$W/rt" || allback=1
done
check "get --connect A,B reads every key back" test "$allback" = 0
run keys --connect "$SA,$SB"
check "keys --connect A,B lists all 8 keys" test "$(wc -l <"$W/out")" = 8
"$PARTD" keys --connect "$SA" >"$W/ka" 2>"$W/err" </dev/null
"$PARTD" keys --connect "$SB" >"$W/kb" 2>"$W/err" </dev/null
check "each server holds some keys, and none twice" \
    test "$(wc -l <"$W/ka")" -ge 1 -a "$(wc -l <"$W/kb")" -ge 1 -a \
    "$(sort "$W/ka" "$W/kb" | uniq -d | wc -l)" = 0
check "... together all 8" test "$(cat "$W/ka" "$W/kb" | wc -l)" = 8
run delete --connect "$SA,$SB" fk1 fk2
run keys --connect "$SA,$SB"
check "delete --connect A,B removes from whichever server" \
    test "$(wc -l <"$W/out")" = 6
"$PARTD" keys --connect "$SA" >"$W/ka" 2>"$W/err" </dev/null
"$PARTD" keys --connect "$SB" >"$W/kb" 2>"$W/err" </dev/null
run stats --connect "$SA"
expect_rc "stats --connect A" 0
check "stats prints a block headed by the address" grep -qx "server $SA" "$W/out"
check "... with its keys" grep -qx "keys $(wc -l <"$W/ka")" "$W/out"
check "... and the requests it served per command" grep -qx "req_stats 1" "$W/out"
run stats --connect "$SA,$SB" --json
expect_rc "stats --connect A,B --json" 0
"$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, list) and len(d) == 2, d
a, b = d
assert a["address"] == sys.argv[2] and b["address"] == sys.argv[3]
assert a["keys"] + b["keys"] == 6, (a["keys"], b["keys"])
assert a["records"] + b["records"] == 8
assert a["req_append"] + b["req_append"] == 8
assert a["keys"] == int(sys.argv[4]) and b["keys"] == int(sys.argv[5])
assert a["req_stats"] == 2 and b["req_stats"] == 1, (a["req_stats"], b["req_stats"])
assert a["req_delete"] == 1 and b["req_delete"] == 1
assert a["buffer"] == 1 and b["memory_limit"] == 4
assert a["spills"] == 0 and (b["spills"] >= 1 or b["records"] < 2)
assert a["rss"] > 0 and a["failed"] == 0
print("ok")' "$W/out" "$SA" "$SB" "$(wc -l <"$W/ka")" "$(wc -l <"$W/kb")" \
    >"$W/py" 2>&1
check "stats --json: one object per server, the counts add up" grep -qx ok "$W/py"
run stats --connect "$SB" --json
"$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, dict) and d["keys"] == int(sys.argv[2]), d
print("ok")' "$W/out" "$(wc -l <"$W/kb")" >"$W/py" 2>&1
check "stats --json of one server: one object" grep -qx ok "$W/py"
run help stats
expect_rc "help stats exits 0" 0
check "... shows its usage with --connect and --json" \
    grep -q '^  partd stats --connect ADDR\[,ADDR\]\.\.\. .*--json' "$W/out"
run --help
check "--help lists the stats verb" grep -q '^  stats ' "$W/out"
run help serve
check "help serve: --path is repeatable" grep -q '\[--path DIR\]\.\.\.' "$W/out"
run serve --path "$A/twice" --path "$A/twice/." --timeout 1 -q
expect_rc "serve --path A --path A/. is refused" 1
check "... as the same directory" grep -q "are the same directory" "$W/err"
run stats
expect_rc "stats without --connect is a usage error" 2
run stats --connect "$SA,"
expect_rc "--connect with an empty address is a usage error" 2
kill -TERM "$SAPID" "$SBPID"
wait "$SBPID"
RC=$?
expect_rc "serve --path A --path B exits 0" 0
wait "$SAPID"
check "serve logs a stats line at exit" grep -q "stats: keys .*requests .*uptime" \
    "$W/sb.err"
check "serve -q does not" test -z "$(grep 'stats:' "$W/sa.err")"
fankeys=$(("$("$PARTD" keys "$A/fan1" | wc -l)" + "$("$PARTD" keys "$A/fan2" | wc -l)"))
check "the Fanout's keys were flushed over both --path DIRs" \
    test "$fankeys" = "$(wc -l <"$W/kb")"
"$PARTD" keys "$A/fan1" >"$W/f1"
"$PARTD" keys "$A/fan2" >"$W/f2"
check "... no key in both DIRs" test -z "$(sort "$W/f1" "$W/f2" | uniq -d)"

# ------------------------------------------------------------ serve: CURVE
printf '# allowed\n\n' >"$W/clients-empty"
printf 'not-a-key\n' >"$W/clients-junk"
run serve --curve-clients "$W/clients-empty"
expect_rc "serve: --curve-clients without --curve-secret is a usage error" 2
SEC=$("$PY" -c 'import zmq; print(zmq.curve_keypair()[1].decode())' 2>/dev/null)
if [ -n "$SEC" ]; then
    run serve --curve-secret "$SEC" --curve-clients "$W/clients-junk"
    expect_rc "serve: a junk key in --curve-clients is a usage error" 2
    check "... naming the file and line" grep -qF "clients-junk:1" "$W/err"
    run serve --curve-secret "$SEC" --curve-clients "$W/clients-empty"
    expect_rc "serve: --curve-clients with no keys is a usage error" 2
    run serve --curve-secret "$SEC" --curve-clients "$W/no-such-file"
    expect_rc "serve: a missing --curve-clients file fails" 1
    "$PY" - "$W" <<'EOF'
import sys, zmq
w = sys.argv[1]
spub, ssec = zmq.curve_keypair()
cpub, csec = zmq.curve_keypair()
opub, osec = zmq.curve_keypair()
open(w + '/srv.key', 'wb').write(ssec + b'\n')
open(w + '/srv.pub', 'wb').write(spub)
open(w + '/clients', 'wb').write(b'# the listed client\n' + cpub + b'\n')
for name, pub, sec in (('in', cpub, csec), ('out', opub, osec)):
    open(w + '/' + name + '.pub', 'wb').write(pub)
    open(w + '/' + name + '.sec', 'wb').write(sec)
EOF
    "$PARTD" serve --bind tcp://127.0.0.1:0 --curve-secret "@$W/srv.key" \
        --curve-clients "$W/clients" >"$W/cs.out" 2>"$W/cs.err" </dev/null &
    SPID=$!
    ADDR=$(first_line "$W/cs.out")
    cat >"$W/curve_client.py" <<'EOF'
import sys, zmq
addr, w, who = sys.argv[1:4]
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.linger = 0
s.curve_serverkey = open(w + '/srv.pub', 'rb').read()
s.curve_publickey = open(w + '/' + who + '.pub', 'rb').read()
s.curve_secretkey = open(w + '/' + who + '.sec', 'rb').read()
s.connect(addr)
s.send(b'syn')
s.send_multipart([b'append', b'curve', b'listed'])
s.send_multipart([b'get', b'curve'])
got = []
while len(got) < 4 and s.poll(3000 if who == 'in' else 500):
    got.append(s.recv_multipart())
print(got)
sys.exit(0 if got == [[b'ack'], [b'ack'], [b'listed'], [b'ack']] else 3)
EOF
    "$PY" "$W/curve_client.py" "$ADDR" "$W" in >"$W/out" 2>"$W/err"
    RC=$?
    expect_rc "serve --curve-clients: a listed client key gets in" 0
    "$PY" "$W/curve_client.py" "$ADDR" "$W" out >"$W/out" 2>"$W/err"
    RC=$?
    expect_rc "... a key not on the list is refused (no reply)" 3
    check "... and logged with its key" grep -qF "$(cat "$W/out.pub")" "$W/cs.err"
    kill -TERM "$SPID"
    wait "$SPID"
    RC=$?
    expect_rc "... serve exits 0 on SIGTERM" 0
else
    echo "SKIP - serve --curve-clients: $PY has no pyzmq with CURVE"
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
