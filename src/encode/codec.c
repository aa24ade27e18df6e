/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Codec plumbing: the sink the callbacks write to, the table of built-in
 * codecs, pd_codec_builtin and pd_codec_names.
 */
#include "encode/codec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ Sink */

void pd__sink_init(pd_sink *sink, pd_result *r, size_t limit) {
    sink->r = r;
    sink->start = r->len;
    sink->limit = limit;
    sink->reserved = 0;
    sink->fail = 0;
    sink->reason[0] = '\0';
}

void pd__sink_rollback(pd_sink *sink) {
    sink->r->len = sink->start;
    sink->reserved = 0;
}

void *pd_sink_reserve(pd_sink *sink, size_t n) {
    if (!sink) return NULL;
    size_t used = sink->r->len - sink->start;
    if (n > sink->limit - used) {
        sink->fail = PD_ERR_LIMIT;
        return NULL;
    }
    char *p = pd__result_reserve(sink->r, n);
    if (!p) {
        sink->fail = PD_ERR_NOMEM;
        return NULL;
    }
    sink->fail = 0;
    sink->reserved = n;
    return p;
}

void pd_sink_commit(pd_sink *sink, size_t n) {
    if (!sink) return;
    /* Never past what was reserved: the bytes beyond are not ours. */
    if (n > sink->reserved) n = sink->reserved;
    sink->r->len += n;
    sink->reserved -= n;
}

int pd_sink_write(pd_sink *sink, const void *data, size_t n) {
    if (!sink || (n && !data)) return PD_ERR_MISUSE;
    if (n == 0) return 0;
    void *p = pd_sink_reserve(sink, n);
    if (!p) return pd__sink_fail(sink);
    memcpy(p, data, n);
    pd_sink_commit(sink, n);
    return 0;
}

size_t pd_sink_room(const pd_sink *sink) {
    if (!sink) return 0;
    return sink->limit - (sink->r->len - sink->start);
}

size_t pd_sink_size(const pd_sink *sink) {
    return sink ? sink->r->len - sink->start : 0;
}

void pd_sink_reason(pd_sink *sink, const char *fmt, ...) {
    if (!sink || !fmt) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sink->reason, sizeof sink->reason, fmt, ap);
    va_end(ap);
}

size_t pd__ratio_cap(size_t n, size_t ratio, size_t slack) {
    size_t c;
    if (pd__mul_ovf(n, ratio, &c) || pd__add_ovf(c, slack, &c)) return SIZE_MAX;
    return c;
}

int pd__codec_new(pd_codec *out, pd_codec proto, size_t size, int level) {
    int *state = calloc(1, size);
    if (!state) return PD_ERR_NOMEM;
    *state = level;
    *out = proto;
    out->ctx = state;
    return 0;
}

int pd__sink_check_declared(pd_sink *sink, const char *what,
                            uint64_t declared) {
    size_t room = pd_sink_room(sink);
    if (declared <= room) return 0;
    pd_sink_reason(sink,
                   "%s declares %llu decoded bytes, over the limit of %zu",
                   what, (unsigned long long)declared, room);
    sink->fail = PD_ERR_LIMIT;
    return PD_ERR_LIMIT;
}

int pd__sink_check_claim(pd_sink *sink, const char *codec, const char *unit,
                         size_t n, uint64_t declared, uint64_t most) {
    if (declared > most) {
        pd_sink_reason(sink,
                       "%s: %s of %zu bytes declares %llu decoded bytes, more "
                       "than it can encode",
                       codec, unit, n, (unsigned long long)declared);
        return PD_ERR_CORRUPT;
    }
    char what[64];
    snprintf(what, sizeof what, "%s %s", codec, unit);
    return pd__sink_check_declared(sink, what, declared);
}

static int s_stream(pd_sink *sink, const void *src, size_t n, size_t first,
                    pd__step_fn step, void *st, const char *what, bool prefix) {
    const unsigned char *in = src;
    size_t at = 0, room = pd_sink_room(sink);
    if (!pd_sink_reserve(sink, first < room ? first : room))
        return pd__sink_fail(sink);
    for (;;) {
        size_t used = 0, made = 0;
        int rc = step(st, in + at, n - at, &used, pd__sink_end(sink),
                      sink->reserved, &made, sink);
        if (rc < 0) return rc;
        at += used;
        pd_sink_commit(sink, made);
        if (rc == 1) {
            if (prefix) {
                pd_sink_reason(sink, "%s ends inside a prefix", what);
                return PD_ERR_CORRUPT;
            }
            if (at == n) return 0;
            pd_sink_reason(sink, "%zu bytes after the end of the %s", n - at,
                           what);
            return PD_ERR_CORRUPT;
        }
        if (used || made || rc == 2) continue;
        /* No progress: the input ran out, or the output did. */
        if (sink->reserved > 0) {
            if (at == n && prefix) return 0;
            if (at == n)
                pd_sink_reason(sink, "%s cut short (%zu bytes)", what, n);
            else
                pd_sink_reason(sink, "%s: decoder stuck at byte %zu of %zu",
                               what, at, n);
            return PD_ERR_CORRUPT;
        }
        room = pd_sink_room(sink);
        if (room == 0) {
            pd_sink_reason(sink,
                           "%s decodes to more than the limit of %zu "
                           "bytes",
                           what, pd_sink_size(sink));
            sink->fail = PD_ERR_LIMIT;
            return PD_ERR_LIMIT;
        }
        size_t want = pd_sink_size(sink);
        if (want < ((size_t)64 << 10)) want = (size_t)64 << 10;
        if (want > room) want = room;
        if (!pd_sink_reserve(sink, want)) return pd__sink_fail(sink);
    }
}

int pd__stream_decode(pd_sink *sink, const void *src, size_t n, size_t first,
                      pd__step_fn step, void *st, const char *what) {
    return s_stream(sink, src, n, first, step, st, what, false);
}

int pd__stream_prefix(pd_sink *sink, const void *src, size_t n,
                      pd__step_fn step, void *st, const char *what) {
    return s_stream(sink, src, n, pd__ratio_cap(n, 4, 4096), step, st, what,
                    true);
}

/* --------------------------------------------------------------- Table */

static const pd__codec_ext *const s_codecs[] = {
    &pd__codec_zlib,  &pd__codec_bz2, &pd__codec_snappy,
    &pd__codec_blosc, &pd__codec_lz4, &pd__codec_zstd,
};
#define S_NCODECS (sizeof s_codecs / sizeof s_codecs[0])

static const char *const s_names[] = {"zlib", "bz2",  "snappy", "blosc",
                                      "lz4",  "zstd", NULL};

const char *const *pd_codec_names(void) { return s_names; }

const pd__codec_ext *pd__codec_ext_of(const pd_codec *codec) {
    if (!codec) return NULL;
    /* The callback identifies a built-in; a name would let a custom codec
     * called "zlib" borrow zlib's header checks. */
    for (size_t i = 0; i < S_NCODECS; i++)
        if (codec->encode == s_codecs[i]->encode) return s_codecs[i];
    return NULL;
}

int pd_codec_builtin(pd_codec *out, const char *name, int level) {
    if (!out) return pd__err(NULL, PD_ERR_MISUSE, 0, "codec: NULL output");
    memset(out, 0, sizeof *out);
    if (!name) return pd__err(NULL, PD_ERR_MISUSE, 0, "codec: NULL name");
    const pd__codec_ext *ext = NULL;
    for (size_t i = 0; i < S_NCODECS; i++)
        if (strcmp(name, s_codecs[i]->name) == 0) ext = s_codecs[i];
    if (!ext) {
        char known[128];
        size_t at = 0;
        known[0] = '\0';
        for (size_t i = 0; i < S_NCODECS; i++) {
            int w = snprintf(known + at, sizeof known - at, "%s%s",
                             i ? ", " : "", s_codecs[i]->name);
            if (w > 0 && (size_t)w < sizeof known - at) at += (size_t)w;
        }
        return pd__err(NULL, PD_ERR_UNSUPPORTED, 0,
                       "codec: unknown codec '%.64s' (known: %s)", name, known);
    }
    if (level == PD_LEVEL_DEFAULT) {
        level = ext->level_default;
    } else if (ext->level_min > ext->level_max) {
        return pd__err(NULL, PD_ERR_LIMIT, 0,
                       "codec: %s takes no level (got %d; pass "
                       "PD_LEVEL_DEFAULT)",
                       ext->name, level);
    } else if (level < ext->level_min || level > ext->level_max) {
        return pd__err(NULL, PD_ERR_LIMIT, 0,
                       "codec: %s level %d out of range %d..%d", ext->name,
                       level, ext->level_min, ext->level_max);
    }
    int rc = ext->make(out, level);
    if (rc) {
        memset(out, 0, sizeof *out);
        return pd__err(NULL, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                       "codec: %s: cannot create its context", ext->name);
    }
    pd__err_clear(NULL);
    return 0;
}
