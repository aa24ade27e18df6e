/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * A program built against an *installed* libpartd (tests/test_install.sh):
 * checks that the header and the library agree on the version and that a
 * File store round-trips bytes.  Exits 0 on success.
 */
#include <partd/partd.h>

#include <stdio.h>
#include <string.h>

static int s_fail(const char *what, const pd_store *s) {
    fprintf(stderr, "consumer: %s: %s\n", what, pd_errmsg(s));
    return 1;
}

int main(void) {
    if (pd_version_number() != PARTD_VERSION_NUMBER ||
        strcmp(pd_version_string(), PARTD_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: header %s but library %s\n",
                PARTD_VERSION_STRING, pd_version_string());
        return 1;
    }

    pd_store *st = NULL;
    if (pd_file_open_temp(&st, NULL, 0) != 0) return s_fail("open", NULL);

    pd_key keys[2] = {PD_KEY("k", 1), PD_KEY("k", 1)};
    pd_bytes vals[2] = {PD_BYTES("hello ", 6), PD_BYTES("world", 5)};
    pd_result *r = NULL;
    int bad = 0;
    if (pd_append(st, 2, keys, vals, 0) != 0) {
        bad = s_fail("append", st);
    } else if (pd_get(st, 1, keys, &r, 0) != 0) {
        bad = s_fail("get", st);
    } else {
        pd_bytes v = pd_result_value(r, 0);
        if (v.size != 11 || memcmp(v.data, "hello world", 11) != 0) {
            fprintf(stderr, "consumer: got %zu wrong bytes\n", v.size);
            bad = 1;
        }
    }
    pd_result_free(&r);
    if (pd_close(&st) != 0) bad = s_fail("close", NULL);
    if (!bad) printf("consumer: ok (libpartd %s)\n", pd_version_string());
    return bad;
}
