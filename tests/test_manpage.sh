#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# tests/test_manpage.sh PARTD MANPAGE
# Keeps the manual page (docs/partd.1) true to the CLI: every verb that
# `partd --help` lists has its entry, and every option that `partd --help`
# and `partd VERB --help` print (long and short) is named in the page.  The
# page also renders without groff warnings, when man is installed.
set -uo pipefail

if (($# != 2)); then
    echo "usage: $0 PARTD MANPAGE" >&2
    exit 2
fi
partd=$1
page=$2
W=$(mktemp -d "${TMPDIR:-/tmp}/partd-manpage.XXXXXX")
trap 'rm -rf "$W"' EXIT
# shellcheck source=tests/tap.sh
source "$(dirname "${BASH_SOURCE[0]}")/tap.sh"

# The page as plain text: groff's \- is -, font changes dropped.
sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(aq/'"'"'/g' "$page" >"$W/page"

# options FILE: the options an --help text names, one per line: "-x" and
# "--long" words at the start of an option line or inside a usage line.
options() {
    grep -E '^ +(-|partd )' "$1" |
        grep -oE '(^|[][ |,])--?[A-Za-z][A-Za-z0-9-]*' |
        sed -E 's/^[][ |,]//' | sort -u
}
# named OPT: the page names OPT as a whole word.
named() {
    grep -qE -- "(^|[^A-Za-z0-9-])$1([^A-Za-z0-9-]|\$)" "$W/page"
}

"$partd" --help >"$W/help" 2>"$W/err" ||
    { bad "partd --help exits 0"; tap_summary; exit 1; }
ok "partd --help exits 0"
# The page's title line names the version the CLI prints.
version=$(sed -n '1s/^partd \([^ ]*\) .*/\1/p' "$W/help")
if grep -q "^\.TH PARTD 1 .*\"libpartd $version\"" "$W/page"; then
    ok "page is for version $version"
else
    bad "page is for version $version" "update the .TH line of $page"
fi
verbs=$(sed -n '/^Verbs:/,/^$/p' "$W/help" | awk 'NR > 1 && NF { print $1 }')
[[ -n "$verbs" ]] && ok "partd --help lists verbs" ||
    bad "partd --help lists verbs"

for o in $(options "$W/help"); do
    if named "$o"; then ok "page names $o (partd --help)"; else
        bad "page names $o (partd --help)"; fi
done
for v in $verbs; do
    if grep -qE "^\.B $v( |\$)" "$W/page"; then ok "page has verb $v"; else
        bad "page has verb $v" "no '.B $v' entry in $page"; fi
    "$partd" "$v" --help >"$W/vhelp" 2>"$W/err"
    RC=$?
    expect_rc "partd $v --help exits 0" 0
    for o in $(options "$W/vhelp"); do
        if named "$o"; then ok "page names $o (partd $v --help)"; else
            bad "page names $o (partd $v --help)"; fi
    done
done

if command -v man >/dev/null 2>&1; then
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" \
        >/dev/null 2>"$W/warn"
    if [[ ! -s "$W/warn" ]]; then ok "page renders without warnings"; else
        bad "page renders without warnings" "$(head -n 5 "$W/warn")"; fi
fi
tap_summary
