/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The wire forms of the ZeroMQ protocol (see WIRE PROTOCOL in partd/zmq.h):
 * keys as Python partd's serialize_key/deserialize_key make them, final
 * replies ([ack] or [error, CODE, MESSAGE]), and little-endian sizes; then
 * the few helpers the server and the client share (a clock, an int socket
 * option).  The wire forms are pure computation over bytes: no sockets.
 */
#include "zmq/zmq_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ Keys */

/* Python's bytes.split(sep): the leftmost separator at or after `from`, or
 * n.  Looks for the rarer '|' with memchr (most keys have none), then
 * checks its neighbours. */
static size_t s_next_sep(const unsigned char *p, size_t n, size_t from) {
    size_t i = from + 1; /* where a separator's '|' can be */
    while (i + 1 < n) {
        const unsigned char *q = memchr(p + i, '|', n - 1 - i);
        if (!q) return n;
        i = (size_t)(q - p);
        if (p[i - 1] == '-' && p[i + 1] == '-') return i - 1;
        i++;
    }
    return n;
}

int pd__wire_has_sep(const void *data, size_t n) {
    return n >= PD__WIRE_SEP_LEN && s_next_sep(data, n, 0) < n;
}

int pd__wire_key_put(pd__buf *b, const pd_key *key, size_t *off, size_t *len,
                     char why[64]) {
    pd__parts pp;
    pd__key_parts(key, &pp);
    size_t total = 0;
    for (size_t i = 0; i < pp.n; i++) total += pp.p[i].size;
    total += (pp.n - 1) * PD__WIRE_SEP_LEN; /* keys are checked: no overflow */
    if (pd__buf_reserve(b, total)) {
        snprintf(why, 64, "out of memory");
        return PD_ERR_NOMEM;
    }
    size_t start = b->len;
    unsigned char *o = b->p + start;
    for (size_t i = 0; i < pp.n; i++) {
        if (i) {
            memcpy(o, PD__WIRE_SEP, PD__WIRE_SEP_LEN);
            o += PD__WIRE_SEP_LEN;
        }
        if (pp.p[i].size) memcpy(o, pp.p[i].data, pp.p[i].size);
        o += pp.p[i].size;
    }
    /* The server splits at every separator, leftmost first: the form is
     * good only if that finds exactly the separators put in, i.e. the
     * pieces are the parts. */
    const unsigned char *w = b->p + start;
    size_t at = 0;
    for (size_t i = 0; i < pp.n; i++) {
        size_t end = s_next_sep(w, total, at);
        if (end - at != pp.p[i].size || (i + 1 < pp.n) != (end < total)) {
            if (pp.n == 1)
                snprintf(why, 64, "contains \"-|-\" (the tuple separator)");
            else
                snprintf(why, 64,
                         "part %u: \"-|-\" (tuple separator) "
                         "would split it",
                         (unsigned)i);
            b->p[start] = 0; /* the buffer's NUL, where it was */
            return PD_ERR_KEY;
        }
        at = end + PD__WIRE_SEP_LEN;
    }
    b->len += total;
    b->p[b->len] = 0;
    if (off) *off = start;
    if (len) *len = total;
    return 0;
}

int pd__wire_keys_decode(pd__wkeys *w, size_t n, const pd_bytes *frames,
                         size_t stride, size_t *bad) {
    *bad = 0;
    if (pd__grow((void **)&w->keys, &w->keycap, n ? n : 1, sizeof *w->keys))
        return PD_ERR_NOMEM;
    /* First pass: count the parts of tuple keys, so the parts array is
     * sized once and the keys can point into it. */
    size_t nparts = 0;
    for (size_t i = 0; i < n; i++) {
        const pd_bytes *f = &frames[i * stride];
        const unsigned char *p = f->data;
        if (!pd__wire_has_sep(p, f->size)) continue;
        size_t cnt = 0, at = 0;
        for (;;) {
            size_t end = s_next_sep(p, f->size, at);
            cnt++;
            if (end >= f->size) break;
            at = end + PD__WIRE_SEP_LEN;
            if (cnt >= PD_KEY_MAX_PARTS) { /* one more piece follows */
                *bad = i;
                return PD_ERR_LIMIT;
            }
        }
        nparts += cnt;
    }
    if (pd__grow((void **)&w->parts, &w->partcap, nparts ? nparts : 1,
                 sizeof *w->parts))
        return PD_ERR_NOMEM;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const pd_bytes *f = &frames[i * stride];
        const unsigned char *p = f->data;
        if (!pd__wire_has_sep(p, f->size)) {
            w->keys[i] = (pd_key){f->size ? f->data : "", f->size, NULL, 0};
            continue;
        }
        pd_bytes *first = &w->parts[used];
        size_t at = 0, cnt = 0;
        for (;;) {
            size_t end = s_next_sep(p, f->size, at);
            w->parts[used++] = (pd_bytes){p + at, end - at};
            cnt++;
            if (end >= f->size) break;
            at = end + PD__WIRE_SEP_LEN;
        }
        w->keys[i] = (pd_key){NULL, 0, first, cnt};
    }
    return 0;
}

void pd__wkeys_free(pd__wkeys *w) {
    free(w->keys);
    free(w->parts);
    memset(w, 0, sizeof *w);
}

/* ------------------------------------------------------------ Replies */

int pd__wire_is(const pd_bytes *f, const char *s) {
    size_t n = strlen(s);
    return f->size == n && (n == 0 || memcmp(f->data, s, n) == 0);
}

int pd__wire_final(size_t n, const pd_bytes *frames, int *code, pd_bytes *msg) {
    if (n == 1 && pd__wire_is(&frames[0], PD__WIRE_ACK)) return 0;
    if (n != 3 || !pd__wire_is(&frames[0], PD__WIRE_ERROR)) return -1;
    const pd_bytes *c = &frames[1];
    if (c->size < 2 || c->size > 11) return -1;
    const unsigned char *p = c->data;
    if (p[0] != '-') return -1;
    long v = 0;
    for (size_t i = 1; i < c->size; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
        if (v > 1000000) return -1;
    }
    /* A code from a newer server that this library does not know: still an
     * error, reported as a protocol-level one with the server's message. */
    *code = (v >= 1 && v <= -PD_ERR_CONFLICT) ? (int)-v : PD_ERR_PROTOCOL;
    *msg = frames[2];
    return 1;
}

size_t pd__wire_code(int code, char buf[12]) {
    int w = snprintf(buf, 12, "%d", code);
    return w > 0 && w < 12 ? (size_t)w : 0;
}

const char *pd__wire_cmd_name(const pd_bytes *cmd, char buf[48]) {
    pd_key k = PD_KEY(cmd->size ? cmd->data : "", cmd->size);
    size_t n = pd_key_repr(&k, NULL, 0);
    if (n < 48) {
        pd_key_repr(&k, buf, 48);
    } else {
        pd_key_repr(&k, buf, 41);
        memcpy(buf + 40, "...", 4);
    }
    return buf;
}

/* ------------------------------------------------------------ Shared */

int64_t pd__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pd__sockopt_int(void *sock, int opt, int v) {
    return zmq_setsockopt(sock, opt, &v, sizeof v);
}

/* ------------------------------------------------------------ Stats */

#define S_F(m)                                                                 \
    { #m, offsetof(pd_server_stats, m) }
const pd__stat_field pd__stat_fields[] = {
    S_F(keys),
    S_F(bytes),
    S_F(records),
    S_F(appended_bytes),
    S_F(requests),
    S_F(failed),
    S_F(req_syn),
    S_F(req_append),
    S_F(req_get),
    S_F(req_iset),
    S_F(req_delete),
    S_F(req_drop),
    S_F(req_keys),
    S_F(req_stats),
    S_F(req_close),
    S_F(req_other),
    S_F(buffer),
    S_F(memory),
    S_F(memory_limit),
    S_F(spills),
    S_F(rss),
    S_F(clients),
    S_F(connections),
    S_F(uptime_ms),
    S_F(req_attempt),
    S_F(attempts_open),
    S_F(attempts_committed),
    S_F(attempts_aborted),
    S_F(attempts_conflicted),
    S_F(attempts_expired),
};
#undef S_F
const size_t pd__nstat_fields =
    sizeof pd__stat_fields / sizeof *pd__stat_fields;

uint64_t pd__rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, rss = 0;
    int n = fscanf(f, "%llu %llu", &size, &rss);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (n != 2 || page <= 0) return 0;
    return (uint64_t)rss * (uint64_t)page;
}
