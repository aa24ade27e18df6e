/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * pd_result (values of a get, one buffer plus an offset table) and
 * pd_keylist (keys with sizes), with the builders the stores use.
 */
#include "core/internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- Result */

/* The kernel copies file data (page-aligned in the page cache) several
 * times slower into a buffer that starts 8 or 16 bytes past a page
 * boundary, where glibc puts every mmap-sized block (>= 128 KiB): 4K
 * aliasing between the copy's loads and stores (figures:
 * docs/perf-notes.md).  So a buffer allocated empty, which a store's first
 * value is read into, starts on a cache line.  Small ones are not worth
 * the aligned allocator's cost. */
#define S_ALIGN 64
#define S_ALIGN_MIN 1024

static char *s_buf_alloc(size_t n) {
    if (n < S_ALIGN_MIN) return malloc(n);
    void *p = NULL;
    return posix_memalign(&p, S_ALIGN, n) == 0 ? p : NULL;
}

/* r->buf resized to ncap bytes, keeping its r->len used bytes; NULL (r
 * unchanged) when out of memory.  The caller's buffer (r->ext) is left for
 * one of r's own. */
static char *s_buf_resize(pd_result *r, size_t ncap) {
    if (r->ext || (r->len == 0 && ncap >= S_ALIGN_MIN)) {
        char *nb = s_buf_alloc(ncap);
        if (!nb) return NULL;
        if (!r->ext)
            free(r->buf);
        else if (r->len)
            memcpy(nb, r->buf, r->len);
        r->ext = false;
        return nb;
    }
    return realloc(r->buf, ncap);
}

void pd__result_use(pd_result *r, void *buf, size_t cap) {
    if (!buf || cap == 0) return;
    r->buf = buf;
    r->cap = cap;
    r->ext = true;
}

int pd_result_in(const pd_result *r, const void *buf) {
    return r && buf && r->ext && r->buf == buf;
}

/* The offsets of up to PD__RESULT_INLINE values live in the result itself
 * (off0), so a get of a few keys allocates the result and its bytes only. */
pd_result *pd__result_new(size_t n, size_t bytes) {
    pd_result *r = malloc(sizeof *r);
    if (!r) return NULL;
    memset(r, 0, offsetof(pd_result, off0));
    size_t ncap = PD__RESULT_INLINE, sz;
    r->off = r->off0;
    if (n > ncap) {
        ncap = n;
        if (pd__mul_ovf(ncap + 1, sizeof *r->off, &sz) ||
            !(r->off = malloc(sz))) {
            free(r);
            return NULL;
        }
    }
    r->ncap = ncap;
    r->off[0] = 0;
    if (bytes > 0) {
        r->buf = s_buf_alloc(bytes);
        if (r->buf) r->cap = bytes;
    }
    return r;
}

char *pd__result_reserve(pd_result *r, size_t extra) {
    size_t need;
    if (pd__add_ovf(r->len, extra, &need)) return NULL;
    if (need > r->cap || !r->buf) {
        /* Exactly what is asked the first time (a store that knows its
         * sizes reserves them at once); at least double after that, so
         * values built piece by piece grow in amortised O(1). */
        size_t ncap = r->cap > SIZE_MAX / 2 ? SIZE_MAX : r->cap * 2;
        if (ncap < need) ncap = need;
        if (ncap == 0) ncap = 1;
        char *nb = s_buf_resize(r, ncap);
        if (!nb) {
            /* Retry with the exact size before giving up. */
            nb = s_buf_resize(r, need);
            if (!nb) return NULL;
            ncap = need;
        }
        r->buf = nb;
        r->cap = ncap;
    }
    return r->buf + r->len;
}

void pd__result_commit(pd_result *r, size_t n) { r->len += n; }

int pd__result_put(pd_result *r, const void *data, size_t n) {
    if (n == 0) return 0;
    char *p = pd__result_reserve(r, n);
    if (!p) return PD_ERR_NOMEM;
    memcpy(p, data, n);
    r->len += n;
    return 0;
}

int pd__result_next(pd_result *r) {
    if (r->count + 1 > r->ncap) {
        size_t ncap = r->ncap * 2, sz;
        if (pd__mul_ovf(ncap + 1, sizeof *r->off, &sz)) return PD_ERR_NOMEM;
        bool inl = r->off == r->off0;
        uint64_t *no = realloc(inl ? NULL : r->off, sz);
        if (!no) return PD_ERR_NOMEM;
        if (inl) memcpy(no, r->off0, (r->count + 1) * sizeof *no);
        r->off = no;
        r->ncap = ncap;
    }
    r->count++;
    r->off[r->count] = r->len;
    return 0;
}

void pd__result_discard_current(pd_result *r) {
    r->len = (size_t)r->off[r->count];
}

int pd__result_concat_each(pd_result *a, const pd_result *b) {
    if (a->count != b->count) return PD_ERR_MISUSE;
    if (b->len == 0) return 0;
    size_t total;
    if (pd__add_ovf(a->len, b->len, &total)) return PD_ERR_NOMEM;
    if (total > a->cap) {
        char *nb = s_buf_resize(a, total);
        if (!nb) return PD_ERR_NOMEM;
        a->buf = nb;
        a->cap = total;
    }
    /* Walk from the back so nothing is overwritten before it is moved:
     * value i of the result starts at a->off[i] + b->off[i]. */
    for (size_t i = a->count; i-- > 0;) {
        size_t alen = (size_t)(a->off[i + 1] - a->off[i]);
        size_t blen = (size_t)(b->off[i + 1] - b->off[i]);
        size_t dst = (size_t)(a->off[i] + b->off[i]);
        if (alen) memmove(a->buf + dst, a->buf + a->off[i], alen);
        if (blen) memcpy(a->buf + dst + alen, b->buf + b->off[i], blen);
    }
    for (size_t i = 0; i <= a->count; i++) a->off[i] += b->off[i];
    a->len = total;
    return 0;
}

int pd__result_move(pd_result *r, pd_result *src) {
    /* An empty r takes src's buffers, unless it fills the caller's buffer
     * (pd_get_into) and src fits there: then the values are copied in. */
    if (r->count == 0 && r->len == 0 && (!r->ext || src->len > r->cap)) {
        pd_result t = *r;
        *r = *src;
        *src = t;
        /* Inline offsets moved with the struct: point at the new copy. */
        if (r->off == src->off0) r->off = r->off0;
        if (src->off == r->off0) src->off = src->off0;
        return 0;
    }
    for (size_t i = 0; i < src->count; i++) {
        pd_bytes v = pd_result_value(src, i);
        if (pd__result_put(r, v.data, v.size) || pd__result_next(r))
            return PD_ERR_NOMEM;
    }
    return 0;
}

size_t pd_result_count(const pd_result *r) { return r ? r->count : 0; }

pd_bytes pd_result_value(const pd_result *r, size_t i) {
    if (!r || i >= r->count) return (pd_bytes){NULL, 0};
    size_t len = (size_t)(r->off[i + 1] - r->off[i]);
    static const char empty[1] = {0};
    if (len == 0) return (pd_bytes){empty, 0};
    return (pd_bytes){r->buf + r->off[i], len};
}

uint64_t pd_result_total(const pd_result *r) {
    return r ? r->off[r->count] : 0;
}

void pd_result_free(pd_result **rp) {
    if (!rp || !*rp) return;
    pd_result *r = *rp;
    if (!r->ext) free(r->buf);
    if (r->off != r->off0) free(r->off);
    free(r);
    *rp = NULL;
}

/* --------------------------------------------------------------- Keylist */

pd_keylist *pd__keylist_new(void) { return calloc(1, sizeof(pd_keylist)); }

int pd__keylist_add_packed(pd_keylist *kl, const unsigned char *pk, size_t len,
                           uint64_t size) {
    if (kl->count == kl->cap) {
        size_t ncap = kl->cap ? kl->cap * 2 : 64;
        pd__klent *ne = realloc(kl->ent, ncap * sizeof *ne);
        if (!ne) return PD_ERR_NOMEM;
        kl->ent = ne;
        kl->cap = ncap;
    }
    if (kl->blen + len > kl->bcap) {
        size_t ncap = kl->bcap ? kl->bcap : 1024;
        while (ncap < kl->blen + len) ncap *= 2;
        unsigned char *nb = realloc(kl->buf, ncap);
        if (!nb) return PD_ERR_NOMEM;
        kl->buf = nb;
        kl->bcap = ncap;
    }
    memcpy(kl->buf + kl->blen, pk, len);
    kl->ent[kl->count++] = (pd__klent){kl->blen, len, size};
    kl->blen += len;
    return 0;
}

int pd__keylist_add(pd_keylist *kl, const pd_key *key, uint64_t size) {
    pd__pkey pk;
    if (pd__pkey_set(&pk, key)) return PD_ERR_NOMEM;
    int rc = pd__keylist_add_packed(kl, pk.p, pk.len, size);
    pd__pkey_free(&pk);
    return rc;
}

int pd__keylist_finish(pd_keylist *kl) {
    size_t nparts = 0;
    for (size_t i = 0; i < kl->count; i++) {
        const unsigned char *pk = kl->buf + kl->ent[i].off;
        if (kl->ent[i].len > 0 && pk[0] == 1) {
            pd_key k;
            pd_bytes parts[PD_KEY_MAX_PARTS];
            if (pd__key_unpack(pk, kl->ent[i].len, &k, parts) == 0)
                nparts += k.nparts;
        }
    }
    kl->part0 = malloc((kl->count + 1) * sizeof *kl->part0);
    kl->parts = malloc((nparts + 1) * sizeof *kl->parts);
    if (!kl->part0 || !kl->parts) return PD_ERR_NOMEM;
    size_t at = 0;
    for (size_t i = 0; i < kl->count; i++) {
        kl->part0[i] = at;
        const unsigned char *pk = kl->buf + kl->ent[i].off;
        if (kl->ent[i].len > 0 && pk[0] == 1) {
            pd_key k;
            if (pd__key_unpack(pk, kl->ent[i].len, &k, kl->parts + at) == 0)
                at += k.nparts;
        }
    }
    kl->part0[kl->count] = at;
    kl->finished = true;
    return 0;
}

size_t pd_keylist_count(const pd_keylist *kl) { return kl ? kl->count : 0; }

int pd_keylist_key(const pd_keylist *kl, size_t i, pd_key *out) {
    if (!kl || !out || i >= kl->count || !kl->finished) return PD_ERR_MISUSE;
    const unsigned char *pk = kl->buf + kl->ent[i].off;
    size_t len = kl->ent[i].len;
    if (len == 0) return PD_ERR_MISUSE;
    if (pk[0] == 0) {
        *out = (pd_key){pk + 1, len - 1, NULL, 0};
        return 0;
    }
    size_t np = kl->part0[i + 1] - kl->part0[i];
    *out = (pd_key){NULL, 0, kl->parts + kl->part0[i], np};
    return 0;
}

uint64_t pd_keylist_size(const pd_keylist *kl, size_t i) {
    if (!kl || i >= kl->count) return 0;
    return kl->ent[i].size;
}

void pd_keylist_free(pd_keylist **klp) {
    if (!klp || !*klp) return;
    pd_keylist *kl = *klp;
    free(kl->ent);
    free(kl->buf);
    free(kl->parts);
    free(kl->part0);
    free(kl);
    *klp = NULL;
}
