/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Keys: validation, normalisation to parts, the packed (hashable) form, and
 * the printable repr used in messages and by the CLI.
 */
#include "core/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int pd__key_check(const pd_key *key, char why[64]) {
    size_t total = 0;
    if (key->nparts == 0) {
        if (key->size > 0 && !key->data) {
            snprintf(why, 64, "NULL data with size %zu", key->size);
            return PD_ERR_MISUSE;
        }
        total = key->size;
    } else {
        if (key->nparts > PD_KEY_MAX_PARTS) {
            snprintf(why, 64, "%zu parts (most is %d)", key->nparts,
                     PD_KEY_MAX_PARTS);
            return PD_ERR_LIMIT;
        }
        if (!key->parts) {
            snprintf(why, 64, "NULL parts with nparts %zu", key->nparts);
            return PD_ERR_MISUSE;
        }
        for (size_t i = 0; i < key->nparts; i++) {
            if (key->parts[i].size > 0 && !key->parts[i].data) {
                snprintf(why, 64, "part %zu: NULL data with size %zu", i,
                         key->parts[i].size);
                return PD_ERR_MISUSE;
            }
            if (key->parts[i].size > PD_KEY_MAX) {
                total = PD_KEY_MAX + 1;
                break;
            }
            total += key->parts[i].size;
        }
    }
    if (total > PD_KEY_MAX) {
        snprintf(why, 64, "key longer than %d bytes", PD_KEY_MAX);
        return PD_ERR_LIMIT;
    }
    return 0;
}

void pd__key_parts(const pd_key *key, pd__parts *pp) {
    if (key->nparts == 0) {
        pp->one.data = key->data;
        pp->one.size = key->size;
        pp->p = &pp->one;
        pp->n = 1;
    } else {
        pp->p = key->parts;
        pp->n = key->nparts;
    }
}

size_t pd__key_packed_size(const pd_key *key) {
    pd__parts pp;
    pd__key_parts(key, &pp);
    if (pp.n == 1) return 1 + pp.p[0].size;
    size_t sz = 1;
    for (size_t i = 0; i < pp.n; i++) sz += 4 + pp.p[i].size;
    return sz;
}

void pd__key_pack(const pd_key *key, unsigned char *out) {
    pd__parts pp;
    pd__key_parts(key, &pp);
    if (pp.n == 1) {
        out[0] = 0;
        if (pp.p[0].size) memcpy(out + 1, pp.p[0].data, pp.p[0].size);
        return;
    }
    out[0] = 1;
    unsigned char *o = out + 1;
    for (size_t i = 0; i < pp.n; i++) {
        uint32_t l = (uint32_t)pp.p[i].size;
        o[0] = (unsigned char)l;
        o[1] = (unsigned char)(l >> 8);
        o[2] = (unsigned char)(l >> 16);
        o[3] = (unsigned char)(l >> 24);
        o += 4;
        if (l) memcpy(o, pp.p[i].data, l);
        o += l;
    }
}

int pd__key_unpack(const unsigned char *pk, size_t len, pd_key *out,
                   pd_bytes *parts) {
    if (len < 1) return PD_ERR_CORRUPT;
    if (pk[0] == 0) {
        *out = (pd_key){pk + 1, len - 1, NULL, 0};
        return 0;
    }
    if (pk[0] != 1) return PD_ERR_CORRUPT;
    size_t n = 0, pos = 1;
    while (pos < len) {
        if (len - pos < 4 || n >= PD_KEY_MAX_PARTS) return PD_ERR_CORRUPT;
        uint32_t l = (uint32_t)pk[pos] | (uint32_t)pk[pos + 1] << 8 |
                     (uint32_t)pk[pos + 2] << 16 | (uint32_t)pk[pos + 3] << 24;
        pos += 4;
        if (l > len - pos) return PD_ERR_CORRUPT;
        parts[n].data = pk + pos;
        parts[n].size = l;
        n++;
        pos += l;
    }
    if (n < 2) return PD_ERR_CORRUPT;
    *out = (pd_key){NULL, 0, parts, n};
    return 0;
}

int pd__pkey_set(pd__pkey *pk, const pd_key *key) {
    /* The common case, a short flat key: one copy, no part walk. */
    if (key->nparts == 0 && key->size < sizeof pk->inl) {
        pk->p = pk->inl;
        pk->len = 1 + key->size;
        pk->inl[0] = 0;
        if (key->size) memcpy(pk->inl + 1, key->data, key->size);
        return 0;
    }
    size_t len = pd__key_packed_size(key);
    pk->p = len <= sizeof pk->inl ? pk->inl : malloc(len);
    if (!pk->p) {
        pk->len = 0;
        return PD_ERR_NOMEM;
    }
    pk->len = len;
    pd__key_pack(key, pk->p);
    return 0;
}

void pd__pkey_free_heap(pd__pkey *pk) { free(pk->p); }

/* ------------------------------------------------------------------ Repr */

typedef struct s_out {
    char *buf;
    size_t cap, len;
} s_out;

static void s_putc(s_out *o, char c) {
    if (o->len + 1 < o->cap) o->buf[o->len] = c;
    o->len++;
}

static void s_puts(s_out *o, const char *s) {
    while (*s) s_putc(o, *s++);
}

static void s_repr_bytes(s_out *o, const unsigned char *p, size_t n,
                         size_t limit) {
    static const char hex[] = "0123456789abcdef";
    s_putc(o, '\'');
    for (size_t i = 0; i < n; i++) {
        if (o->len >= limit) {
            s_puts(o, "...");
            break;
        }
        unsigned char c = p[i];
        switch (c) {
        case '\\': s_puts(o, "\\\\"); break;
        case '\'': s_puts(o, "\\'"); break;
        case '\t': s_puts(o, "\\t"); break;
        case '\n': s_puts(o, "\\n"); break;
        case '\r': s_puts(o, "\\r"); break;
        default:
            if (c >= 0x20 && c < 0x7f) {
                s_putc(o, (char)c);
            } else {
                s_putc(o, '\\');
                s_putc(o, 'x');
                s_putc(o, hex[c >> 4]);
                s_putc(o, hex[c & 15]);
            }
        }
    }
    s_putc(o, '\'');
}

static size_t s_repr(const pd_key *key, char *buf, size_t cap, size_t limit) {
    char why[64];
    if (!key || pd__key_check(key, why) == PD_ERR_MISUSE) {
        if (cap) buf[0] = '\0';
        return 0;
    }
    s_out o = {buf, cap, 0};
    if (key->nparts == 0) {
        s_repr_bytes(&o, key->data, key->size, limit);
    } else {
        s_putc(&o, '(');
        for (size_t i = 0; i < key->nparts; i++) {
            if (i) s_puts(&o, ", ");
            if (o.len >= limit) {
                s_puts(&o, "...");
                break;
            }
            s_repr_bytes(&o, key->parts[i].data, key->parts[i].size, limit);
        }
        if (key->nparts == 1) s_putc(&o, ',');
        s_putc(&o, ')');
    }
    if (cap) buf[o.len < cap ? o.len : cap - 1] = '\0';
    return o.len;
}

size_t pd_key_repr(const pd_key *key, char *buf, size_t cap) {
    if (!buf) cap = 0;
    return s_repr(key, buf, cap, SIZE_MAX);
}

const char *pd__key_short(const pd_key *key, char buf[PD__KEYSHORT_MAX]) {
    s_repr(key, buf, PD__KEYSHORT_MAX, 96);
    return buf;
}

/* ----------------------------------------------------------------- Parse */

int pd__hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void s_skip_ws(const char *t, size_t len, size_t *i) {
    while (*i < len && (t[*i] == ' ' || t[*i] == '\t')) (*i)++;
}

/* Parses one quoted string at t[*i]; writes bytes to out (if non-NULL) and
 * returns their count, or (size_t)-1 on a syntax error. */
static size_t s_parse_quoted(const char *t, size_t len, size_t *i,
                             unsigned char *out) {
    if (*i >= len || (t[*i] != '\'' && t[*i] != '"')) return (size_t)-1;
    char q = t[(*i)++];
    size_t n = 0;
    while (*i < len && t[*i] != q) {
        unsigned char c = (unsigned char)t[(*i)++];
        if (c == '\\') {
            if (*i >= len) return (size_t)-1;
            char e = t[(*i)++];
            switch (e) {
            case '\\': c = '\\'; break;
            case '\'': c = '\''; break;
            case '"': c = '"'; break;
            case 't': c = '\t'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case '0': c = '\0'; break;
            case 'x': {
                if (len - *i < 2) return (size_t)-1;
                int h = pd__hexval(t[*i]), l = pd__hexval(t[*i + 1]);
                if (h < 0 || l < 0) return (size_t)-1;
                c = (unsigned char)(h * 16 + l);
                *i += 2;
                break;
            }
            default: return (size_t)-1;
            }
        }
        if (out) out[n] = c;
        n++;
    }
    if (*i >= len) return (size_t)-1;
    (*i)++; /* closing quote */
    return n;
}

/* Two passes: measure (out == NULL), then fill. */
static int s_parse(const char *t, size_t len, unsigned char *bytes,
                   pd_bytes *parts, size_t *nbytes, size_t *nparts,
                   bool *tuple) {
    size_t i = 0, nb = 0, np = 0;
    s_skip_ws(t, len, &i);
    if (i < len && t[i] == '(') {
        *tuple = true;
        i++;
        for (;;) {
            s_skip_ws(t, len, &i);
            if (i < len && t[i] == ')' && np > 0) break;
            size_t n = s_parse_quoted(t, len, &i, bytes ? bytes + nb : NULL);
            if (n == (size_t)-1) return PD_ERR_MISUSE;
            if (np >= PD_KEY_MAX_PARTS) return PD_ERR_LIMIT;
            if (parts) parts[np] = (pd_bytes){bytes + nb, n};
            nb += n;
            np++;
            if (nb > PD_KEY_MAX) return PD_ERR_LIMIT;
            s_skip_ws(t, len, &i);
            if (i < len && t[i] == ',') {
                i++;
                continue;
            }
            if (i < len && t[i] == ')') break;
            return PD_ERR_MISUSE;
        }
        i++; /* ')' */
    } else {
        *tuple = false;
        size_t n = s_parse_quoted(t, len, &i, bytes);
        if (n == (size_t)-1) return PD_ERR_MISUSE;
        if (n > PD_KEY_MAX) return PD_ERR_LIMIT;
        nb = n;
    }
    s_skip_ws(t, len, &i);
    if (i != len) return PD_ERR_MISUSE;
    *nbytes = nb;
    *nparts = np;
    return 0;
}

int pd_key_parse(const char *text, size_t len, pd_key **out) {
    if (!text || !out)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "key parse: NULL argument");
    size_t nb = 0, np = 0;
    bool tuple = false;
    int rc = s_parse(text, len, NULL, NULL, &nb, &np, &tuple);
    if (rc)
        return pd__err(NULL, rc, 0, "key parse: %s in '%.*s'",
                       rc == PD_ERR_LIMIT ? "key too long or too many parts"
                                          : "not a quoted key or tuple",
                       (int)(len > 200 ? 200 : len), text);
    size_t sz = sizeof(pd_key) + np * sizeof(pd_bytes) + nb + 1;
    pd_key *k = malloc(sz);
    if (!k) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "key parse");
    pd_bytes *parts = (pd_bytes *)(k + 1);
    unsigned char *bytes = (unsigned char *)(parts + np);
    s_parse(text, len, bytes, parts, &nb, &np, &tuple);
    if (tuple)
        *k = (pd_key){NULL, 0, parts, np};
    else
        *k = (pd_key){bytes, nb, NULL, 0};
    *out = k;
    return 0;
}

void pd_key_free(pd_key **key) {
    if (!key) return;
    free(*key);
    *key = NULL;
}
