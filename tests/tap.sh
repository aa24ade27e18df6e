# What the shell test suites share (sourced by tests/test_cli.sh and
# tests/test_demo.sh): counting checks, and reporting a failure with the
# last command's output.  The sourcing script sets W (its scratch
# directory, where $W/out and $W/err hold the last command's output) and
# RC (that command's exit status).

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
# tap_summary: the closing line; the exit status says whether all passed.
tap_summary() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
