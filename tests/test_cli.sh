#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# Tests of the `partd` command-line tool: usage, options, round trips,
# listing, hostile keys, symlinks, errors, broken pipes, delete and drop.
# Usage: bash tests/test_cli.sh /path/to/partd
# Prints one line per check and a last line "N passed, N failed"; exits
# non-zero if any check failed.
set -u

. "$(dirname "${BASH_SOURCE[0]}")/clifix.sh" "$@"

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

# A file size limit (ulimit -f, in KiB): the write fails with EFBIG, reported
# with the path, instead of SIGXFSZ killing the CLI.
head -c 300000 /dev/urandom >"$W/big"
for kind in file log; do
    (
        ulimit -f 64
        run_in "$W/big" append --store "$kind" "$A/fsize-$kind" k
        echo "$RC" >"$W/rc"
    )
    RC=$(cat "$W/rc")
    expect_rc "append past a file size limit ($kind): fails, not killed" 1
    check "... naming the path and the reason" grep -q "$A/fsize-$kind.*File too large" "$W/err"
done

tap_summary
