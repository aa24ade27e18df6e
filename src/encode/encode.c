/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Encode: a wrapper store that writes each value as one frame (8-byte
 * little-endian length + the codec's payload) to its inner store, and
 * decodes a key's frames on get.  See partd/encode.h.
 *
 * append/iset encode the whole batch into one contiguous buffer (each
 * frame's header reserved, the codec writing its payload straight after it
 * through a sink, the length patched in after), then make one batch call on
 * the inner store: a failed encode appends nothing, and the inner store's
 * atomicity covers the batch.  The buffer is kept for the next batch unless
 * it grew large.
 *
 * get makes one inner get, then decodes every frame straight into the
 * caller's pd_result through a sink; when every frame's header states its
 * decoded size (snappy, blosc, lz4, zstd), the result is sized once up
 * front.  The frame scanner (frame.c) leaves out torn regions.
 *
 * Locking is every layer's: the lock hook locks the inner store and every
 * op calls it with PD_NOLOCK (core/internal.h, "Layers").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "encode/codec.h"
#include "encode/frame.h"

/* A batch buffer past this size is freed after the call, not kept. */
#define S_KEEP_MAX ((size_t)8 << 20)

typedef struct s_enc {
    pd_store base;
    pd_store_ops ops; /* s_ops with kind = the codec's name */
    pd_store *inner;
    bool owned;
    pd_codec codec;
    const pd__codec_ext *ext; /* NULL for a custom codec */
    uint64_t limit;
    uint64_t torn;
    char notice[PD__MSG_MAX];
    /* batch scratch: frames buffer, frame offsets, values */
    pd_result *buf;
    size_t *offs;
    pd_bytes *vals;
    size_t vcap;
    /* repair scratch: decoded bytes (thrown away), kept frame ranges */
    pd_result *junk;
    char reason[PD__REASON_MAX];  /* why the last kept frame failed */
    char creason[PD__REASON_MAX]; /* why the last checked frame failed */
} s_enc;

static const pd_store_ops s_ops;

static s_enc *s_enc_of(const pd_store *s) { return pd__store_as(s, &s_ops); }

/* Codes a callback may return; anything else is the callback's bug. */
static int s_norm(int rc, int dflt) {
    return rc == PD_ERR_NOMEM || rc == PD_ERR_LIMIT || rc == PD_ERR_CORRUPT ||
                   rc == PD_ERR_MISUSE || rc == PD_ERR_UNSUPPORTED ||
                   rc == PD_ERR_IO
               ? rc
               : dflt;
}

static size_t s_limit(const s_enc *e) {
    return e->limit > SIZE_MAX ? SIZE_MAX : (size_t)e->limit;
}

/* ------------------------------------------------------------ Encoding */

static int s_scratch(s_enc *e, size_t n) {
    if (!e->buf && !(e->buf = pd__result_new(0, 0))) return PD_ERR_NOMEM;
    if (n <= e->vcap) return 0;
    size_t sz;
    if (pd__mul_ovf(n + 1, sizeof *e->offs, &sz)) return PD_ERR_NOMEM;
    size_t *no = realloc(e->offs, sz);
    if (!no) return PD_ERR_NOMEM;
    e->offs = no;
    pd_bytes *nv = realloc(e->vals, n * sizeof *nv);
    if (!nv) return PD_ERR_NOMEM;
    e->vals = nv;
    e->vcap = n;
    return 0;
}

static void s_trim(s_enc *e) {
    if (e->buf && e->buf->cap > S_KEEP_MAX) pd_result_free(&e->buf);
    if (e->junk && e->junk->cap > S_KEEP_MAX) pd_result_free(&e->junk);
}

/* Encodes vals[0..n) into e->vals (frames in e->buf). */
static int s_encode_batch(s_enc *e, size_t n, const pd_key *keys,
                          const pd_bytes *vals, const char *op) {
    pd_store *s = &e->base;
    char ks[PD__KEYSHORT_MAX];
    if (s_scratch(e, n))
        return pd__err(s, PD_ERR_NOMEM, ENOMEM,
                       "%s: frame table for %zu "
                       "values",
                       op, n);
    pd_result *b = e->buf;
    b->len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t hdr = b->len;
        if (!pd__result_reserve(b, PD_FRAME_HEADER))
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "%s %s: frame buffer", op,
                           pd__key_short(&keys[i], ks));
        b->len += PD_FRAME_HEADER;
        pd_sink sk;
        pd__sink_init(&sk, b, SIZE_MAX - b->len);
        int rc = e->codec.encode(e->codec.ctx, vals[i].data, vals[i].size, &sk);
        if (rc) {
            rc = s_norm(rc, PD_ERR_MISUSE);
            return pd__err(s, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                           "%s %s: encoding value %zu (%zu bytes): %s", op,
                           pd__key_short(&keys[i], ks), i, vals[i].size,
                           sk.reason[0] ? sk.reason : pd_strerror(rc));
        }
        pd__put_le64((unsigned char *)b->buf + hdr,
                     (uint64_t)(b->len - hdr - PD_FRAME_HEADER));
        e->offs[i] = hdr;
    }
    e->offs[n] = b->len;
    for (size_t i = 0; i < n; i++)
        e->vals[i] =
            (pd_bytes){b->buf + e->offs[i], e->offs[i + 1] - e->offs[i]};
    return 0;
}

/* ------------------------------------------------------------ Decoding */

typedef struct s_dctx {
    s_enc *e;
    pd_result *r; /* where kept frames go */
    const pd_key *key;
    size_t size; /* bytes of the key */
    const char *op;
    bool count; /* count torn regions (get), or not (repair) */
    bool torn;  /* a region was left out */
    /* repair: kept frames [off, off + 8 + len) */
    uint64_t *keep;
    size_t nkeep, capkeep;
    size_t last_len;   /* r->len before the last frame kept */
    uint64_t fail_off; /* the frame an emit failed on */
    size_t fail_index;
} s_dctx;

static int s_decode_into(s_enc *e, pd_result *r, const unsigned char *p,
                         size_t n, char *reason) {
    pd_sink sk;
    pd__sink_init(&sk, r, s_limit(e));
    int rc = e->codec.decode(e->codec.ctx, p, n, &sk);
    if (rc) {
        rc = s_norm(rc, PD_ERR_CORRUPT);
        if (rc != PD_ERR_NOMEM && rc != PD_ERR_LIMIT) rc = PD_ERR_CORRUPT;
        memcpy(reason, sk.reason, sizeof sk.reason);
        if (!reason[0]) snprintf(reason, PD__REASON_MAX, "%s", pd_strerror(rc));
        pd__sink_rollback(&sk);
    }
    return rc;
}

static int s_emit(void *arg, const unsigned char *p, size_t n, uint64_t off,
                  size_t index) {
    s_dctx *c = arg;
    c->fail_off = off;
    c->fail_index = index;
    size_t mark = c->r->len;
    int rc = s_decode_into(c->e, c->r, p, n, c->e->reason);
    /* Only a kept frame moves the mark s_unemit goes back to: a frame that
     * fails after it must not make its bytes stay. */
    if (rc == 0) c->last_len = mark;
    if (rc == 0 && c->keep) {
        c->r->len = mark; /* repair keeps frames, not their bytes */
        if (c->nkeep == c->capkeep) {
            size_t ncap = c->capkeep ? c->capkeep * 2 : 16;
            uint64_t *nk = realloc(c->keep, 2 * ncap * sizeof *nk);
            if (!nk) return PD_ERR_NOMEM;
            c->keep = nk;
            c->capkeep = ncap;
        }
        c->keep[2 * c->nkeep] = off;
        c->keep[2 * c->nkeep + 1] = PD_FRAME_HEADER + (uint64_t)n;
        c->nkeep++;
    }
    return rc;
}

static int s_check(void *arg, const unsigned char *p, size_t n) {
    s_dctx *c = arg;
    size_t mark = c->r->len;
    int rc = s_decode_into(c->e, c->r, p, n, c->e->creason);
    c->r->len = mark;
    return rc;
}

static int s_probe(void *arg, const unsigned char *p, size_t n) {
    s_dctx *c = arg;
    uint64_t declared;
    if (c->e->ext->probe(p, n, &declared)) return PD_ERR_CORRUPT;
    return 0;
}

static int s_prefix(void *arg, const unsigned char *p, size_t n,
                    uint64_t claimed) {
    s_dctx *c = arg;
    pd_sink sk;
    pd__sink_init(&sk, c->r, s_limit(c->e));
    int rc = c->e->ext->prefix(c->e->codec.ctx, p, n, claimed, &sk);
    pd__sink_rollback(&sk);
    return rc;
}

static void s_unemit(void *arg) {
    s_dctx *c = arg;
    c->r->len = c->last_len;
    if (c->keep && c->nkeep) c->nkeep--;
}

static int s_skip(void *arg, uint64_t off, uint64_t len, pd__skip_kind kind) {
    s_dctx *c = arg;
    c->torn = true;
    if (!c->count) return 0;
    s_enc *e = c->e;
    char ks[PD__KEYSHORT_MAX];
    const char *what = kind == PD__SKIP_TORN   ? "a torn frame"
                       : kind == PD__SKIP_TAIL ? "a torn tail"
                                               : "a zero-filled tail";
    e->torn++;
    snprintf(e->notice, sizeof e->notice,
             "%s: %s %s: left out %s of %llu bytes at offset %llu of %zu",
             e->ops.kind, c->op, pd__key_short(c->key, ks), what,
             (unsigned long long)len, (unsigned long long)off, c->size);
    return 0;
}

/* The longest payload a frame decoding within the limit can have: what
 * incompressible data grows to under any built-in codec is far less than
 * this. */
static uint64_t s_max_payload(const s_enc *e) {
    uint64_t l = e->limit, m = l + l / 8;
    if (m < l || m > UINT64_MAX - ((uint64_t)1 << 20)) return 0;
    return m + ((uint64_t)1 << 20);
}

/* Decodes one key's bytes (its frames) into c->r's current value. */
static int s_decode_key(s_dctx *c, const unsigned char *data, size_t n) {
    s_enc *e = c->e;
    pd_store *s = &e->base;
    char ks[PD__KEYSHORT_MAX];
    pd__scan_ops ops = {
        .arg = c,
        .emit = s_emit,
        .check = s_check,
        .probe = e->ext ? s_probe : NULL,
        .skip = s_skip,
        .prefix = e->ext && e->ext->prefix ? s_prefix : NULL,
        .max_payload = s_max_payload(e),
        .unemit = s_unemit,
        .backtrack = !(e->ext && e->ext->checksummed),
    };
    pd__scan_fail fail = {0, 0, false, false};
    c->size = n;
    e->reason[0] = '\0';
    int rc = pd__frame_scan(data, n, &ops, &fail);
    if (rc == 0) return 0;
    const char *ksh = pd__key_short(c->key, ks);
    if (rc == PD_ERR_CORRUPT && fail.bad_len)
        return pd__err(s, rc, 0,
                       "%s %s: frame %zu at offset %llu of %zu: its length "
                       "field (%llu) is corrupt: a complete frame ends "
                       "before it",
                       c->op, ksh, fail.index, (unsigned long long)fail.off, n,
                       (unsigned long long)pd__le64(data + fail.off));
    if (rc == PD_ERR_CORRUPT && fail.past_end)
        return pd__err(s, rc, 0,
                       "%s %s: frame %zu at offset %llu of %zu claims %llu "
                       "bytes, past the end of the key, and is no torn frame "
                       "(its length or its start is not one this layer "
                       "writes)",
                       c->op, ksh, fail.index, (unsigned long long)fail.off, n,
                       n - fail.off >= PD_FRAME_HEADER
                           ? (unsigned long long)pd__le64(data + fail.off)
                           : 0ULL);
    if (rc == PD_ERR_CORRUPT)
        return pd__err(s, rc, 0,
                       "%s %s: frame %zu at offset %llu of %zu does not "
                       "decode: %s",
                       c->op, ksh, fail.index, (unsigned long long)fail.off, n,
                       e->reason);
    if (rc == PD_ERR_LIMIT || (rc == PD_ERR_NOMEM && e->reason[0]))
        return pd__err(s, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                       "%s %s: frame %zu at offset %llu of %zu: %s", c->op, ksh,
                       c->fail_index, (unsigned long long)c->fail_off, n,
                       e->reason);
    return pd__err(s, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                   "%s %s: reading %zu bytes of frames", c->op, ksh, n);
}

/* When every frame of every value states its decoded size, the total;
 * else 0.  Only a hint for one reservation, and lies are bounded: each
 * size by the limit and by what its frame can encode (the codec's probe),
 * the total by PD__SOFT_RATIO times the bytes read. */
static size_t s_presize(const s_enc *e, const pd_result *raw) {
    if (!e->ext || raw->len == 0) return 0;
    uint64_t total = 0;
    for (size_t i = 0; i < raw->count; i++) {
        pd_bytes v = pd_result_value(raw, i);
        const unsigned char *d = v.data;
        size_t n = v.size, pos = 0;
        while (pos < n) {
            uint64_t len = n - pos >= PD_FRAME_HEADER ? pd__le64(d + pos) : 0;
            uint64_t declared;
            if (n - pos < PD_FRAME_HEADER || len > n - pos - PD_FRAME_HEADER ||
                e->ext->probe(d + pos + PD_FRAME_HEADER, (size_t)len,
                              &declared) ||
                declared > e->limit || declared > UINT64_MAX - total)
                return 0;
            total += declared;
            pos += PD_FRAME_HEADER + (size_t)len;
        }
    }
    if (total > pd__ratio_cap(raw->len, PD__SOFT_RATIO, PD__SOFT_SLACK))
        return 0;
    return (size_t)total;
}

/* ------------------------------------------------------------------ Ops */

/* An append or iset (`put`, on the inner store) of the batch encoded;
 * `what` names the op in errors. */
static int s_put(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags, const char *what,
                 int (*put)(pd_store *inner, size_t n, const pd_key *keys,
                            const pd_bytes *vals, unsigned flags)) {
    s_enc *e = (s_enc *)s;
    int rc = s_encode_batch(e, n, keys, vals, what);
    if (rc == 0) {
        rc = put(e->inner, n, keys, e->vals, PD_NOLOCK | (flags & PD_FSYNC));
        if (rc) rc = pd__err_inner(s, e->inner, rc);
    }
    s_trim(e);
    return rc;
}

static int s_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    return s_put(s, n, keys, vals, flags, "append", pd__append_inner);
}

/* Attempts: begun on the inner store; appends encoded as s_append's. */
static int s_att_begin(pd_store *s, const pd_key *writer, uint64_t attempt,
                       void **impl, unsigned flags) {
    s_enc *e = (s_enc *)s;
    pd_attempt *ia = NULL;
    int rc = pd_attempt_begin(e->inner, writer, attempt, &ia,
                              PD_NOLOCK | (flags & ~PD_NOLOCK));
    if (rc) return pd__err_inner(s, e->inner, rc);
    *impl = ia;
    return 0;
}

static int s_att_append(pd_store *s, void *impl, size_t n, const pd_key *keys,
                        const pd_bytes *vals, unsigned flags) {
    s_enc *e = (s_enc *)s;
    int rc = s_encode_batch(e, n, keys, vals, "attempt append");
    if (rc == 0) {
        rc = pd__attempt_append_inner(impl, n, keys, e->vals,
                                      PD_NOLOCK | (flags & PD_FSYNC));
        if (rc) rc = pd__err_inner(s, e->inner, rc);
    }
    s_trim(e);
    return rc;
}

static int s_att_commit(pd_store *s, void *impl, unsigned flags) {
    s_enc *e = (s_enc *)s;
    pd_attempt *ia = impl;
    int rc = pd_attempt_commit(&ia, PD_NOLOCK | (flags & PD_FSYNC));
    return rc ? pd__err_inner(s, e->inner, rc) : 0;
}

static int s_att_abort(pd_store *s, void *impl) {
    s_enc *e = (s_enc *)s;
    pd_attempt *ia = impl;
    int rc = pd_attempt_abort(&ia);
    return rc ? pd__err_inner(s, e->inner, rc) : 0;
}

static int s_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    return s_put(s, n, keys, vals, flags, "iset", pd__set_inner);
}

static int s_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    (void)flags;
    s_enc *e = (s_enc *)s;
    pd_result *raw = NULL;
    int rc = pd__get_inner(e->inner, n, keys, &raw, PD_NOLOCK);
    if (rc) return pd__err_inner(s, e->inner, rc);
    size_t total = s_presize(e, raw);
    if (total && !pd__result_reserve(r, total)) {
        char ks[PD__KEYSHORT_MAX];
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get %s: %zu decoded bytes",
                     pd__key_short(&keys[0], ks), total);
    }
    s_dctx c;
    memset(&c, 0, sizeof c);
    c.e = e;
    c.r = r;
    c.op = "get";
    c.count = true;
    for (size_t i = 0; i < n && rc == 0; i++) {
        pd_bytes v = pd_result_value(raw, i);
        c.key = &keys[i];
        if (v.size) rc = s_decode_key(&c, v.data, v.size);
        if (rc == 0 && pd__result_next(r))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: result table");
    }
    pd_result_free(&raw);
    return rc;
}

static int s_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    (void)flags;
    s_enc *e = (s_enc *)s;
    int rc = pd_delete(e->inner, n, keys, PD_NOLOCK);
    return rc ? pd__err_inner(s, e->inner, rc) : 0;
}

static int s_drop(pd_store *s, unsigned flags) {
    (void)flags;
    s_enc *e = (s_enc *)s;
    int rc = pd_drop(e->inner, PD_NOLOCK);
    return rc ? pd__err_inner(s, e->inner, rc) : 0;
}

static int s_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    s_enc *e = (s_enc *)s;
    pd_keylist *ik = NULL;
    int rc = pd_keys(e->inner, &ik, PD_NOLOCK);
    if (rc) return pd__err_inner(s, e->inner, rc);
    for (size_t i = 0; i < ik->count && rc == 0; i++)
        if (pd__keylist_add_packed(kl, ik->buf + ik->ent[i].off, ik->ent[i].len,
                                   ik->ent[i].size))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: %zu keys", ik->count);
    pd_keylist_free(&ik);
    return rc;
}

static int s_lock_hook(pd_store *s) {
    return pd__lock_inner(s, ((s_enc *)s)->inner);
}

static int s_unlock_hook(pd_store *s) {
    return pd__unlock_inner(s, ((s_enc *)s)->inner);
}

/* pd_close runs this with the lock held, so the inner store is locked. */
static int s_flush_hook(pd_store *s) {
    s_enc *e = (s_enc *)s;
    if (!e->inner->ops->flush) return 0;
    int rc = e->inner->ops->flush(e->inner);
    return rc ? pd__err_inner(s, e->inner, rc) : 0;
}

static int s_destroy(pd_store *s) {
    s_enc *e = (s_enc *)s;
    int rc = 0;
    pd_result_free(&e->buf);
    pd_result_free(&e->junk);
    free(e->offs);
    free(e->vals);
    e->offs = NULL;
    e->vals = NULL;
    if (e->codec.destroy) e->codec.destroy(e->codec.ctx);
    e->codec.destroy = NULL;
    e->codec.ctx = NULL;
    if (e->owned) {
        int crc = pd_close(&e->inner);
        if (crc) {
            char m[PD__MSG_MAX];
            int sys = pd_errno(NULL);
            snprintf(m, sizeof m, "%s", pd_errmsg(NULL));
            rc = pd__err(s, crc, 0, "close inner store: %s", m);
            pd__err_set_sys(s, sys);
        }
    }
    e->inner = NULL;
    return rc;
}

static const pd_store_ops s_ops = {
    PD__STORE_OPS("encode"), .lock = s_lock_hook,     .unlock = s_unlock_hook,
    .flush = s_flush_hook,   PD__ATTEMPT_OPS(s_att_),
};

/* --------------------------------------------------------------- Public */

int pd_encode_open(pd_store **out, pd_store **inner, const pd_codec *codec,
                   unsigned flags) {
    const char *why = NULL;
    if (!out)
        why = "NULL out";
    else if (!inner || !*inner)
        why = "NULL inner store";
    else if (!codec)
        why = "NULL codec";
    else if (codec->struct_version > PD_CODEC_VERSION)
        why = "pd_codec.struct_version newer than this library's";
    else if (!codec->name || !*codec->name)
        why = "codec without a name";
    else if (!codec->encode || !codec->decode)
        why = "codec without encode or decode";
    else if (flags & ~PD_BORROW)
        why = "unknown flags";
    if (out) *out = NULL;
    if (why) {
        if (codec && codec->destroy) codec->destroy(codec->ctx);
        return pd__err(NULL, PD_ERR_MISUSE, 0, "%s: open: %s",
                       codec && codec->name ? codec->name : "encode", why);
    }
    s_enc *e = calloc(1, sizeof *e);
    if (!e) {
        if (codec->destroy) codec->destroy(codec->ctx);
        return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "%s: open", codec->name);
    }
    e->ops = s_ops;
    e->ops.kind = codec->name;
    e->ops.base = &s_ops;
    int rc = pd__store_init(&e->base, &e->ops);
    if (rc) {
        free(e);
        if (codec->destroy) codec->destroy(codec->ctx);
        return rc;
    }
    e->codec = *codec;
    e->ext = pd__codec_ext_of(codec);
    e->inner = *inner;
    e->owned = !(flags & PD_BORROW);
    e->limit = PD_ENCODE_LIMIT_DEFAULT;
    if (e->owned) *inner = NULL;
    *out = &e->base;
    pd__err_clear(NULL);
    return 0;
}

int pd_compress_open(pd_store **out, pd_store **inner, const char *name,
                     int level, unsigned flags) {
    if (out) *out = NULL;
    pd_codec c;
    int rc = pd_codec_builtin(&c, name, level);
    if (rc) return rc;
    return pd_encode_open(out, inner, &c, flags);
}

pd_store *pd_encode_inner(const pd_store *store) {
    s_enc *e = s_enc_of(store);
    return e ? e->inner : NULL;
}

int pd_encode_set_limit(pd_store *store, uint64_t max_frame) {
    s_enc *e = s_enc_of(store);
    if (!store) return pd__err(NULL, PD_ERR_MISUSE, 0, "set_limit: NULL store");
    pd__err_clear(store);
    if (!e)
        return pd__err(store, PD_ERR_MISUSE, 0,
                       "set_limit: not an encode store");
    if (max_frame == 0)
        return pd__err(store, PD_ERR_MISUSE, 0, "set_limit: limit 0");
    pthread_mutex_lock(&store->mu);
    e->limit = max_frame;
    pthread_mutex_unlock(&store->mu);
    return 0;
}

uint64_t pd_encode_torn(const pd_store *store) {
    s_enc *e = s_enc_of(store);
    return e ? pd__store_read(&e->base, &e->torn) : 0;
}

const char *pd_encode_notice(const pd_store *store) {
    static _Thread_local char copy[PD__MSG_MAX];
    s_enc *e = s_enc_of(store);
    if (!e) return "";
    pthread_mutex_lock(&e->base.mu);
    memcpy(copy, e->notice, sizeof copy);
    pthread_mutex_unlock(&e->base.mu);
    return copy;
}

/* Rewrites one key without its torn regions.  *corrupt is set (and the
 * error recorded) when the key is corrupt rather than torn. */
static int s_repair_key(s_enc *e, const pd_key *key, uint64_t *removed,
                        unsigned fsync, bool *corrupt) {
    pd_store *s = &e->base;
    pd_result *raw = NULL;
    *corrupt = false;
    int rc = pd__get_inner(e->inner, 1, key, &raw, PD_NOLOCK);
    if (rc) return pd__err_inner(s, e->inner, rc);
    pd_bytes v = pd_result_value(raw, 0);
    if (!e->junk && !(e->junk = pd__result_new(0, 0))) {
        pd_result_free(&raw);
        return pd__err(s, PD_ERR_NOMEM, ENOMEM, "repair: scratch");
    }
    s_dctx c;
    memset(&c, 0, sizeof c);
    c.e = e;
    c.r = e->junk;
    c.key = key;
    c.op = "repair";
    c.keep = malloc(2 * 16 * sizeof *c.keep);
    c.capkeep = c.keep ? 16 : 0;
    if (!c.keep) {
        pd_result_free(&raw);
        return pd__err(s, PD_ERR_NOMEM, ENOMEM, "repair: frame table");
    }
    e->junk->len = 0;
    rc = v.size ? s_decode_key(&c, v.data, v.size) : 0;
    e->junk->len = 0;
    if (rc == PD_ERR_CORRUPT) *corrupt = true;
    if (rc == 0 && c.torn) {
        /* Keep the complete frames as they are, in one new value. */
        const unsigned char *d = v.data;
        size_t at = 0;
        for (size_t i = 0; i < c.nkeep; i++) {
            size_t off = (size_t)c.keep[2 * i], len = (size_t)c.keep[2 * i + 1];
            if (off != at) memmove((unsigned char *)d + at, d + off, len);
            at += len;
        }
        pd_bytes nv = {d, at};
        rc = pd__set_inner(e->inner, 1, key, &nv, PD_NOLOCK | fsync);
        if (rc)
            rc = pd__err_inner(s, e->inner, rc);
        else
            *removed += v.size - at;
    }
    free(c.keep);
    pd_result_free(&raw);
    return rc;
}

typedef struct s_repair_args {
    size_t n;
    const pd_key *keys;
    uint64_t removed;
} s_repair_args;

/* Repairs every key; a corrupt key is left as it is and the first one is
 * reported once the others are done. */
static int s_repair_call(pd_store *s, void *arg, unsigned flags) {
    s_enc *e = (s_enc *)s;
    s_repair_args *ra = arg;
    bool have_corrupt = false;
    pd__errsave corrupt;
    int rc = 0;
    for (size_t i = 0; i < ra->n && rc == 0; i++) {
        bool is_corrupt;
        int krc = s_repair_key(e, &ra->keys[i], &ra->removed, flags & PD_FSYNC,
                               &is_corrupt);
        if (krc && is_corrupt) {
            if (!have_corrupt) pd__err_save(s, &corrupt);
            have_corrupt = true;
            continue;
        }
        rc = krc;
    }
    s_trim(e);
    if (rc == 0 && have_corrupt) rc = pd__err_restore(s, &corrupt);
    return rc;
}

int pd_encode_repair(pd_store *store, size_t n, const pd_key *keys,
                     uint64_t *removed, unsigned flags) {
    if (removed) *removed = 0;
    if (!store) return pd__err(NULL, PD_ERR_MISUSE, 0, "repair: NULL store");
    pd__err_clear(store);
    if (!s_enc_of(store))
        return pd__err(store, PD_ERR_MISUSE, 0, "repair: not an encode store");
    if (n && !keys)
        return pd__err(store, PD_ERR_MISUSE, 0, "repair: NULL keys array");
    for (size_t i = 0; i < n; i++) {
        char why[64];
        int rc = pd__key_check(&keys[i], why);
        if (rc) return pd__err(store, rc, 0, "repair: key %zu: %s", i, why);
    }
    s_repair_args ra = {n, keys, 0};
    int rc = pd__call(store, "repair", flags, PD__ALL_CALL_FLAGS, s_repair_call,
                      &ra);
    if (removed) *removed = ra.removed;
    return rc;
}
