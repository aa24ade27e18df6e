/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * fuzz_server: the server's request handling (pd__handle, src/zmq/handler.c)
 * over a Dict, fed any frames a peer could send.
 *
 * Input: a sequence of requests.  Each is a frame-count byte (n % 12
 * frames), then per frame a length byte L (255: a 16-bit little-endian
 * length follows, capped at 20000) and L bytes.  A first frame whose first
 * byte is below 0x11 and of length 1 is replaced by a real command
 * (append, get, iset, delete, drop, syn, keys, close, keys, get, stats,
 * attempt_begin, attempt_append, attempt_commit, attempt_abort,
 * append_packed, get_packed), so the
 * fuzzer reaches the commands' payload handling quickly (a Dict has no
 * attempts: the attempt requests exercise their parsing and refusals).
 *
 * Properties: no crash, leak or sanitizer report; every request gets
 * exactly one final reply, last: [ack] or [error, CODE, MESSAGE] with a
 * known negative CODE and a non-empty MESSAGE; a failed request sets the
 * handler's message; a get of n >= 1 keys sends one results message of n
 * frames first (on success and on failure), a successful get_packed one
 * results message of a lengths frame (a count and 8 bytes per key) and at
 * least one data frame holding exactly the lengths' sum (a failed one only
 * its error), a keys request a results
 * message of 1 + 2 * count frames, a stats request a results message of a
 * name and a value per figure, its request count that of every request so
 * far; a successful append is read back whole by a get of the same keys
 * when its keys are distinct.
 */
#include "fuzz_util.h"
#include "zmq/zmq_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_MAX_FRAMES 12
#define S_MAX_MSGS 4

typedef struct s_cap {
    size_t nmsg;
    size_t nframes[S_MAX_MSGS];
    int final; /* pd__wire_final of the last message */
    int code;
    size_t total; /* bytes in the first message */
    /* First message: its first frame (copied), the bytes of the rest. */
    unsigned char head[4 + 8 * 5000]; /* 20000-byte index: <= 5000 keys */
    size_t head_size, rest;
} s_cap;

static int s_emit(void *arg, size_t n, const pd_bytes *f) {
    s_cap *c = arg;
    FZ_CHECK(n >= 1, "a reply message of 0 frames");
    for (size_t i = 0; i < n; i++)
        FZ_CHECK(f[i].data || f[i].size == 0, "frame %zu: NULL data", i);
    if (c->nmsg < S_MAX_MSGS) c->nframes[c->nmsg] = n;
    if (c->nmsg == 0) {
        for (size_t i = 0; i < n; i++) c->total += f[i].size;
        c->head_size = f[0].size;
        memcpy(c->head, f[0].data,
               f[0].size < sizeof c->head ? f[0].size : sizeof c->head);
        c->rest = c->total - f[0].size;
    }
    pd_bytes msg;
    c->code = 0;
    c->final = pd__wire_final(n, f, &c->code, &msg);
    if (c->final == 1)
        FZ_CHECK(msg.size > 0, "an error reply without a message");
    c->nmsg++;
    return 0;
}

/* A get_packed's results: [LENGTHS, DATA...], LENGTHS a u32 count and a
 * u64 per key (an index frame of at most 20000 bytes holds at most 5000
 * keys of 4 bytes each, so a valid lengths frame fits in head). */
static void s_check_lengths(const s_cap *c) {
    FZ_CHECK(c->nframes[0] >= 2, "get_packed: %zu result frames",
             c->nframes[0]);
    FZ_CHECK(c->head_size >= 4 && c->head_size <= sizeof c->head,
             "get_packed: a lengths frame of %zu bytes", c->head_size);
    uint32_t count = (uint32_t)c->head[0] | (uint32_t)c->head[1] << 8 |
                     (uint32_t)c->head[2] << 16 | (uint32_t)c->head[3] << 24;
    FZ_CHECK(c->head_size == 4 + 8 * (size_t)count,
             "get_packed: %u lengths in %zu bytes", count, c->head_size);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < count; i++)
        for (int b = 0; b < 8; b++)
            sum += (uint64_t)c->head[4 + 8 * i + b] << (8 * b);
    FZ_CHECK(sum == c->rest, "get_packed: lengths add up to %llu, data %zu",
             (unsigned long long)sum, c->rest);
}

static const char *const s_cmds[] = {"append",         "get",
                                     "iset",           "delete",
                                     "drop",           "syn",
                                     "keys",           "close",
                                     "keys",           "get",
                                     "stats",          "attempt_begin",
                                     "attempt_append", "attempt_commit",
                                     "attempt_abort",  "append_packed",
                                     "get_packed"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_reader r = {data, size};
    pd_store *d = NULL;
    if (pd_dict_open(&d) || pd_lock(d)) fz_fail("dict: %s", pd_errmsg(NULL));
    s_cap cap;
    pd__handler h = {0};
    h.store = d;
    h.emit = s_emit;
    h.emit_arg = &cap;
    uint64_t handled = 0;
    for (int req = 0; req < 64 && r.n > 0; req++) {
        pd_bytes fr[S_MAX_FRAMES];
        size_t n = fz_byte(&r) % S_MAX_FRAMES;
        for (size_t i = 0; i < n; i++) {
            size_t len = fz_byte(&r);
            if (len == 255) {
                len = fz_byte(&r);
                len |= (size_t)fz_byte(&r) << 8;
                if (len > 20000) len = 20000;
            }
            const uint8_t *p;
            len = fz_take(&r, len, &p);
            fr[i] = (pd_bytes){len ? (const void *)p : "", len};
        }
        if (n > 0 && fr[0].size == 1 &&
            *(const uint8_t *)fr[0].data < sizeof s_cmds / sizeof *s_cmds) {
            const char *c = s_cmds[*(const uint8_t *)fr[0].data];
            fr[0] = (pd_bytes){c, strlen(c)};
        }
        h.flags = (req & 1) ? PD_SERVER_NO_CLOSE : 0;
        memset(&cap, 0, sizeof cap);
        int rc = pd__handle(&h, n, fr);
        handled++;

        FZ_CHECK(cap.nmsg >= 1 && cap.nmsg <= 2, "%zu reply messages",
                 cap.nmsg);
        FZ_CHECK(cap.final >= 0, "the last reply is neither ack nor error");
        FZ_CHECK((cap.final == 0) == (rc >= 0),
                 "handler returned %d with a final reply of kind %d", rc,
                 cap.final);
        if (rc < 0) {
            FZ_CHECK(h.msg[0] != '\0', "failure %d without a message", rc);
            FZ_CHECK(cap.code == rc || cap.code == PD_ERR_PROTOCOL,
                     "reply code %d, handler %d", cap.code, rc);
            FZ_CHECK(rc >= PD_ERR_CONFLICT, "unknown code %d", rc);
        }
        bool is_get =
            n >= 1 && fr[0].size == 3 && !memcmp(fr[0].data, "get", 3);
        bool is_keys =
            n >= 1 && fr[0].size == 4 && !memcmp(fr[0].data, "keys", 4);
        bool is_stats =
            n >= 1 && fr[0].size == 5 && !memcmp(fr[0].data, "stats", 5);
        bool is_pget =
            n >= 1 && fr[0].size == 10 && !memcmp(fr[0].data, "get_packed", 10);
        if (is_pget) {
            FZ_CHECK(cap.nmsg == (rc == 0 ? 2u : 1u),
                     "get_packed (rc %d): %zu messages", rc, cap.nmsg);
            if (rc == 0) s_check_lengths(&cap);
        } else if (is_get && n >= 2) {
            FZ_CHECK(cap.nmsg == 2, "get of %zu keys: %zu messages", n - 1,
                     cap.nmsg);
            FZ_CHECK(cap.nframes[0] == n - 1, "get of %zu keys: %zu values",
                     n - 1, cap.nframes[0]);
        } else if (is_stats && rc == 0) {
            FZ_CHECK(cap.nmsg == 2 && cap.nframes[0] == 2 * pd__nstat_fields,
                     "stats: %zu messages, %zu frames", cap.nmsg,
                     cap.nframes[0]);
            pd_server_stats st = {.size = sizeof st};
            FZ_CHECK(pd__handler_stats(&h, &st, PD_NOLOCK) == 0, "stats: %s",
                     pd_errmsg(d));
            FZ_CHECK(st.requests == handled, "stats: %llu requests, %llu sent",
                     (unsigned long long)st.requests,
                     (unsigned long long)handled);
        } else if (is_keys && rc == 0) {
            FZ_CHECK(cap.nmsg == 2 && cap.nframes[0] % 2 == 1,
                     "keys: %zu messages, %zu frames", cap.nmsg,
                     cap.nframes[0]);
        } else {
            FZ_CHECK(cap.nmsg == 1, "%zu messages for a non-get", cap.nmsg);
        }

        /* An append that succeeded is read back whole (distinct keys). */
        bool is_append =
            n >= 1 && fr[0].size == 6 && !memcmp(fr[0].data, "append", 6);
        if (is_append && rc == 0 && n >= 3 && n % 2 == 1) {
            size_t nk = (n - 1) / 2;
            bool distinct = true;
            for (size_t i = 0; i < nk && distinct; i++)
                for (size_t j = i + 1; j < nk; j++)
                    if (fr[1 + 2 * i].size == fr[1 + 2 * j].size &&
                        !memcmp(fr[1 + 2 * i].data, fr[1 + 2 * j].data,
                                fr[1 + 2 * i].size))
                        distinct = false;
            if (distinct) {
                pd_bytes g[S_MAX_FRAMES];
                g[0] = (pd_bytes){"get", 3};
                for (size_t i = 0; i < nk; i++) g[1 + i] = fr[1 + 2 * i];
                memset(&cap, 0, sizeof cap);
                FZ_CHECK(pd__handle(&h, 1 + nk, g) == 0, "get after append: %s",
                         h.msg);
                handled++;
                size_t want = 0;
                for (size_t i = 0; i < nk; i++) want += fr[2 + 2 * i].size;
                FZ_CHECK(cap.total >= want,
                         "get after append: %zu bytes, appended %zu", cap.total,
                         want);
            }
        }
    }
    pd__handler_fini(&h);
    pd_unlock(d);
    pd_close(&d);
    return 0;
}
