/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Crash consistency of framed (Encode over File) stores.
 *
 * A child appends batches through zlib(File) or zstd(File) and, after each
 * pd_append returns 0, reports the batch id over a pipe.  It dies by
 * SIGKILL: either the parent kills it at a random moment, or it tears one
 * of its own write() calls (a write hook in the syscall table writes part
 * of the buffer, up to a page boundary as the kernel would, then raises
 * SIGKILL), so torn frames are certain to occur.  Each new child continues
 * on the same store and keys, so a torn tail becomes a torn middle frame.
 *
 * After every kill the parent checks: the store opens; get fails on no key;
 * every acknowledged batch's values are in their keys, whole and in order;
 * the batch in flight at the kill is absent or a prefix of its values per
 * key; nothing else is there; torn regions are counted by pd_encode_torn;
 * every few rounds pd_encode_repair leaves the keys reading the same with
 * no torn region left; the lock is free.
 *
 * Also: PD_FSYNC reaches the File under the Encode layer (fsync counted
 * through the syscall table) and acknowledged data survives kills with it.
 *
 * PARTD_CRASH_SEED=N repeats a run (the seed is printed on failure).
 */
#include "crashfix.h"

/* ------------------------------------------------------------- Child */

typedef struct s_cargs {
    const char *dir, *codec;
    uint32_t start;   /* first batch id */
    int ackfd;        /* write end: one uint32 per acknowledged batch */
    int tear_after;   /* > 0: tear the tear_after-th write() */
    uint32_t tear_at; /* which page boundary inside it */
    unsigned flags;   /* pd_append flags (PD_FSYNC) */
} s_cargs;

static int g_tear_countdown;
static uint32_t g_tear_at;

enum { PAGE = 4096 };

/* The File store's write(): the chosen call writes a prefix, then the
 * process dies as if killed in the middle of it.  As the kernel does: it
 * copies a write page by page and stops between pages for a fatal signal,
 * so a torn write ends on a page boundary of the file (the files are
 * O_APPEND: the write starts at their size).  The cut is one of the page
 * boundaries inside the write, at random; a write that crosses none is
 * written whole and the tear moves to the next write.  (A tear of a few
 * bytes after a tear ending exactly where a frame's claim does, the one
 * layout read as corrupt, so cannot happen here; see LAYOUTS.) */
static ssize_t s_tear_write(int fd, const void *buf, size_t n) {
    if (--g_tear_countdown > 0 || n < 2) return write(fd, buf, n);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return write(fd, buf, n);
    size_t first = PAGE - (size_t)st.st_size % PAGE; /* to the next page */
    if (first >= n) {
        g_tear_countdown = 1;
        return write(fd, buf, n);
    }
    size_t pages = (n - 1 - first) / PAGE + 1; /* boundaries inside */
    size_t cut = first + (g_tear_at % pages) * PAGE;
    ssize_t w = write(fd, buf, cut);
    (void)w;
    kill(getpid(), SIGKILL);
    for (;;) pause();
}

static int s_child(void *arg) {
    const s_cargs *a = arg;
    pd_store *f = NULL, *s = NULL;
    TU_CHECK(pd_file_open(&f, a->dir, PD_FILE_CREATE) == 0, "open: %s",
             pd_errmsg(NULL));
    TU_CHECK(pd_compress_open(&s, &f, a->codec, PD_LEVEL_DEFAULT, 0) == 0,
             "%s open: %s", a->codec, pd_errmsg(NULL));
    if (a->tear_after > 0) {
        g_tear_countdown = a->tear_after;
        g_tear_at = a->tear_at;
        pd__sys_table.write = s_tear_write;
    }
    char names[NKEYS][4];
    pd_key all[NKEYS];
    s_keys(names, all);
    for (uint32_t b = a->start; b < a->start + 100000; b++) {
        s_batch bt;
        s_batch_of(b, &bt);
        pd_key keys[MAXVALS];
        pd_bytes vals[MAXVALS];
        unsigned char *bufs[MAXVALS];
        for (int i = 0; i < bt.n; i++) {
            bufs[i] = malloc(bt.len[i]);
            TU_CHECK(bufs[i] != NULL, "out of memory");
            s_fill(b, bt.key[i], i, bt.len[i], bufs[i]);
            keys[i] = all[bt.key[i]];
            vals[i] = PD_BYTES(bufs[i], bt.len[i]);
        }
        int rc = pd_append(s, (size_t)bt.n, keys, vals, a->flags);
        TU_CHECK(rc == 0, "append batch %u: %s", (unsigned)b, pd_errmsg(s));
        TU_CHECK(write(a->ackfd, &b, sizeof b) == (ssize_t)sizeof b, "ack: %s",
                 strerror(errno));
        for (int i = 0; i < bt.n; i++) free(bufs[i]);
    }
    return 0;
}

/* ------------------------------------------------------------- Model */

enum { ST_NONE = 0, ST_ACKED = 1, ST_MAYBE = 2 };

typedef struct s_model {
    uint32_t next; /* next batch id to hand out */
    unsigned char *state;
    size_t cap;
    unsigned seed;
    const char *codec;
} s_model;

static void s_set_state(s_model *m, uint32_t b, unsigned char st) {
    if (b >= m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap <= b) cap *= 2;
        m->state = realloc(m->state, cap);
        ck_assert_ptr_nonnull(m->state);
        memset(m->state + m->cap, ST_NONE, cap - m->cap);
        m->cap = cap;
    }
    m->state[b] = st;
}

/* Whether data starts with value (b, k, i) of len bytes.  A value whose
 * header is there but whose bytes differ fails the test: contents must
 * be exact, never garbled. */
static bool s_value_at(const unsigned char *data, size_t avail, uint32_t b,
                       int k, int i, size_t len, unsigned char *scratch,
                       const s_model *m) {
    char hdr[64]; /* HDR bytes used: b < 10^10, len < 10^8 */
    snprintf(hdr, sizeof hdr, "B%010u K%02d I%02d L%08zu\n", (unsigned)b, k, i,
             len);
    if (avail < HDR || memcmp(data, hdr, HDR) != 0) return false;
    ck_assert_msg(avail >= len,
                  "[%s seed %u] key c%d: value %u/%d cut short: %zu of %zu "
                  "bytes",
                  m->codec, m->seed, k, (unsigned)b, i, avail, len);
    s_fill(b, k, i, len, scratch);
    size_t d = 0;
    while (d < len && data[d] == scratch[d]) d++;
    ck_assert_msg(d == len,
                  "[%s seed %u] key c%d: value %u/%d differs at byte %zu of "
                  "%zu",
                  m->codec, m->seed, k, (unsigned)b, i, d, len);
    return true;
}

/* Describes what key k holds at off, for failure messages. */
static void s_describe(const unsigned char *data, size_t len, size_t off,
                       char *out, size_t cap) {
    if (off >= len) {
        snprintf(out, cap, "end of the key");
        return;
    }
    size_t n = len - off < HDR ? len - off : HDR - 1;
    snprintf(out, cap, "'%.*s'", (int)n, (const char *)data + off);
}

/* Key k's decoded bytes against the model. */
static void s_check_key(const s_model *m, int k, const unsigned char *data,
                        size_t len, unsigned char *scratch) {
    static const unsigned char none[1];
    if (!data) data = none; /* an empty value may have no pointer */
    size_t off = 0;
    char what[64];
    for (uint32_t b = 1; b < m->next; b++) {
        unsigned char st = b < m->cap ? m->state[b] : ST_NONE;
        if (st == ST_NONE) continue;
        s_batch bt;
        s_batch_of(b, &bt);
        for (int i = 0; i < bt.n; i++) {
            if (bt.key[i] != k) continue;
            if (s_value_at(data + off, len - off, b, k, i, bt.len[i], scratch,
                           m)) {
                off += bt.len[i];
                continue;
            }
            s_describe(data, len, off, what, sizeof what);
            ck_assert_msg(st == ST_MAYBE,
                          "[%s seed %u] key c%d: acknowledged batch %u value "
                          "%d (%zu bytes) missing at offset %zu of %zu; "
                          "found %s",
                          m->codec, m->seed, k, (unsigned)b, i, bt.len[i], off,
                          len, what);
            break; /* the batch in flight: a prefix of its values */
        }
    }
    s_describe(data, len, off, what, sizeof what);
    ck_assert_msg(off == len,
                  "[%s seed %u] key c%d: %zu unexpected bytes at offset %zu: "
                  "%s",
                  m->codec, m->seed, k, len - off, off, what);
}

/* ------------------------------------------------------------ Parent */

static void s_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* Reads one ack: 1 (in *b), 0 at EOF, -1 after timeout_ms. */
static int s_read_ack(int fd, int timeout_ms, uint32_t *b) {
    struct pollfd pf = {fd, POLLIN, 0};
    int r;
    while ((r = poll(&pf, 1, timeout_ms)) < 0 && errno == EINTR) {}
    if (r == 0) return -1;
    size_t got = 0;
    while (got < sizeof *b) {
        ssize_t k = read(fd, (char *)b + got, sizeof *b - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return 0; /* a partial ack is no ack */
        got += (size_t)k;
    }
    return 1;
}

static void s_lock_is_free(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
    ck_assert_msg(flock(fd, LOCK_EX | LOCK_NB) == 0,
                  "the lock is still held after the writer died: %s",
                  strerror(errno));
    flock(fd, LOCK_UN);
    close(fd);
}

/* One round: a child appends from m->next until it is killed (tear: it
 * tears a write itself).  Updates the model from its acks. */
static void s_round(s_model *m, const char *dir, bool tear, unsigned flags) {
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    s_cargs a = {dir, m->codec, m->next, p[1], 0, 0, flags};
    if (tear) {
        a.tear_after = 1 + rand() % 12;
        a.tear_at = (uint32_t)rand();
    }
    tu_child c = tu_child_spawn(s_child, &a, &p[0], 1);
    close(p[1]);
    uint32_t hi = m->next - 1, b;
    int r;
    if (tear) {
        /* it dies by itself; 60 s is far beyond its ~12 writes */
        while ((r = s_read_ack(p[0], 60000, &b)) == 1) {
            ck_assert_uint_eq(b, hi + 1);
            hi = b;
        }
        if (r < 0) {
            kill(c.pid, SIGKILL);
            ck_abort_msg("the tearing writer did not die");
        }
    } else {
        int need = rand() % 4, delay = rand() % 25;
        while (need-- > 0 && (r = s_read_ack(p[0], 60000, &b)) == 1) {
            ck_assert_uint_eq(b, hi + 1);
            hi = b;
        }
        s_sleep_ms(delay);
        kill(c.pid, SIGKILL);
        while (s_read_ack(p[0], 60000, &b) == 1) {
            ck_assert_uint_eq(b, hi + 1);
            hi = b;
        }
    }
    close(p[0]);
    char msg[2048];
    int st = tu_child_wait(c, msg, sizeof msg);
    ck_assert_msg(st == 128 + SIGKILL, "[%s seed %u] writer exited %d: %s",
                  m->codec, m->seed, st, msg);
    for (uint32_t x = m->next; x <= hi; x++) s_set_state(m, x, ST_ACKED);
    s_set_state(m, hi + 1, ST_MAYBE); /* in flight when it died */
    m->next = hi + 2;
}

static int s_tile_cb(void *arg, const void *payload, size_t size,
                     uint64_t offset) {
    (void)arg;
    (void)payload;
    (void)size;
    (void)offset;
    return 0;
}

/* Checks the store against the model; with `repair`, repairs it and checks
 * that it reads the same with no torn region left.  Returns the torn
 * regions the get left out. */
static uint64_t s_verify(s_model *m, const char *dir, bool repair,
                         unsigned char *scratch) {
    s_lock_is_free(dir);
    char names[NKEYS][4];
    pd_key keys[NKEYS];
    s_keys(names, keys);
    pd_store *s = tu_codec_file(dir, 0, m->codec, PD_LEVEL_DEFAULT);
    pd_result *r = NULL;
    int rc = pd_get(s, NKEYS, keys, &r, 0);
    ck_assert_msg(rc == 0, "[%s seed %u] get after a kill: %s", m->codec,
                  m->seed, pd_errmsg(s));
    for (int k = 0; k < NKEYS; k++) {
        pd_bytes v = pd_result_value(r, (size_t)k);
        s_check_key(m, k, v.data, v.size, scratch);
    }
    uint64_t torn = pd_encode_torn(s);
    if (torn)
        ck_assert_msg(pd_encode_notice(s)[0] != 0, "torn %llu, no notice",
                      (unsigned long long)torn);
    if (repair) {
        uint64_t removed = 99;
        rc = pd_encode_repair(s, NKEYS, keys, &removed, 0);
        ck_assert_msg(rc == 0, "[%s seed %u] repair: %s", m->codec, m->seed,
                      pd_errmsg(s));
        ck_assert_msg(torn ? removed > 0 : removed == 0,
                      "[%s seed %u] %llu torn regions, repair removed %llu "
                      "bytes",
                      m->codec, m->seed, (unsigned long long)torn,
                      (unsigned long long)removed);
        ck_assert_int_eq(pd_close(&s), 0);
        s = tu_codec_file(dir, 0, m->codec, PD_LEVEL_DEFAULT);
        pd_result *r2 = NULL;
        rc = pd_get(s, NKEYS, keys, &r2, 0);
        ck_assert_msg(rc == 0, "get after repair: %s", pd_errmsg(s));
        for (int k = 0; k < NKEYS; k++) {
            pd_bytes a = pd_result_value(r, (size_t)k),
                     b = pd_result_value(r2, (size_t)k);
            ck_assert_msg(a.size == b.size &&
                              (a.size == 0 || !memcmp(a.data, b.data, a.size)),
                          "[%s seed %u] key c%d reads differently after "
                          "repair (%zu bytes, then %zu)",
                          m->codec, m->seed, k, a.size, b.size);
        }
        ck_assert_msg(pd_encode_torn(s) == 0,
                      "[%s seed %u] torn regions left after repair: %s",
                      m->codec, m->seed, pd_encode_notice(s));
        /* the raw bytes are whole frames again */
        pd_store *in = pd_encode_inner(s);
        pd_result *raw = NULL;
        TU_OK(pd_get(in, NKEYS, keys, &raw, 0), in);
        for (int k = 0; k < NKEYS; k++) {
            pd_bytes v = pd_result_value(raw, (size_t)k);
            size_t end = 0;
            ck_assert_msg(
                pd_frame_split(v.data, v.size, s_tile_cb, NULL, &end) == 0,
                "key c%d: a torn frame at %zu after repair", k, end);
        }
        pd_result_free(&raw);
        pd_result_free(&r2);
    }
    pd_result_free(&r);
    ck_assert_int_eq(pd_close(&s), 0);
    s_lock_is_free(dir);
    return torn;
}

static unsigned s_seed(void) {
    const char *e = getenv("PARTD_CRASH_SEED");
    if (e && *e) return (unsigned)strtoul(e, NULL, 10);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned)(ts.tv_nsec ^ ts.tv_sec ^ getpid());
}

/* Kills at random moments and torn writes, tens of rounds on one store. */
START_TEST(kill_rounds) {
    bool vg = tu_under_valgrind();
    g_maxval = vg ? (size_t)64 << 10 : (size_t)1 << 20;
    int rounds = vg ? 4 : 30;
    s_model m = {1, NULL, 0, s_seed(), CODECS[_i]};
    srand(m.seed);
    char *dir = s_new_store();
    unsigned char *scratch = malloc((size_t)1 << 20);
    uint64_t torn = 0;
    int tears = 0;
    for (int round = 0; round < rounds; round++) {
        bool tear = round % 2 == 1;
        tears += tear;
        s_round(&m, dir, tear, 0);
        bool repair = round % 4 == 3 || round == rounds - 1;
        torn += s_verify(&m, dir, repair, scratch);
    }
    if (getenv("PARTD_CRASH_VERBOSE"))
        fprintf(stderr,
                "kill_rounds(%s): seed %u, %d rounds (%d torn writes), %u "
                "batches handed out, %llu torn regions left out\n",
                m.codec, m.seed, rounds, tears, (unsigned)m.next - 1,
                (unsigned long long)torn);
    /* every tear leaves a torn frame (unless its cut fell exactly between
     * two frames of one write): some must have been seen */
    ck_assert_msg(tears < 2 || torn > 0,
                  "[%s seed %u] %d torn writes, no torn frame seen", m.codec,
                  m.seed, tears);
    free(scratch);
    free(m.state);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* --------------------------------------------------------------- fsync */

static int g_fsyncs;

static int s_count_fsync(int fd) {
    g_fsyncs++;
    return fsync(fd);
}

/* PD_FSYNC passes through the Encode layer to the File: each file written
 * is fsynced before the call returns, and PD_FILE_FSYNC does the same for
 * every call. */
START_TEST(fsync_reaches_the_file) {
    char *dir = s_new_store();
    pd_store *s = tu_codec_file(dir, 0, "zlib", PD_LEVEL_DEFAULT);
    pd__sys_table.fsync = s_count_fsync;
    char names[NKEYS][4];
    pd_key keys[NKEYS];
    s_keys(names, keys);
    pd_bytes vals[3] = {{"a", 1}, {"b", 1}, {"c", 1}};
    g_fsyncs = 0;
    TU_OK(pd_append(s, 3, keys, vals, 0), s);
    ck_assert_int_eq(g_fsyncs, 0);
    TU_OK(pd_append(s, 3, keys, vals, PD_FSYNC), s);
    ck_assert_int_ge(g_fsyncs, 3);
    g_fsyncs = 0;
    TU_OK(pd_iset(s, 1, &keys[4], vals, PD_FSYNC), s);
    ck_assert_int_ge(g_fsyncs, 1);
    ck_assert_int_eq(pd_close(&s), 0);

    s = tu_codec_file(dir, PD_FILE_FSYNC, "zstd", PD_LEVEL_DEFAULT);
    g_fsyncs = 0;
    TU_OK(pd_append(s, 3, keys + 3, vals, 0), s); /* c3 c4 c5 */
    ck_assert_int_ge(g_fsyncs, 3);
    ck_assert_int_eq(pd_close(&s), 0);
    pd__sys_reset();
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* Kills while appending with PD_FSYNC: acknowledged batches are there.
 * (A process kill leaves the page cache intact, so this checks the path,
 * not the disk: power loss cannot be simulated here.) */
START_TEST(kill_rounds_fsync) {
    bool vg = tu_under_valgrind();
    g_maxval = vg ? (size_t)32 << 10 : (size_t)256 << 10;
    int rounds = vg ? 2 : 8;
    s_model m = {1, NULL, 0, s_seed(), "zlib"};
    srand(m.seed);
    char *dir = s_new_store();
    unsigned char *scratch = malloc((size_t)1 << 20);
    for (int round = 0; round < rounds; round++) {
        s_round(&m, dir, round % 2 == 1, PD_FSYNC);
        s_verify(&m, dir, round == rounds - 1, scratch);
    }
    free(scratch);
    free(m.state);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"kill_rounds", kill_rounds, 2},
        {"fsync_reaches_the_file", fsync_reaches_the_file},
        {"kill_rounds_fsync", kill_rounds_fsync},
    };
    return TU_RUN_CASES("test_crash_kill", cases, 300, 0);
}
