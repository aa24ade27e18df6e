/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Log's append through writev (header and key table, the caller's
 * values, trailer): the bytes are those of a record built by copying
 * (lg_rec_build), a writev cut at every byte leaves nothing visible, short
 * writes and EINTR still write the whole record, and batches of more
 * values than IOV_MAX are written in several calls and read back exactly.
 * pd__writev_all on its own: empty buffers, partial buffers.
 */
#include "log/log.h"
#include "logfix.h"

#include <errno.h>
#include <limits.h>
#include <sys/uio.h>

/* ------------------------------------------------------------ Faults */

static int g_calls, g_maxcnt;
static size_t g_cut;   /* the first call writes at most this, the next fails */
static size_t g_short; /* every call writes at most this (0: no limit) */
static bool g_eintr;   /* every other call fails with EINTR first */

/* The real writev of at most `most` bytes of iov. */
static ssize_t s_writev_most(int fd, const struct iovec *iov, int cnt,
                             size_t most) {
    struct iovec cut[8];
    int k = 0;
    for (int i = 0; i < cnt && most && k < 8; i++) {
        size_t n = iov[i].iov_len < most ? iov[i].iov_len : most;
        if (!n) continue;
        cut[k++] = (struct iovec){iov[i].iov_base, n};
        most -= n;
    }
    return k ? writev(fd, cut, k) : 0;
}

static ssize_t f_writev_cut(int fd, const struct iovec *iov, int cnt) {
    if (++g_calls > 1 || g_cut == 0) {
        errno = ENOSPC;
        return -1;
    }
    return s_writev_most(fd, iov, cnt, g_cut);
}

static ssize_t f_writev_short(int fd, const struct iovec *iov, int cnt) {
    g_calls++;
    if (cnt > g_maxcnt) g_maxcnt = cnt;
    if (g_eintr && g_calls % 2) {
        errno = EINTR;
        return -1;
    }
    if (!g_short) return writev(fd, iov, cnt);
    return s_writev_most(fd, iov, cnt, g_short);
}

/* The second call (after a whole first one) fails. */
static ssize_t f_writev_second(int fd, const struct iovec *iov, int cnt) {
    if (++g_calls == 2) {
        errno = EIO;
        return -1;
    }
    return writev(fd, iov, cnt);
}

static void s_reset(void) {
    pd__sys_reset();
    g_calls = g_maxcnt = 0;
    g_cut = g_short = 0;
    g_eintr = false;
}

/* ------------------------------------------------------------- Batch */

/* A batch with a repeated key, an empty value, a key of two parts. */
static char g_big[700];
static const pd_bytes g_part[] = {{"pa", 2}, {"rt", 2}};

static size_t s_batch(pd_key *ks, pd_bytes *vs) {
    memset(g_big, 'q', sizeof g_big);
    ks[0] = K("a"), vs[0] = V("first;");
    ks[1] = K("b"), vs[1] = PD_BYTES("", 0);
    ks[2] = K("a"), vs[2] = V("second;");
    ks[3] = PD_KEY_TUPLE(g_part, 2), vs[3] = PD_BYTES(g_big, 300);
    ks[4] = K("c"), vs[4] = V("c");
    return 5;
}

static void s_expect_batch(pd_store *s, int times) {
    static char a[20 * 13 + 1], c[21], big[20 * 300];
    ck_assert_int_le(times, 20);
    a[0] = c[0] = 0;
    for (int i = 0; i < times; i++) {
        strcat(a, "first;second;");
        strcat(c, "c");
        memcpy(big + 300 * i, g_big, 300);
    }
    tu_expect_str(s, K("a"), a);
    tu_expect_str(s, K("b"), "");
    tu_expect_str(s, K("c"), c);
    size_t n = 0;
    pd_key pk = {NULL, 0, g_part, 2};
    char *v = tu_get1(s, &pk, &n);
    ck_assert_uint_eq(n, 300u * (unsigned)times);
    ck_assert(memcmp(v, big, n) == 0);
    free(v);
}

/* The bytes of the only segment. */
static unsigned char *s_segment(const char *root, size_t *len) {
    char p[PATH_MAX + 300];
    s_only(root, "w-", p, sizeof p);
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char *b = malloc(1 << 20);
    ck_assert_ptr_nonnull(b);
    *len = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

/* ------------------------------------------------------------- Tests */

START_TEST(same_bytes_as_copy) {
    fx f;
    pd_store *s = fx_start(&f);
    pd_key ks[5];
    pd_bytes vs[5];
    size_t n = s_batch(ks, vs);
    TU_OK(pd_append(s, n, ks, vs, 0), NULL);
    size_t len;
    unsigned char *seg = s_segment(f.root, &len);
    lg_hdr h;
    ck_assert_uint_ge(len, LG_HDR);
    ck_assert_int_eq(lg_hdr_parse(seg, &h), 0);
    pd__buf b;
    pd__buf_init(&b, NULL, 0);
    TU_OK(lg_rec_build(&b, LG_APPEND, h.seq, n, ks, vs), NULL);
    ck_assert_uint_eq(len, b.len);
    ck_assert(memcmp(seg, b.p, len) == 0);
    /* The same for a delete (no values at all). */
    pd__buf_free(&b);
    free(seg);
    TU_OK(pd_delete(s, 1, &ks[4], 0), NULL);
    seg = s_segment(f.root, &len);
    ck_assert_int_eq(lg_hdr_parse(seg + len - LG_HDR, &h), 0);
    ck_assert_uint_eq(h.type, LG_DELETE);
    pd__buf_init(&b, NULL, 0);
    TU_OK(lg_rec_build(&b, LG_DELETE, h.seq, 1, &ks[4], NULL), NULL);
    ck_assert_uint_le(b.len, len);
    ck_assert(memcmp(seg + len - b.len, b.p, b.len) == 0);
    pd__buf_free(&b);
    free(seg);
    fx_end(&f, &s);
}
END_TEST

START_TEST(cut_at_every_byte) {
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    pd_key ks[5];
    pd_bytes vs[5];
    size_t n = s_batch(ks, vs);
    TU_OK(pd_append(s, n, ks, vs, 0), NULL);
    long long size = s_seg_bytes(f.root);
    size_t rec = (size_t)size; /* the first record is the only one */
    for (size_t cut = 0; cut < rec; cut++) {
        s_reset();
        g_cut = cut;
        pd__sys_table.writev = f_writev_cut;
        int rc = pd_append(s, n, ks, vs, 0);
        s_reset();
        ck_assert_msg(rc == PD_ERR_IO, "cut %zu: %d", cut, rc);
        ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "writev("));
        ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "No space left"));
        ck_assert_msg(s_seg_bytes(f.root) == size, "cut %zu: %lld bytes", cut,
                      s_seg_bytes(f.root));
        if (cut % 97 == 0) s_expect_batch(r, 1);
    }
    s_expect_batch(r, 1);
    TU_OK(pd_append(s, n, ks, vs, 0), NULL);
    s_expect_batch(r, 2);
    ck_assert_uint_eq(pd_log_torn(r), 0);
    TU_OK(pd_close(&r), NULL);
    fx_end(&f, &s);
}
END_TEST

START_TEST(short_writes_and_eintr) {
    static const size_t shorts[] = {1, 2, 3, 7, 48, 49, 100, 0};
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    pd_key ks[5];
    pd_bytes vs[5];
    size_t n = s_batch(ks, vs);
    int times = 0;
    for (size_t i = 0; i < sizeof shorts / sizeof shorts[0]; i++) {
        for (int e = 0; e < 2; e++) {
            s_reset();
            g_short = shorts[i];
            g_eintr = e;
            pd__sys_table.writev = f_writev_short;
            int rc = pd_append(s, n, ks, vs, 0);
            s_reset();
            ck_assert_msg(rc == 0, "short %zu: %s", shorts[i], pd_errmsg(s));
            s_expect_batch(r, ++times);
        }
    }
    TU_OK(pd_close(&r), NULL);
    s_reset();
    fx_end_reopened(&f, &s, "c", "cccccccccccccccc");
}
END_TEST

/* More values than one writev takes: key i % 5 gets value i (2 KiB and
 * i % 13 bytes of its own letters, some empty: large enough not to be
 * copied into one buffer). */
#define S_MANY (3 * IOV_MAX + 7)
#define S_VMAX (LG_COPY_BELOW + 13)

static void s_many(pd_key *ks, pd_bytes *vs, char (*names)[2], char *data) {
    size_t at = 0;
    for (int i = 0; i < S_MANY; i++) {
        names[i][0] = (char)('a' + i % 5);
        names[i][1] = 0;
        ks[i] = PD_KEY(names[i], 1);
        size_t len = i % 13 ? LG_COPY_BELOW + (size_t)(i % 13) : 0;
        for (size_t j = 0; j < len; j++) data[at + j] = (char)('A' + i % 26);
        vs[i] = PD_BYTES(data + at, len);
        at += len;
    }
}

static void s_expect_many(pd_store *r, const pd_bytes *vs, int times) {
    for (int k = 0; k < 5; k++) {
        size_t want = 0;
        for (int i = k; i < S_MANY; i += 5) want += vs[i].size;
        char name[2] = {(char)('a' + k), 0};
        size_t got;
        char *v = tu_get1(r, &PD_KEY(name, 1), &got);
        ck_assert_uint_eq(got, want * (size_t)times);
        size_t at = 0;
        for (int t = 0; t < times; t++)
            for (int i = k; i < S_MANY; i += 5) {
                ck_assert(memcmp(v + at, vs[i].data, vs[i].size) == 0);
                at += vs[i].size;
            }
        free(v);
    }
}

START_TEST(more_than_iov_max) {
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    pd_key *ks = calloc(S_MANY, sizeof *ks);
    pd_bytes *vs = calloc(S_MANY, sizeof *vs);
    char(*names)[2] = calloc(S_MANY, sizeof *names);
    char *data = calloc(S_MANY, S_VMAX);
    ck_assert(ks && vs && names && data);
    s_many(ks, vs, names, data);
    /* Whole calls: at most IOV_MAX buffers each, three of them or more. */
    pd__sys_table.writev = f_writev_short;
    TU_OK(pd_append(s, S_MANY, ks, vs, 0), NULL);
    ck_assert_int_ge(g_calls, 3);
    ck_assert_int_le(g_maxcnt, IOV_MAX);
    s_reset();
    s_expect_many(r, vs, 1);
    /* Short writes across the chunks' edges. */
    g_short = 1000;
    pd__sys_table.writev = f_writev_short;
    TU_OK(pd_append(s, S_MANY, ks, vs, 0), NULL);
    ck_assert_int_gt(g_calls, 3);
    s_reset();
    s_expect_many(r, vs, 2);
    /* A failure after the first chunk: nothing of the record stays. */
    long long size = s_seg_bytes(f.root);
    pd__sys_table.writev = f_writev_second;
    ck_assert_int_eq(pd_append(s, S_MANY, ks, vs, 0), PD_ERR_IO);
    s_reset();
    ck_assert_int_eq(s_seg_bytes(f.root), size);
    s_expect_many(r, vs, 2);
    TU_OK(pd_close(&r), NULL);
    /* A new handle reads the whole segment from its start. */
    r = fx_open(&f);
    s_expect_many(r, vs, 2);
    TU_OK(pd_close(&r), NULL);
    free(ks);
    free(vs);
    free(names);
    free(data);
    fx_end(&f, &s);
}
END_TEST

START_TEST(writev_all) {
    char *dir = tu_mkdtemp();
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/f", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    struct iovec none[1] = {{NULL, 0}};
    pd__sys_table.writev = f_writev_short;
    ck_assert_uint_eq(pd__writev_all(fd, none, 0), 0);
    ck_assert_uint_eq(pd__writev_all(fd, none, 1), 0);
    ck_assert_int_eq(g_calls, 0); /* nothing to write: no call */
    char a[] = "abc", b[] = "defgh", c[] = "i";
    struct iovec v[] = {{NULL, 0}, {a, 3}, {NULL, 0},
                        {b, 5},    {c, 1}, {NULL, 0}};
    g_short = 2;
    ck_assert_uint_eq(pd__writev_all(fd, v, 6), 9);
    s_reset();
    char got[16] = "";
    ck_assert_int_eq(pread(fd, got, sizeof got, 0), 9);
    ck_assert_str_eq(got, "abcdefghi");
    /* A failure after some bytes: their count, errno set. */
    struct iovec w[] = {{a, 3}, {b, 5}};
    g_cut = 4;
    pd__sys_table.writev = f_writev_cut;
    errno = 0;
    ck_assert_uint_eq(pd__writev_all(fd, w, 2), 4);
    ck_assert_int_eq(errno, ENOSPC);
    s_reset();
    close(fd);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"same_bytes_as_copy", same_bytes_as_copy},
        {"cut_at_every_byte", cut_at_every_byte},
        {"short_writes_and_eintr", short_writes_and_eintr},
        {"more_than_iov_max", more_than_iov_max},
        {"writev_all", writev_all},
    };
    return tu_run_cases("test_log_writev", cases,
                        sizeof cases / sizeof cases[0], 120, 0);
}
