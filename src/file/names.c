/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Key <-> file name (docs/file-layout.md).  A key part made only of the
 * characters [A-Za-z0-9-_.() ], 1..255 bytes, not "." or ".." (and not
 * ".lock" at the top level) is its own file name: the reference's layout.
 * Any other part is named '%' + the part with every other byte written %HH.
 * A name longer than 255 bytes is cut into directories "%~<piece>" ending
 * in "%<piece>".  A tuple key is a directory per part but the last.  '%' is
 * outside the plain set, and '~' and '#' are outside what %-encoding emits,
 * so plain names, encoded names, continuation directories ("%~") and
 * temporary files ("%#") never collide: the mapping is injective.
 */
#include "file/file.h"

#include <string.h>

#define S_NAME_MAX 255
#define S_PIECE_MAX 253 /* "%~" + piece <= 255 */

static inline bool s_plain_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '(' || c == ')' || c == ' ';
}

static bool s_is_plain(const unsigned char *p, size_t n, bool top) {
    if (n == 0 || n > S_NAME_MAX) return false;
    if (n == 1 && p[0] == '.') return false;
    if (n == 2 && p[0] == '.' && p[1] == '.') return false;
    if (top && n == 5 && memcmp(p, ".lock", 5) == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!s_plain_char(p[i])) return false;
    return true;
}

static const char s_hex[] = "0123456789ABCDEF";

int pd__file_encode_part(pd__buf *rel, const unsigned char *p, size_t n,
                         bool top) {
    if (rel->len && pd__buf_add(rel, "/", 1)) return -1;
    if (s_is_plain(p, n, top)) return pd__buf_add(rel, p, n) ? -1 : 0;
    /* %-encode into a scratch buffer, then cut into pieces. */
    char inl[512];
    pd__buf e;
    pd__buf_init(&e, inl, sizeof inl);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (s_plain_char(p[i])) {
            rc = pd__buf_add(&e, &p[i], 1);
        } else {
            char t[3] = {'%', s_hex[p[i] >> 4], s_hex[p[i] & 15]};
            rc = pd__buf_add(&e, t, 3);
        }
    }
    const char *s = pd__file_str(&e);
    size_t elen = e.len, at = 0;
    while (rc == 0 && elen - at + 1 > S_NAME_MAX) {
        size_t cut = S_PIECE_MAX;
        /* never split a %HH triplet */
        if (s[at + cut - 1] == '%')
            cut -= 1;
        else if (s[at + cut - 2] == '%')
            cut -= 2;
        rc = pd__buf_add(rel, "%~", 2);
        if (!rc) rc = pd__buf_add(rel, s + at, cut);
        if (!rc) rc = pd__buf_add(rel, "/", 1);
        at += cut;
    }
    if (!rc) rc = pd__buf_add(rel, "%", 1);
    if (!rc) rc = pd__buf_add(rel, s + at, elen - at);
    pd__buf_free(&e);
    return rc ? -1 : 0;
}

int pd__file_relpath(const pd_key *key, pd__buf *rel) {
    pd__parts pp;
    pd__key_parts(key, &pp);
    pd__buf_clear(rel);
    for (size_t i = 0; i < pp.n; i++)
        if (pd__file_encode_part(rel, pp.p[i].data, pp.p[i].size, i == 0))
            return -1;
    /* a C string even for an empty path */
    return pd__buf_reserve(rel, 0) ? -1 : 0;
}

/* Decodes the body of an encoded name (after '%' or "%~") into out;
 * returns -1 if it is not canonical %-encoding (upper-case hex digits, and
 * only for bytes outside the plain set). */
static int s_pct_decode(const char *s, size_t n, pd__buf *out) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3) return -1;
            int h = pd__hexval(s[i + 1]), l = pd__hexval(s[i + 2]);
            if (h < 0 || l < 0 || s[i + 1] >= 'a' || s[i + 2] >= 'a') return -1;
            unsigned char b = (unsigned char)(h * 16 + l);
            if (s_plain_char(b)) return -1; /* not canonical */
            if (pd__buf_add(out, &b, 1)) return -1;
            i += 2;
        } else if (s_plain_char(c)) {
            if (pd__buf_add(out, &c, 1)) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* The escaped text is every piece of acc, then the final name.  Checked
 * canonical by encoding the part again: so every listed key reads back from
 * the very file that was listed. */
int pd__file_decode_name(const char *name, const pd__buf *acc, bool top,
                         pd__buf *out) {
    size_t n = strlen(name);
    pd__buf_clear(out);
    if (name[0] == '%' && (name[1] == '#' || name[1] == '~')) return -1;
    char encinl[512], fullinl[512];
    pd__buf enc, full;
    pd__buf_init(&enc, encinl, sizeof encinl);
    pd__buf_init(&full, fullinl, sizeof fullinl);
    const char *a = pd__file_str(acc);
    int rc = 0;
    for (size_t i = 0; i < acc->len && rc == 0;) {
        const char *c = a + i;
        const char *slash = memchr(c, '/', acc->len - i);
        size_t clen = slash ? (size_t)(slash - c) : acc->len - i;
        if (clen < 2 || c[0] != '%' || c[1] != '~')
            rc = -1;
        else
            rc = pd__buf_add(&enc, c + 2, clen - 2);
        i += clen + 1;
    }
    if (rc == 0 && name[0] == '%') {
        rc = pd__buf_add(&enc, name + 1, n - 1);
        if (rc == 0) rc = s_pct_decode(pd__file_str(&enc), enc.len, out);
    } else if (rc == 0) {
        rc = acc->len ? -1 : pd__buf_add(out, name, n);
    }
    /* a part may be empty: out is a C string all the same */
    if (rc == 0) rc = pd__buf_reserve(out, 0);
    if (rc == 0) rc = pd__file_encode_part(&full, out->p, out->len, top);
    const char *fp = pd__file_str(&full);
    if (rc == 0 && (full.len != acc->len + n || memcmp(fp, a, acc->len) != 0 ||
                    memcmp(fp + acc->len, name, n) != 0))
        rc = -1;
    pd__buf_free(&enc);
    pd__buf_free(&full);
    return rc ? -1 : 0;
}
