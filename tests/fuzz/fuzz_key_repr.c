/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * fuzz_key_repr: pd_key_parse and pd_key_repr.
 *
 *   1. The whole input is text for pd_key_parse.  Errors are fine (with a
 *      message); a key that parses must print (pd_key_repr) to a form that
 *      parses back to the same key (packed forms equal), and printing that
 *      key again gives the same text.
 *   2. The input is also read as a key (fz_read_key: flat or tuple parts of
 *      arbitrary bytes); a valid one must survive repr -> parse exactly, its
 *      repr must be printable ASCII, and a repr into every short buffer must
 *      be a NUL-terminated prefix of the full form.
 */
#include "fuzz_util.h"

#include <ctype.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* pd_key_repr into a fresh malloc'd buffer; checks the measured length. */
static char *s_repr(const pd_key *k, size_t *lenp) {
    size_t n = pd_key_repr(k, NULL, 0);
    FZ_CHECK(n > 0, "repr of a valid key %s is empty", fz_short(k));
    char *buf = malloc(n + 1);
    FZ_CHECK(buf, "out of memory");
    size_t n2 = pd_key_repr(k, buf, n + 1);
    FZ_CHECK(n2 == n, "repr measured %zu, wrote %zu", n, n2);
    FZ_CHECK(strlen(buf) == n, "repr has an embedded NUL or no NUL");
    *lenp = n;
    return buf;
}

/* repr(k) must parse back to k; returns the repr (caller frees). */
static char *s_roundtrip(const pd_key *k, size_t *lenp) {
    size_t n;
    char *text = s_repr(k, &n);
    for (size_t i = 0; i < n; i++)
        FZ_CHECK(text[i] >= 0x20 && text[i] < 0x7f,
                 "repr has a non-printable byte 0x%02x at %zu: %s",
                 (unsigned char)text[i], i, text);
    pd_key *back = NULL;
    int rc = pd_key_parse(text, n, &back);
    FZ_CHECK(rc == 0, "repr does not parse back (%d: %s): %s", rc,
             pd_errmsg(NULL), text);
    FZ_CHECK(fz_same_key(k, back), "repr round trip changed the key: %s", text);
    pd_key_free(&back);
    FZ_CHECK(back == NULL, "pd_key_free did not clear the pointer");
    *lenp = n;
    return text;
}

/* Every short capacity gives a NUL-terminated prefix and the full length. */
static void s_short_buffers(const pd_key *k, const char *full, size_t n) {
    char small[64];
    size_t caps[] = {1, 2, 3, 7, 16, sizeof small};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        size_t cap = caps[i];
        memset(small, 'Z', sizeof small);
        size_t got = pd_key_repr(k, small, cap);
        FZ_CHECK(got == n, "repr with cap %zu returned %zu, not %zu", cap, got,
                 n);
        size_t want = n < cap - 1 ? n : cap - 1;
        FZ_CHECK(memchr(small, 0, cap) != NULL && strlen(small) == want &&
                     memcmp(small, full, want) == 0,
                 "repr with cap %zu is not a NUL-terminated prefix", cap);
        if (cap < sizeof small)
            FZ_CHECK(small[cap] == 'Z', "repr wrote past cap %zu", cap);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* 1. the input as text */
    pd_key *k = NULL;
    int rc = pd_key_parse((const char *)data, size, &k);
    if (rc == 0) {
        FZ_CHECK(k != NULL, "parse succeeded with no key");
        char why[64];
        FZ_CHECK(pd__key_check(k, why) == 0, "parsed key is invalid: %s", why);
        size_t n1, n2;
        char *t1 = s_roundtrip(k, &n1);
        pd_key *k2 = NULL;
        FZ_CHECK(pd_key_parse(t1, n1, &k2) == 0, "reparse failed");
        char *t2 = s_repr(k2, &n2);
        FZ_CHECK(n1 == n2 && memcmp(t1, t2, n1) == 0,
                 "repr not stable: %s vs %s", t1, t2);
        s_short_buffers(k, t1, n1);
        free(t1);
        free(t2);
        pd_key_free(&k2);
        pd_key_free(&k);
    } else {
        FZ_CHECK(k == NULL, "parse failed (%d) but set *out", rc);
        FZ_CHECK(rc == PD_ERR_MISUSE || rc == PD_ERR_LIMIT ||
                     rc == PD_ERR_NOMEM,
                 "parse returned unexpected code %d", rc);
        const char *msg = pd_errmsg(NULL);
        FZ_CHECK(msg && msg[0] && strcmp(msg, "ok") != 0,
                 "parse failed (%d) with no message", rc);
    }

    /* 2. the input as a key built from bytes (several, while input lasts) */
    fz_reader r = {data, size};
    for (int i = 0; i < 4 && r.n; i++) {
        fz_key fk;
        fz_read_key(&r, &fk, PD_KEY_MAX);
        char why[64];
        if (pd__key_check(&fk.key, why)) {
            FZ_CHECK(pd_key_repr(&fk.key, NULL, 0) == 0,
                     "repr of an invalid key is not 0");
            continue;
        }
        size_t n;
        char *text = s_roundtrip(&fk.key, &n);
        s_short_buffers(&fk.key, text, n);
        free(text);
    }
    return 0;
}
