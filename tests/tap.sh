# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# What the shell test suites share (sourced by tests/clifix.sh and
# tests/test_demo.sh): counting checks, and reporting a failure with the
# last command's output.  The sourcing script sets W (its scratch
# directory, where $W/out and $W/err hold the last command's output) and
# RC (that command's exit status), and defines run ARGS... (runs partd,
# setting both) for usage_msg.

PASSED=0
FAILED=0
ok() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
# bad DESC [DETAIL...]: a failed check, with the last command's output.
bad() {
    FAILED=$((FAILED + 1))
    echo "FAIL - $1"
    shift
    local l
    for l in "$@"; do echo "         $l"; done
    [ -s "$W/out" ] && echo "         stdout: $(tail -c 600 "$W/out" | tr '\n' '|')"
    [ -s "$W/err" ] && echo "         stderr: $(tail -c 600 "$W/err" | tr '\n' '|')"
    return 0
}
# check DESC CMD...: passes if CMD succeeds.
check() {
    local d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d" "command: $*"; fi
}
# expect_rc DESC STATUS: passes if RC is STATUS.
expect_rc() {
    if [ "$RC" -eq "$2" ]; then ok "$1"; else bad "$1" "exit $RC, want $2"; fi
}
# usage_msg DESC REGEX ARGS...: `run ARGS...` (the sourcing script's run)
# must be a usage error: exit 2, nothing on stdout, and a first line on
# stderr that matches REGEX (the message names the verb and the option).
usage_msg() {
    local d=$1 re=$2
    shift 2
    run "$@"
    if [ "$RC" -eq 2 ] && head -n 1 "$W/err" | grep -qE -- "$re" && [ ! -s "$W/out" ]; then
        ok "usage error names it: $d"
    else
        bad "usage error names it: $d" "exit $RC, want 2 and /$re/"
    fi
}
# tap_summary: the closing line; the exit status says whether all passed.
tap_summary() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
