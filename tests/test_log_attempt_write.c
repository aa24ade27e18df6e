/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * How an attempt's records are written (src/log/attempt.c through
 * format.c's plan and segment.c's writev, as plain appends are): the
 * attempt and commit records are the bytes docs/log-format.md describes
 * (logref.h) for random batches; values adjacent in memory go as one
 * buffer; a multi-MiB attempt append goes in pieces of at most
 * LG_WRITE_PIECE, and a piece failing (ENOSPC, or an fsync after it, or
 * the truncation back failing too) leaves nothing of the record visible
 * and the attempt usable; short writes and EINTR write it whole; a writer
 * killed between two pieces leaves a torn record that is left out and
 * counted, and the writer's retry commits exactly.
 */
#include "log/log.h"
#include "logfix.h"
#include "logref.h"

#include <errno.h>
#include <signal.h>
#include <sys/uio.h>

/* ------------------------------------------------------------- Random */

static uint64_t g_rng = 0xD1B54A32D192ED03ull;

static size_t s_below(size_t n) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (size_t)(g_rng % n);
}

/* ---------------------------------------------------------- Helpers */

static const pd_bytes g_wparts[] = {{"map", 3}, {"7", 1}};
#define S_WRITER PD_KEY_TUPLE(g_wparts, 2)

static pd_attempt *s_begin(pd_store *s, uint64_t n) {
    pd_attempt *a = NULL;
    pd_key w = S_WRITER;
    TU_OK(pd_attempt_begin(s, &w, n, &a, 0), s);
    return a;
}

/* len bytes of path at off (malloc'd). */
static unsigned char *s_read_at(const char *path, long long off, size_t len) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char *b = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(fseek(f, (long)off, SEEK_SET), 0);
    ck_assert_uint_eq(fread(b, 1, len, f), len);
    fclose(f);
    return b;
}

static long long s_size(const char *path) {
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (long long)st.st_size;
}

/* A pool of keys: flat ones (short, long, empty), tuples, and 1-tuples
 * packing as their flat neighbour; values are slices of an arena. */
#define S_POOL 40
static char g_names[S_POOL][100];
static pd_bytes g_parts[S_POOL][2];
static pd_key g_pool[S_POOL];

static void s_pool(void) {
    for (int i = 0; i < S_POOL; i++) {
        char *nm = g_names[i];
        size_t len = (size_t)snprintf(nm, 100, "key%d", i * 31 % 97);
        if (i % 10 == 4) { /* long */
            memset(nm, 'a' + i % 26, 90);
            len = 90;
        }
        if (i == 0) len = 0;
        if (i % 5 == 2) {
            g_parts[i][0] = PD_BYTES(nm, len / 2);
            g_parts[i][1] = PD_BYTES(nm + len / 2, len - len / 2);
            g_pool[i] = PD_KEY_TUPLE(g_parts[i], 2);
        } else if (i % 5 == 3) { /* 1-tuple of pool[i - 2]'s bytes */
            g_parts[i][0] = PD_BYTES(g_names[i - 2], strlen(g_names[i - 2]));
            g_pool[i] = PD_KEY_TUPLE(g_parts[i], 1);
        } else {
            g_pool[i] = PD_KEY(nm, len);
        }
    }
}

/* ------------------------------------------------------------- Bytes */

START_TEST(same_bytes_as_reference) {
    enum { ARENA = 1 << 16, NMAX = 300, ROUNDS = 60 };
    s_pool();
    unsigned char *arena = malloc(ARENA);
    pd_key *ks = calloc(NMAX, sizeof *ks);
    pd_bytes *vs = calloc(NMAX, sizeof *vs);
    ck_assert(arena && ks && vs);
    for (size_t i = 0; i < ARENA; i++) arena[i] = (unsigned char)s_below(256);
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    tu_append1(s, K("plain"), "p;", 2); /* the segment exists */
    char seg[PATH_MAX + 300];
    s_only(f.root, "w-", seg, sizeof seg);
    pd_key w = S_WRITER;
    unsigned char wpk[64];
    size_t wlen = pd__key_packed_size(&w);
    pd__key_pack(&w, wpk);
    pd_attempt *a = s_begin(s, 0x0123456789abcdefull);
    uint64_t inst = 0, nrecs = 0, nbytes = 0;
    for (int round = 0; round < ROUNDS; round++) {
        size_t n = 1 + s_below(round % 10 == 9 ? NMAX : 30);
        size_t at = s_below(ARENA - 400);
        bool adjacent = s_below(2);
        for (size_t i = 0; i < n; i++) {
            ks[i] = g_pool[s_below(S_POOL)];
            size_t len = s_below(4) == 0 ? 0 : s_below(200);
            if (!adjacent) at = s_below(ARENA - 400);
            vs[i] = PD_BYTES(arena + at, len);
            at = (at + len) % (ARENA - 400);
        }
        long long start = s_size(seg);
        TU_OK(pd_attempt_append(a, n, ks, vs, 0), s);
        if (round % 7 == 3) tu_append1(s, K("plain"), "p;", 2);
        long long end = s_size(seg);
        /* The record is the segment's last one (after any plain one). */
        unsigned char *tail = s_read_at(seg, end - LG_HDR, LG_HDR);
        lg_hdr h;
        ck_assert_int_eq(lg_hdr_parse(tail, &h), 0);
        free(tail);
        if (h.type == LG_APPEND) { /* the plain one came after: skip it */
            end -= (long long)lg_rec_len(&h);
            tail = s_read_at(seg, end - LG_HDR, LG_HDR);
            ck_assert_int_eq(lg_hdr_parse(tail, &h), 0);
            free(tail);
        }
        ck_assert_uint_eq(h.type, LG_ATTEMPT);
        size_t len = (size_t)lg_rec_len(&h);
        ck_assert_int_eq((long long)len, end - start);
        unsigned char *got = s_read_at(seg, start, len);
        /* The instance, from the first record's tag (drawn at begin). */
        size_t toff = LG_HDR + LG_ENT + (wlen + 7) / 8 * 8 + LG_ENT + 1;
        if (round == 0) {
            for (int i = 7; i >= 0; i--) inst = inst << 8 | got[toff + 8 + i];
            ck_assert_uint_gt(inst, 0);
            ck_assert_uint_lt(inst, h.seq);
        }
        unsigned char tag[16];
        lr_le(tag, 0x0123456789abcdefull, 8);
        lr_le(tag + 8, inst, 8);
        lr_tag t = {wpk, tag, wlen, sizeof tag};
        size_t rlen;
        unsigned char *ref = lr_rec(LG_ATTEMPT, h.seq, &t, n, ks, vs, &rlen);
        ck_assert_uint_eq(rlen, len);
        ck_assert_msg(memcmp(got, ref, len) == 0, "round %d: record differs",
                      round);
        free(got);
        free(ref);
        nrecs++;
        nbytes += h.data_len;
    }
    /* Nothing visible yet; the commit record is the reference's too. */
    ck_assert_int_eq(tu_nkeys(r), 1);
    TU_OK(pd_attempt_commit(&a, 0), s);
    char cl[PATH_MAX + 300];
    snprintf(cl, sizeof cl, "%s/%s", f.root, LG_COMMITS);
    size_t clen = (size_t)s_size(cl);
    unsigned char *got = s_read_at(cl, 0, clen);
    lg_hdr h;
    ck_assert_int_eq(lg_hdr_parse(got, &h), 0);
    unsigned char tag[32];
    lr_le(tag, 0x0123456789abcdefull, 8);
    lr_le(tag + 8, inst, 8);
    lr_le(tag + 16, nrecs, 8);
    lr_le(tag + 24, nbytes, 8);
    lr_tag t = {wpk, tag, wlen, sizeof tag};
    size_t rlen;
    unsigned char *ref = lr_rec(LG_COMMIT, h.seq, &t, 0, NULL, NULL, &rlen);
    ck_assert_uint_eq(clen, rlen);
    ck_assert(memcmp(got, ref, rlen) == 0);
    free(got);
    free(ref);
    ck_assert_int_gt(tu_nkeys(r), 1);
    ck_assert_uint_eq(pd_log_torn(r), 0);
    TU_OK(pd_close(&r), NULL);
    fx_end(&f, &s);
    free(arena);
    free(ks);
    free(vs);
}
END_TEST

/* -------------------------------------------------------- The writev */

/* Data buffers of the last call, bytes of the largest, calls; the call
 * that fails with ENOSPC (0: none); every call writes at most g_short
 * bytes (0: all), every other one failing with EINTR first (g_eintr). */
static int g_segs, g_calls, g_fail_at;
static size_t g_most, g_short;
static bool g_eintr;

static ssize_t f_writev(int fd, const struct iovec *iov, int cnt) {
    size_t sum = 0;
    for (int i = 0; i < cnt; i++) sum += iov[i].iov_len;
    if (sum > g_most) g_most = sum;
    g_segs = cnt - 2;
    if (++g_calls == g_fail_at) {
        errno = ENOSPC;
        return -1;
    }
    if (g_eintr && g_calls % 2) {
        errno = EINTR;
        return -1;
    }
    if (!g_short || sum <= g_short) return writev(fd, iov, cnt);
    /* The first g_short bytes only. */
    struct iovec cut[4];
    int k = 0;
    for (size_t left = g_short; k < cnt && k < 4 && left; k++) {
        size_t n = iov[k].iov_len < left ? iov[k].iov_len : left;
        cut[k] = (struct iovec){iov[k].iov_base, n};
        left -= n;
    }
    return writev(fd, cut, k);
}

static void s_hook(int fail_at, size_t shorts, bool eintr) {
    pd__sys_reset();
    g_calls = g_segs = 0;
    g_most = 0;
    g_fail_at = fail_at;
    g_short = shorts;
    g_eintr = eintr;
    pd__sys_table.writev = f_writev;
}

static int g_fail_truncate;
static int f_ftruncate(int fd, off_t len) {
    if (g_fail_truncate) {
        errno = EIO;
        return -1;
    }
    return ftruncate(fd, len);
}

static int f_fsync_eio(int fd) {
    (void)fd;
    errno = EIO;
    return -1;
}

/* The big batch: N sorted keys "p%06zu" of SMALL bytes each, one after
 * another in small[], key N / 2's value the BIG bytes of big[] instead: a
 * record of about 3.5 MiB. */
enum { N = 4097, BIG = 5 << 19, SMALL = 256 };

typedef struct s_big {
    unsigned char *big, *small;
    char (*names)[8];
    pd_key *ks;
    pd_bytes *vs;
} s_big;

static void s_big_make(s_big *b) {
    b->big = malloc(BIG);
    b->small = malloc((size_t)N * SMALL);
    b->names = calloc(N, sizeof *b->names);
    b->ks = calloc(N, sizeof *b->ks);
    b->vs = calloc(N, sizeof *b->vs);
    ck_assert(b->big && b->small && b->names && b->ks && b->vs);
    for (size_t i = 0; i < BIG; i++) b->big[i] = (unsigned char)(i * 7);
    for (size_t i = 0; i < (size_t)N * SMALL; i++)
        b->small[i] = (unsigned char)(i * 13);
    for (size_t i = 0; i < N; i++) {
        snprintf(b->names[i], 8, "p%06zu", i);
        b->ks[i] = PD_KEY(b->names[i], 7);
        b->vs[i] = PD_BYTES(b->small + i * SMALL, SMALL);
    }
    b->vs[N / 2] = PD_BYTES(b->big, BIG);
}

static void s_big_free(s_big *b) {
    free(b->big);
    free(b->small);
    free(b->names);
    free(b->ks);
    free(b->vs);
}

/* r reads the big batch `times` times over (0: none of it). */
static void s_big_expect(pd_store *r, const s_big *b, int times) {
    unsigned char *want = malloc((size_t)BIG * 3 + 1);
    ck_assert_ptr_nonnull(want);
    for (int t = 0; t < times; t++) memcpy(want + (size_t)t * BIG, b->big, BIG);
    tu_expect(r, b->ks[N / 2], want, (size_t)BIG * (size_t)times);
    for (size_t i = 0; i < N; i += N / 7) {
        if (i == N / 2) continue;
        for (int t = 0; t < times; t++)
            memcpy(want + (size_t)t * SMALL, b->vs[i].data, SMALL);
        tu_expect(r, b->ks[i], want, (size_t)SMALL * (size_t)times);
    }
    free(want);
}

START_TEST(merged_and_in_pieces) {
    s_big b;
    s_big_make(&b);
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    /* Sorted keys, values one after another: one data buffer. */
    pd_attempt *a = s_begin(s, 0);
    s_hook(0, 0, false);
    TU_OK(pd_attempt_append(a, 1000, b.ks, b.vs, 0), s);
    ck_assert_int_eq(g_segs, 1);
    pd__sys_reset();
    TU_OK(pd_attempt_abort(&a), s);
    /* The big record: in pieces of at most LG_WRITE_PIECE bytes. */
    a = s_begin(s, 1);
    s_hook(0, 0, false);
    TU_OK(pd_attempt_append(a, N, b.ks, b.vs, 0), s);
    ck_assert_uint_le(g_most, LG_WRITE_PIECE);
    ck_assert_int_ge(g_calls, 4);
    /* Short writes and EINTR across the pieces: written whole. */
    s_hook(0, 100000, true);
    TU_OK(pd_attempt_append(a, N, b.ks, b.vs, 0), s);
    ck_assert_int_gt(g_calls, 60);
    pd__sys_reset();
    s_big_expect(r, &b, 0);
    TU_OK(pd_attempt_commit(&a, 0), s);
    s_big_expect(r, &b, 2);
    ck_assert_uint_eq(pd_log_torn(r), 0);
    TU_OK(pd_close(&r), NULL);
    fx_end(&f, &s);
    s_big_free(&b);
}
END_TEST

START_TEST(fault_between_pieces) {
    s_big b;
    s_big_make(&b);
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    pd_attempt *a = s_begin(s, 2);
    TU_OK(pd_attempt_append(a, N, b.ks, b.vs, 0), s);
    char seg[PATH_MAX + 300];
    s_only(f.root, "w-", seg, sizeof seg);
    long long size = s_size(seg);
    /* The third piece fails: the record is truncated back, loudly. */
    s_hook(3, 0, false);
    ck_assert_int_eq(pd_attempt_append(a, N, b.ks, b.vs, 0), PD_ERR_IO);
    pd__sys_reset();
    const char *m = pd_errmsg(s);
    ck_assert_msg(strstr(m, "attempt append 'p000000'") &&
                      strstr(m, "writev(") && strstr(m, "No space left"),
                  "%s", m);
    ck_assert_int_eq(s_size(seg), size);
    s_big_expect(r, &b, 0);
    ck_assert_uint_eq(pd_log_torn(r), 0);
    /* An fsync failing after the pieces: the same. */
    pd__sys_table.fsync = f_fsync_eio;
    ck_assert_int_eq(pd_attempt_append(a, N, b.ks, b.vs, PD_FSYNC), PD_ERR_IO);
    pd__sys_reset();
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "fsync("));
    ck_assert_int_eq(s_size(seg), size);
    /* The truncation back failing too: the segment is abandoned with the
     * torn tail, kept (the attempt's first record is in it), and the next
     * append goes to a new segment. */
    s_hook(3, 0, false);
    g_fail_truncate = 1;
    pd__sys_table.ftruncate = f_ftruncate;
    ck_assert_int_eq(pd_attempt_append(a, N, b.ks, b.vs, 0), PD_ERR_IO);
    g_fail_truncate = 0;
    pd__sys_reset();
    ck_assert_int_gt(s_size(seg), size);
    s_big_expect(r, &b, 0);
    /* The attempt goes on and commits exactly its two whole appends. */
    TU_OK(pd_attempt_append(a, N, b.ks, b.vs, 0), s);
    ck_assert_int_eq(s_count(f.root, "w-"), 2);
    s_big_expect(r, &b, 0);
    TU_OK(pd_attempt_commit(&a, 0), s);
    s_big_expect(r, &b, 2);
    /* The abandoned segment's tail: left out and counted once its writer
     * released it (the attempt ended). */
    ck_assert_uint_eq(pd_log_torn(r), 1);
    TU_OK(pd_close(&r), NULL);
    r = fx_open(&f);
    s_big_expect(r, &b, 2);
    TU_OK(pd_close(&r), NULL);
    fx_end(&f, &s);
    s_big_free(&b);
}
END_TEST

/* ------------------------------------------------------------ Killed */

static int g_pieces; /* writev calls before the process dies */

static ssize_t f_writev_die(int fd, const struct iovec *iov, int cnt) {
    if (g_pieces-- == 0) raise(SIGKILL);
    return writev(fd, iov, cnt);
}

typedef struct s_karg {
    const char *root;
    const s_big *b;
} s_karg;

static int s_killed_child(void *p) {
    s_karg *ka = p;
    pd_store *s = fx_child_open(ka->root);
    pd_key w = S_WRITER;
    pd_attempt *a = NULL;
    TU_CHECK(pd_attempt_begin(s, &w, 0, &a, 0) == 0, "%s", pd_errmsg(s));
    TU_CHECK(pd_attempt_append(a, N, ka->b->ks, ka->b->vs, 0) == 0, "%s",
             pd_errmsg(s));
    g_pieces = 2;
    pd__sys_table.writev = f_writev_die;
    pd_attempt_append(a, N, ka->b->ks, ka->b->vs, 0);
    return 1;
}

START_TEST(killed_between_pieces) {
    s_big b;
    s_big_make(&b);
    fx f;
    pd_store *s = fx_start(&f);
    s_karg ka = {f.root, &b};
    tu_child c = tu_child_spawn(s_killed_child, &ka, NULL, 0);
    char msg[512];
    ck_assert_int_eq(tu_child_wait(c, msg, sizeof msg), 128 + SIGKILL);
    /* Two pieces of the second record landed: a torn tail, left out. */
    s_big_expect(s, &b, 0);
    ck_assert_uint_eq(pd_log_torn(s), 1);
    ck_assert_ptr_nonnull(strstr(pd_log_notice(s), "torn"));
    /* The writer's retry commits exactly its own appends. */
    pd_attempt *a = s_begin(s, 1);
    TU_OK(pd_attempt_append(a, N, b.ks, b.vs, 0), s);
    TU_OK(pd_attempt_commit(&a, 0), s);
    s_big_expect(s, &b, 1);
    pd_store *r = fx_open(&f);
    s_big_expect(r, &b, 1);
    TU_OK(pd_close(&r), NULL);
    TU_OK(pd_close(&s), NULL);
    s = fx_open(&f); /* after the close's compaction */
    s_big_expect(s, &b, 1);
    fx_end(&f, &s);
    s_big_free(&b);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"same_bytes_as_reference", same_bytes_as_reference, 0},
        {"merged_and_in_pieces", merged_and_in_pieces, 0},
        {"fault_between_pieces", fault_between_pieces, 0},
        {"killed_between_pieces", killed_between_pieces, 0},
    };
    return TU_RUN_CASES("test_log_attempt_write", cases, 300, 0);
}
