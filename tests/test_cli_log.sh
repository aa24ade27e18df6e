#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# Tests of the `partd` store verbs and `partd serve` on a Log store: every
# verb on a Log directory (found by its marker file, or asked for with
# --store log), --store file|log when creating, the refusals, and `partd
# serve --store log` (a Buffer over a Log).
# Usage: bash tests/test_cli_log.sh /path/to/partd
# Prints one line per check and a last line "N passed, N failed"; exits
# non-zero if any check failed.
set -u

. "$(dirname "${BASH_SOURCE[0]}")/clifix.sh" "$@"
SPID=
trap '[ -n "$SPID" ] && kill -9 $SPID 2>/dev/null; rm -rf "$T"' EXIT

# ------------------------------------------------------------ help
for verb in append get keys delete drop repair serve demo; do
    run help "$verb"
    check "help $verb names --store" grep -q -- '--store KIND' "$W/out"
done
run help get
check "help get: the default is told by partd-log" grep -q 'partd-log' "$W/out"

# ------------------------------------------------------------ the verbs
L=$A/log
printf 'hello' >"$W/v1"
head -c 100000 /dev/urandom >"$W/v2"
run_in "$W/v1" append --store log "$L" k
expect_rc "append --store log creates a Log" 0
check "... with its marker file" test -f "$L/partd-log"
run_in "$W/v2" append "$L" k
expect_rc "append to a Log without --store (found by its marker)" 0
cat "$W/v1" "$W/v2" >"$W/want"
"$PARTD" get "$L" k >"$W/rt" 2>"$W/err" </dev/null
check "get reads both appends in order" cmp -s "$W/want" "$W/rt"
"$PARTD" get --store log "$L" k >"$W/rt" 2>"$W/err" </dev/null
check "get --store log reads the same" cmp -s "$W/want" "$W/rt"
printf 'tuple' | "$PARTD" append -r "$L" "('a', 'b')" 2>"$W/err"
got "keys on a Log, sorted" "$(printf "'k'\n('a', 'b')" | sort)" keys "$L"
run keys -s "$L"
check "keys -s on a Log gives each size" grep -qx "100005	'k'" "$W/out"
check "... of a tuple key too" grep -qx "5	('a', 'b')" "$W/out"
got "get -r of a tuple key" tuple get -r "$L" "('a', 'b')"
run delete "$L" k missing
expect_rc "delete on a Log (a missing key is fine)" 0
got "... the key is gone" "('a', 'b')" keys "$L"
run drop "$L"
expect_rc "drop on a Log" 0
got "... no keys left" "" keys "$L"
check "... the Log stays a Log" test -f "$L/partd-log"
printf 'again' | "$PARTD" append "$L" k 2>"$W/err"
got "the dropped Log takes appends" again get "$L" k

# --codec over a Log, and repair.
C=$A/log-zstd
printf 'compress me compress me compress me' >"$W/c"
run_in "$W/c" append --store log --codec zstd "$C" z
expect_rc "append --codec zstd --store log" 0
"$PARTD" get --codec zstd "$C" z >"$W/rt" 2>"$W/err" </dev/null
check "get --codec zstd from a Log" cmp -s "$W/c" "$W/rt"
got "repair --codec zstd on a Log: nothing torn" 0 repair --codec zstd "$C" z

# --store file when creating; the kinds are never mixed up.
F=$A/file
printf 'f' | "$PARTD" append --store file "$F" k 2>"$W/err"
check "append --store file makes a File (no marker)" test ! -e "$F/partd-log"
got "a File reads back without --store" f get "$F" k
run get --store log "$F" k
expect_rc "get --store log on a File fails" 1
check "... naming the directory" grep -qF "$F" "$W/err"
run get --store file "$L" k
expect_rc "get --store file on a Log fails" 1
check "... saying it is a Log" grep -q 'is a Log store' "$W/err"
usage_msg "--store bogus" "^partd: get: --store 'bogus': not file or log" \
    get --store bogus "$L" k
usage_msg "--store with --connect" "^partd: keys: --store is for a DIR" \
    keys --store log --connect ipc:///nowhere
run get "$A/missing" k
expect_rc "get on a missing DIR fails" 1
check "... and makes nothing" test ! -e "$A/missing"
mkdir "$A/empty"
printf 'e' | "$PARTD" append --store log "$A/empty" k 2>"$W/err"
got "an empty directory becomes a Log with --store log" e get "$A/empty" k

# ------------------------------------------------------------ serve
# serve_bg ARGS...: `partd serve ARGS... -q` in the background; SPID is its
# pid and ADDR the address it prints.
serve_bg() {
    "$PARTD" serve "$@" -q >"$W/serve.out" 2>"$W/serve.err" </dev/null &
    SPID=$!
    ADDR=$(first_line "$W/serve.out")
}

# serve_stop: stops it with SIGTERM; RC is its exit status.
serve_stop() {
    kill -TERM "$SPID"
    wait "$SPID"
    RC=$?
    SPID=
}

S=$A/served
serve_bg --store log --path "$S"
case $ADDR in
ipc://*) ok "serve --store log prints its address: $ADDR" ;;
*) bad "serve --store log prints its address" "got '$ADDR'" ;;
esac
run_in "$W/v2" append --connect "$ADDR" k
expect_rc "append --connect to serve --store log" 0
run_in "$W/v1" append --connect "$ADDR" k
cat "$W/v2" "$W/v1" >"$W/want"
"$PARTD" get --connect "$ADDR" k >"$W/rt" 2>"$W/err" </dev/null
check "get --connect reads both appends" cmp -s "$W/want" "$W/rt"
serve_stop
expect_rc "serve --store log exits 0 on SIGTERM" 0
check "--path is a Log" test -f "$S/partd-log"
"$PARTD" get "$S" k >"$W/rt" 2>"$W/err" </dev/null
check "... holding what was served (flushed on exit)" cmp -s "$W/want" "$W/rt"

# serve --path of a Log without --store serves that Log.
serve_bg --path "$S"
"$PARTD" get --connect "$ADDR" k >"$W/rt" 2>"$W/err" </dev/null
check "serve --path LOGDIR (no --store) serves the Log" cmp -s "$W/want" "$W/rt"
run_in "$W/v1" append --connect "$ADDR" k2
serve_stop
got "... and keeps its appends" hello get "$S" k2

# serve --store log without --path: a private temporary Log.
serve_bg --store log
run_in "$W/v2" append --connect "$ADDR" t
"$PARTD" get --connect "$ADDR" t >"$W/rt" 2>"$W/err" </dev/null
check "serve --store log, temporary: a round trip" cmp -s "$W/v2" "$W/rt"
serve_stop
expect_rc "... exits 0" 0
run serve --store file --path "$L" --timeout 1
expect_rc "serve --store file on a Log fails" 1
check "... saying it is a Log" grep -q 'is a Log store' "$W/err"
usage_msg "serve --store bogus" "^partd: serve: --store 'bogus': not file or log" \
    serve --store bogus

tap_summary
