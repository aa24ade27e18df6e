#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# Tests of writer attempts from the command line: `partd append --writer W
# --attempt N` (on a Log directory and through `partd serve --store log`;
# a conflict exits 3), and `partd demo --attempts` / `--fail-workers K`
# (killed workers run again, the verification exact run after run, direct
# and served; refused on a File store).
# Usage: bash tests/test_cli_attempt.sh /path/to/partd
# Prints one line per check and a last line "N passed, N failed"; exits
# non-zero if any check failed.
set -u

. "$(dirname "${BASH_SOURCE[0]}")/clifix.sh" "$@"
SPID=
trap '[ -n "$SPID" ] && kill -9 $SPID 2>/dev/null; rm -rf "$T"' EXIT

# put VALUE ARGS...: `partd append ARGS...` with VALUE on stdin; sets RC.
put() {
    local v=$1
    shift
    printf '%s' "$v" | "$PARTD" append "$@" >"$W/out" 2>"$W/err"
    RC=$?
}

# ------------------------------------------------------------ append
L=$T/log
put one --store log --writer w1 --attempt 1 "$L" k
expect_rc "append --writer --attempt on a Log" 0
got "the attempt's value is there" one get "$L" k
put two --writer w1 --attempt 2 "$L" k
expect_rc "a second attempt of the writer: conflict, exit 3" 3
if grep -q "w1" "$W/err" && grep -qi "nothing was added" "$W/err"; then
    ok "the conflict names the writer and says nothing was added"
else
    bad "the conflict names the writer and says nothing was added"
fi
got "the conflicting value was discarded" one get "$L" k
put three --writer w2 --attempt 5 "$L" k
expect_rc "another writer commits" 0
got "both writers' values" onethree get "$L" k
put x --writer w3 "$L" k
expect_rc "--writer without --attempt: usage error" 2
put x --attempt 1 "$L" k
expect_rc "--attempt without --writer: usage error" 2
put x --writer w3 --attempt -1 "$L" k
expect_rc "a negative attempt: usage error" 2
F=$T/file
put x --store file --writer w --attempt 1 "$F" k
expect_rc "a File has no attempts: exit 1" 1
if grep -qi "attempt" "$W/err"; then ok "the refusal says why"; else bad "the refusal says why"; fi
got "nothing was added to the File" "" get "$F" k

# Through a server over a Log.
S=$T/slog
"$PARTD" serve --path "$S" --store log --bind "ipc://$T/s.sock" -q \
    >"$T/serve.out" 2>"$T/serve.err" &
SPID=$!
ADDR=$(first_line "$T/serve.out")
if [ -n "$ADDR" ]; then ok "serve --store log started"; else bad "serve --store log started"; fi
put a --connect "$ADDR" --writer 7 --attempt 1 k
expect_rc "append --writer through the server" 0
put b --connect "$ADDR" --writer 7 --attempt 2 k
expect_rc "a conflict through the server: exit 3" 3
grep -q "$ADDR" "$W/err" && ok "the message names the server" || bad "the message names the server"
got "the server's store holds the first attempt only" a get --connect "$ADDR" k
kill $SPID
wait $SPID 2>/dev/null
SPID=

# ------------------------------------------------------------ demo
# Run after run, direct and served, killed workers leave the result exact.
for i in 1 2 3; do
    for mode in "" --direct; do
        run demo -q --store log --fail-workers 2 --workers 3 --records 60k \
            --partitions 16 --seed $((i * 7)) $mode
        if [ "$RC" -eq 0 ] && grep -q "verify:  OK" "$W/out" &&
            grep -q "2 killed before their commit" "$W/out"; then
            ok "demo --fail-workers 2 ${mode:-served} run $i: OK, 2 discarded"
        else
            bad "demo --fail-workers 2 ${mode:-served} run $i: OK, 2 discarded" "exit $RC"
        fi
    done
done
run demo -q --store log --attempts --records 20k --partitions 8
if [ "$RC" -eq 0 ] && grep -q "attempts: 2 " "$W/out"; then
    ok "demo --attempts: OK, one attempt per worker"
else
    bad "demo --attempts: OK, one attempt per worker" "exit $RC"
fi
run demo -q --store file --fail-workers 1 --records 1000
expect_rc "demo --fail-workers on a File: usage error" 2
grep -q "no writer attempts" "$W/err" && ok "the refusal says why" || bad "the refusal says why"
run demo -q --fail-workers 1 --records 1000
expect_rc "demo --fail-workers without --store: the default Log takes it" 0
run demo -q --fail-workers 1 --records 1000 --dir "$T/new-dir"
expect_rc "demo --fail-workers into a new --dir (a File) without --store log: refused" 2
run demo -q --store log --workers 2 --fail-workers 3 --records 1000
expect_rc "more workers to kill than workers: usage error" 2
run demo -q --store log --attempts --dir "$T/d1" --dir "$T/d2" --records 1000
expect_rc "attempts over several --dir (a Fanout): usage error" 2

tap_summary
