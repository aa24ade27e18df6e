/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: attempts (partd.h, "Attempts"; docs/log-format.md, "Attempts").
 *
 * An attempt's appends are LG_ATTEMPT records in the handle's own segment:
 * an append record whose key table starts with two extra entries, the
 * writer and a tag (attempt number, instance).  The instance is a sequence
 * number drawn at begin, unique in the store, so two begins of one (writer,
 * attempt) never mix.  Readers keep such records aside (pending) and apply
 * them only when an LG_COMMIT record naming the instance appears in the
 * commit log `commits`: then each of its records is applied in append order
 * as if written at the commit's sequence number.  The commit log is written
 * only under its own flock(LOCK_EX): a committer reads the commits it has
 * not seen yet, refuses the commit if the writer has one (first commit
 * wins), and appends one record.  A torn commit record (a committer killed
 * mid-write) is cut by the next committer.
 *
 * Compaction copies committed data like any other and never an open
 * attempt's records: those stay in their writer segment, which the writer
 * keeps open and locked (a pin) while an attempt with records in it is open,
 * even after moving to a new segment, so compaction does not remove it.  A
 * segment that held attempt records is left on disk when its writer moves
 * on (a commit after the compaction may still need them); the next
 * compaction removes it.
 */
#include "log/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>
#include "core/hash.h"

/* ------------------------------------------------------------ The state */

typedef struct s_pin { /* a segment holding an open attempt's records */
    uint64_t id;
    int fd; /* -1 while it is the current segment (l->wfd) */
    unsigned refs;
} s_pin;

typedef struct s_prec { /* a pending attempt record, as a reader found it */
    uint32_t seg;
    bool applied;
    uint64_t off;
    lg_hdr h;
    unsigned char *table;
} s_prec;

typedef struct s_pend { /* a reader's view of one instance */
    UT_hash_handle hh;
    uint64_t inst;
    s_prec *r;
    size_t n, cap;
    uint64_t bytes;
    bool committed;
    uint64_t cseq, cnrecs, cbytes;
    uint32_t cseg;
    uint64_t coff;
} s_pend;

typedef struct s_won { /* a committer's view: writer -> winning attempt */
    UT_hash_handle hh;
    uint64_t attempt;
    size_t len;
    unsigned char pk[];
} s_won;

struct lg_att {
    /* writer */
    s_pin *pins;
    size_t npins, cappins;
    uint64_t pin_ids;
    uint64_t cur_pin; /* pin of the current segment, 0: none */
    bool cur_has;     /* the current segment holds attempt records */
    bool v2;          /* the marker says version 2 */
    /* committer */
    s_won *won;
    uint64_t cl_off, cl_gen;
    dev_t cl_dev;
    ino_t cl_ino;
    /* reader */
    s_pend *pend;
};

typedef struct lg_attempt { /* the ops' impl */
    pid_t pid;
    uint64_t attempt, inst, nrecs, nbytes;
    uint64_t *pins;
    size_t npins, cappins;
    size_t wlen;
    unsigned char wpk[];
} lg_attempt;

static void s_put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t s_get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static size_t s_pad8(size_t n) { return (n + 7) & ~(size_t)7; }

static struct lg_att *s_att(lg_store *l) {
    if (!l->att) l->att = calloc(1, sizeof *l->att);
    return l->att;
}

/* A packed key, printable, for messages. */
static const char *s_pkshort(const unsigned char *pk, size_t len,
                             char kb[PD__KEYSHORT_MAX]) {
    pd_key k;
    pd_bytes parts[PD_KEY_MAX_PARTS];
    if (pd__key_unpack(pk, len, &k, parts)) return "(bad key)";
    return pd__key_short(&k, kb);
}

/* The op's .lock: as log.c's ops take it (shared, or the session's). */
static int s_enter(lg_store *l, bool *took) {
    *took = false;
    int rc = lg_check_fork(l);
    if (rc) return rc;
    if (l->flock_mode) return 0;
    *took = true;
    return lg_flock(l, LOCK_SH);
}

static int s_leave(lg_store *l, bool took, int rc) {
    if (took && l->flock_mode) {
        int urc = lg_flock(l, LOCK_UN);
        if (!rc) rc = urc;
    }
    return rc;
}

/* -------------------------------------------------------------- Records */

/* Inserts two entries (the writer, then the tag as a flat key), both with
 * no data, at the start of the table of the record in b, whose header is h
 * (type and seq are taken from it).  0 or PD_ERR_NOMEM / PD_ERR_LIMIT. */
static int s_prefix(pd__buf *b, lg_hdr h, const unsigned char *wpk, size_t wlen,
                    const unsigned char *tag, size_t taglen) {
    size_t e1 = LG_ENT + s_pad8(wlen), e2 = LG_ENT + s_pad8(1 + taglen);
    size_t extra = e1 + e2;
    if (h.nkeys + 2u > LG_MAX_KEYS || h.table_len + extra > LG_MAX_TABLE)
        return PD_ERR_LIMIT;
    if (pd__buf_reserve(b, extra)) return PD_ERR_NOMEM;
    unsigned char *p = b->p;
    memmove(p + LG_HDR + extra, p + LG_HDR, b->len - LG_HDR);
    unsigned char *t = p + LG_HDR;
    memset(t, 0, extra);
    uint64_t h0 = XXH3_64bits("", 0);
    t[0] = (unsigned char)wlen;
    t[1] = (unsigned char)(wlen >> 8);
    t[2] = (unsigned char)(wlen >> 16);
    t[3] = (unsigned char)(wlen >> 24);
    s_put64(t + 16, h0);
    memcpy(t + LG_ENT, wpk, wlen);
    t += e1;
    t[0] = (unsigned char)(1 + taglen);
    s_put64(t + 16, h0);
    t[LG_ENT] = 0; /* a flat key */
    memcpy(t + LG_ENT + 1, tag, taglen);
    h.nkeys += 2;
    h.table_len += (uint32_t)extra;
    h.table_hash = XXH3_64bits(p + LG_HDR, h.table_len);
    b->len += extra;
    lg_hdr_write(&h, p);
    memcpy(p + b->len - LG_HDR, p, LG_HDR);
    p[b->len] = 0;
    return 0;
}

/* The writer and the tag of an attempt or commit record's table (checked
 * by lg_table_walk already). */
typedef struct s_tags {
    const unsigned char *wpk, *tag;
    uint32_t wlen, taglen;
    int n;
} s_tags;

static int s_tags_ent(void *arg, const lg_hdr *h, const lg_ent *e) {
    (void)h;
    s_tags *t = arg;
    if (e->vlen) return -1;
    if (t->n++ == 0) {
        t->wpk = e->pk;
        t->wlen = e->pklen;
        return 0;
    }
    if (e->pk[0] != 0) return -1; /* the tag is a flat key */
    t->tag = e->pk + 1;
    t->taglen = e->pklen - 1;
    return 1;
}

/* 0, or -1 when the tags are malformed. */
static int s_tags_get(const lg_hdr *h, const unsigned char *table, s_tags *t) {
    memset(t, 0, sizeof *t);
    int rc = lg_table_walk(h, table, s_tags_ent, t);
    size_t want = h->type == LG_COMMIT ? 32 : 16;
    if (rc != 1 || t->taglen != want) return -1;
    return 0;
}

/* ------------------------------------------------------------- Readers */

static void s_pend_free(lg_store *l, s_pend *p) {
    HASH_DEL(l->att->pend, p);
    for (size_t i = 0; i < p->n; i++) free(p->r[i].table);
    free(p->r);
    free(p);
}

static void s_damage(lg_store *l, uint32_t seg, uint64_t off, const char *why) {
    if (l->ndamaged++ == 0)
        snprintf(l->damage, sizeof l->damage,
                 "%s/%s has a damaged region at offset %llu (%s) whose keys "
                 "are unknown",
                 l->path, l->segs[seg].name, (unsigned long long)off, why);
}

/* Applies a committed instance once all its records are known. */
static int s_try_apply(lg_store *l, s_pend *p) {
    if (!p->committed || p->n < p->cnrecs) return 0;
    if (p->n > p->cnrecs || p->bytes != p->cbytes) {
        s_damage(l, p->cseg, p->coff,
                 "a commit that does not match its attempt's records");
        s_pend_free(l, p);
        return 0;
    }
    for (size_t i = 0; i < p->n; i++) {
        s_prec *r = &p->r[i];
        if (r->applied) continue;
        lg_hdr h = r->h;
        h.type = LG_APPEND;
        h.seq = p->cseq;
        int rc = lg_index_apply(l, r->seg, r->off, &h, r->table, 2);
        if (rc) return rc;
        r->applied = true;
    }
    s_pend_free(l, p);
    return 0;
}

static s_pend *s_pend_get(lg_store *l, uint64_t inst) {
    s_pend *p = NULL;
    HASH_FIND(hh, l->att->pend, &inst, sizeof inst, p);
    if (p) return p;
    p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->inst = inst;
    HASH_ADD(hh, l->att->pend, inst, sizeof inst, p);
    if (!p->hh.tbl) {
        free(p);
        return NULL;
    }
    return p;
}

int lg_att_index(lg_store *l, uint32_t seg, uint64_t off, const lg_hdr *h,
                 const unsigned char *table) {
    if (h->type == LG_COMMIT &&
        (h->seq <= l->base_seq || !l->segs[seg].commits))
        return 0; /* compacted already (or not where commits go) */
    if (h->type == LG_ATTEMPT && l->segs[seg].commits) return 0;
    s_tags t;
    if (s_tags_get(h, table, &t)) return PD_ERR_CORRUPT;
    if (!s_att(l)) return PD_ERR_NOMEM;
    uint64_t inst = s_get64(t.tag + 8);
    s_pend *p = s_pend_get(l, inst);
    if (!p) return PD_ERR_NOMEM;
    if (h->type == LG_COMMIT) {
        if (p->committed) return 0; /* seen already */
        p->committed = true;
        p->cseq = h->seq;
        p->cnrecs = s_get64(t.tag + 16);
        p->cbytes = s_get64(t.tag + 24);
        p->cseg = seg;
        p->coff = off;
        return s_try_apply(l, p);
    }
    for (size_t i = 0; i < p->n; i++)
        if (p->r[i].seg == seg && p->r[i].off == off) return 0; /* again */
    if (pd__grow((void **)&p->r, &p->cap, p->n + 1, sizeof *p->r))
        return PD_ERR_NOMEM;
    unsigned char *tb = malloc(h->table_len);
    if (!tb) return PD_ERR_NOMEM;
    memcpy(tb, table, h->table_len);
    /* In append (sequence) order. */
    size_t i = p->n;
    while (i > 0 && p->r[i - 1].h.seq > h->seq) i--;
    memmove(&p->r[i + 1], &p->r[i], (p->n - i) * sizeof *p->r);
    p->r[i] = (s_prec){seg, false, off, *h, tb};
    p->n++;
    p->bytes += h->data_len;
    return s_try_apply(l, p);
}

void lg_att_reset(lg_store *l) {
    if (!l->att) return;
    s_pend *p, *tmp;
    HASH_ITER(hh, l->att->pend, p, tmp) s_pend_free(l, p);
}

/* --------------------------------------------------------------- Pins */

static s_pin *s_pin_find(struct lg_att *a, uint64_t id) {
    for (size_t i = 0; i < a->npins; i++)
        if (a->pins[i].id == id) return &a->pins[i];
    return NULL;
}

static void s_pin_remove(struct lg_att *a, s_pin *p) {
    if (p->id == a->cur_pin) a->cur_pin = 0;
    *p = a->pins[--a->npins];
}

int lg_att_retire(lg_store *l) {
    struct lg_att *a = l->att;
    if (!a) return 0;
    int keep = a->cur_has ? 1 : 0;
    s_pin *p = a->cur_pin ? s_pin_find(a, a->cur_pin) : NULL;
    if (p && p->refs) {
        p->fd = l->wfd;
        keep = 2;
    } else if (p) {
        s_pin_remove(a, p);
    }
    a->cur_pin = 0;
    a->cur_has = false;
    return keep;
}

/* Room for one more pin, in the store and in the attempt. */
static int s_pin_reserve(struct lg_att *a, lg_attempt *at) {
    if (pd__grow((void **)&a->pins, &a->cappins, a->npins + 1, sizeof *a->pins))
        return PD_ERR_NOMEM;
    if (pd__grow((void **)&at->pins, &at->cappins, at->npins + 1,
                 sizeof *at->pins))
        return PD_ERR_NOMEM;
    return 0;
}

/* The current segment now holds a record of `at` (room reserved). */
static void s_pin_cur(struct lg_att *a, lg_attempt *at) {
    a->cur_has = true;
    if (!a->cur_pin) {
        a->cur_pin = ++a->pin_ids;
        a->pins[a->npins++] = (s_pin){a->cur_pin, -1, 0};
    }
    for (size_t i = 0; i < at->npins; i++)
        if (at->pins[i] == a->cur_pin) return;
    at->pins[at->npins++] = a->cur_pin;
    s_pin_find(a, a->cur_pin)->refs++;
}

/* The attempt ended: its segments are released, it is freed. */
static void s_end(lg_store *l, lg_attempt *at) {
    struct lg_att *a = l->att;
    if (a && at->pid == pd__getpid()) {
        for (size_t i = 0; i < at->npins; i++) {
            s_pin *p = s_pin_find(a, at->pins[i]);
            if (!p || --p->refs) continue;
            if (p->fd >= 0) SYS.close(p->fd); /* compaction may take it */
            s_pin_remove(a, p);
        }
    }
    free(at->pins);
    free(at);
}

void lg_att_fork(lg_store *l) {
    struct lg_att *a = l->att;
    if (!a) return;
    for (size_t i = 0; i < a->npins; i++)
        if (a->pins[i].fd >= 0) close(a->pins[i].fd); /* the parent's */
    a->npins = 0;
    a->cur_pin = 0;
    a->cur_has = false;
    s_won *w, *tmp;
    HASH_ITER(hh, a->won, w, tmp) {
        HASH_DEL(a->won, w);
        free(w);
    }
    a->cl_off = 0;
}

void lg_att_free(lg_store *l) {
    struct lg_att *a = l->att;
    if (!a) return;
    lg_att_reset(l);
    lg_att_fork(l); /* closes the pins, empties the table */
    free(a->pins);
    free(a);
    l->att = NULL;
}

/* --------------------------------------------------------- Commit log */

static void s_won_clear(struct lg_att *a) {
    s_won *w, *tmp;
    HASH_ITER(hh, a->won, w, tmp) {
        HASH_DEL(a->won, w);
        free(w);
    }
    a->cl_off = 0;
}

void lg_att_dropped(lg_store *l) {
    SYS.unlinkat(l->dirfd, LG_COMMITS, 0);
    if (l->att) s_won_clear(l->att);
}

static s_won *s_won_find(struct lg_att *a, const unsigned char *pk,
                         size_t len) {
    s_won *w = NULL;
    HASH_FIND(hh, a->won, pk, len, w);
    return w;
}

static int s_won_add(struct lg_att *a, const unsigned char *pk, size_t len,
                     uint64_t attempt) {
    if (s_won_find(a, pk, len)) return 0; /* the first one won */
    s_won *w = malloc(sizeof *w + len);
    if (!w) return PD_ERR_NOMEM;
    w->attempt = attempt;
    w->len = len;
    memcpy(w->pk, pk, len);
    HASH_ADD_KEYPTR(hh, a->won, w->pk, w->len, w);
    if (!w->hh.tbl) {
        free(w);
        return PD_ERR_NOMEM;
    }
    return 0;
}

static int s_pread_all(int fd, void *buf, size_t n, uint64_t off);

/* A whole, valid commit record at p[0..n)?  Its length, or 0. */
static uint64_t s_valid_commit(const unsigned char *p, uint64_t n) {
    lg_hdr h;
    if (n < 2 * LG_HDR || lg_hdr_parse(p, &h) || h.type != LG_COMMIT ||
        lg_rec_len(&h) > n)
        return 0;
    s_tags t;
    uint64_t len = lg_rec_len(&h);
    if (XXH3_64bits(p + LG_HDR, h.table_len) != h.table_hash ||
        memcmp(p, p + len - LG_HDR, LG_HDR) != 0 ||
        s_tags_get(&h, p + LG_HDR, &t))
        return 0;
    return len;
}

int lg_att_salvage(lg_store *l, const char *op) {
    int fd = SYS.openat(l->dirfd, LG_COMMITS, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct stat st;
    unsigned char *p = NULL, *q = NULL;
    int rc = 0;
    if (SYS.fstat(fd, &st) < 0) {
        rc = pd__err(&l->base, PD_ERR_IO, errno, "%s: fstat(%s/%s)", op,
                     l->path, LG_COMMITS);
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size, kept = 0;
    p = malloc(size ? size : 1);
    q = malloc(size ? size : 1);
    if (!p || !q) {
        rc = pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: %s/%s", op, l->path,
                     LG_COMMITS);
        goto out;
    }
    if (s_pread_all(fd, p, size, 0)) {
        rc = pd__err(&l->base, PD_ERR_IO, errno, "%s: read %s/%s", op, l->path,
                     LG_COMMITS);
        goto out;
    }
    for (uint64_t at = 0; at < size;) {
        uint64_t len = s_valid_commit(p + at, size - at);
        if (!len) {
            at++;
            continue;
        }
        memcpy(q + kept, p + at, len);
        kept += len;
        at += len;
    }
    if (kept == size) goto out; /* nothing damaged */
    SYS.close(fd);
    fd =
        SYS.openat(l->dirfd, LG_COMMITS ".tmp",
                   O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
    bool ok = fd >= 0 &&
              (kept == 0 || SYS.write(fd, q, kept) == (ssize_t)kept) &&
              SYS.fsync(fd) == 0;
    int e = errno;
    if (ok &&
        SYS.renameat(l->dirfd, LG_COMMITS ".tmp", l->dirfd, LG_COMMITS) < 0) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        SYS.unlinkat(l->dirfd, LG_COMMITS ".tmp", 0);
        rc = pd__err(&l->base, PD_ERR_IO, e, "%s: rewrite %s/%s", op, l->path,
                     LG_COMMITS);
    } else {
        SYS.fsync(l->dirfd);
        if (l->att) s_won_clear(l->att);
        __atomic_add_fetch(&l->sh->created, 1, __ATOMIC_SEQ_CST);
    }
out:
    if (fd >= 0) SYS.close(fd);
    free(p);
    free(q);
    return rc;
}

static int s_pread_all(int fd, void *buf, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r =
            SYS.pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return 1;
        done += (size_t)r;
    }
    return 0;
}

/* Reads the commits not seen yet from the commit log (fd, locked
 * exclusively) into the table of winners; a torn tail is cut. */
static int s_cl_scan(lg_store *l, int fd, const char *op) {
    struct lg_att *a = l->att;
    struct stat st;
    if (SYS.fstat(fd, &st) < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s: fstat(%s/%s)", op,
                       l->path, LG_COMMITS);
    uint64_t gen = __atomic_load_n(&l->sh->gen, __ATOMIC_SEQ_CST);
    uint64_t size = (uint64_t)st.st_size;
    if (gen != a->cl_gen || st.st_ino != a->cl_ino || st.st_dev != a->cl_dev ||
        size < a->cl_off) {
        s_won_clear(a);
        a->cl_gen = gen;
        a->cl_ino = st.st_ino;
        a->cl_dev = st.st_dev;
    }
    uint64_t at = a->cl_off;
    pd__buf_clear(&l->rbuf);
    while (at < size) {
        unsigned char hb[LG_HDR];
        lg_hdr h;
        int rc = size - at < LG_HDR ? 1 : s_pread_all(fd, hb, LG_HDR, at);
        if (rc < 0)
            return pd__err(&l->base, PD_ERR_IO, errno, "%s: pread(%s/%s)", op,
                           l->path, LG_COMMITS);
        bool torn = rc == 1;
        if (!torn) {
            if (lg_hdr_parse(hb, &h) || h.type != LG_COMMIT)
                return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                               "%s: %s/%s: bad commit record at offset %llu "
                               "(pd_log_compact with PD_LOG_SALVAGE drops it)",
                               op, l->path, LG_COMMITS, (unsigned long long)at);
            torn = at + lg_rec_len(&h) > size;
        }
        if (torn) {
            /* A committer died mid-write: its commit never returned. */
            if (SYS.ftruncate(fd, (off_t)at) < 0)
                return pd__err(&l->base, PD_ERR_IO, errno,
                               "%s: cut the torn tail of %s/%s at %llu", op,
                               l->path, LG_COMMITS, (unsigned long long)at);
            l->torn++;
            snprintf(l->notice, sizeof l->notice,
                     "log: cut a torn commit record of %llu bytes at offset "
                     "%llu of %s/%s (its committer is gone)",
                     (unsigned long long)(size - at), (unsigned long long)at,
                     l->path, LG_COMMITS);
            size = at;
            break;
        }
        pd__buf_clear(&l->rbuf);
        if (pd__buf_reserve(&l->rbuf, h.table_len))
            return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: commit log",
                           op);
        rc = s_pread_all(fd, l->rbuf.p, h.table_len, at + LG_HDR);
        if (rc)
            return pd__err(&l->base, PD_ERR_IO, rc < 0 ? errno : EIO,
                           "%s: pread(%s/%s)", op, l->path, LG_COMMITS);
        s_tags t;
        if (XXH3_64bits(l->rbuf.p, h.table_len) != h.table_hash ||
            s_tags_get(&h, l->rbuf.p, &t))
            return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                           "%s: %s/%s: bad commit record at offset %llu "
                           "(pd_log_compact with PD_LOG_SALVAGE drops it)",
                           op, l->path, LG_COMMITS, (unsigned long long)at);
        if (s_won_add(a, t.wpk, t.wlen, s_get64(t.tag)))
            return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: commit log",
                           op);
        at += lg_rec_len(&h);
    }
    a->cl_off = at;
    return 0;
}

/* Opens the commit log and locks it exclusively: 0, 1 when it does not
 * exist (create false), or an error. */
static int s_cl_open(lg_store *l, bool create, int *fdp, const char *op) {
    int fd = SYS.openat(l->dirfd, LG_COMMITS,
                        O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0 && errno == ENOENT && create) {
        fd = SYS.openat(l->dirfd, LG_COMMITS,
                        O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC |
                            O_NOFOLLOW,
                        0666);
        if (fd >= 0) /* readers list the directory again */
            __atomic_add_fetch(&l->sh->created, 1, __ATOMIC_SEQ_CST);
        else if (errno == EEXIST)
            fd = SYS.openat(l->dirfd, LG_COMMITS,
                            O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0);
    }
    if (fd < 0 && errno == ENOENT && !create) return 1;
    if (fd < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s: open %s/%s", op,
                       l->path, LG_COMMITS);
    int rc;
    do rc = SYS.flock(fd, LOCK_EX);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        int e = errno;
        SYS.close(fd);
        return pd__err(&l->base, PD_ERR_IO, e, "%s: flock(%s/%s)", op, l->path,
                       LG_COMMITS);
    }
    *fdp = fd;
    return 0;
}

/* ---------------------------------------------------------------- Begin */

/* Format version 2 in the marker before the first attempt record, so a
 * library that only knows version 1 refuses the store instead of reading
 * attempt records as damage. */
static int s_upgrade(lg_store *l, const char *op) {
    struct lg_att *a = l->att;
    if (a->v2) return 0;
    for (int pass = 0; pass < 2; pass++) {
        unsigned char m[LG_MARKER_SIZE];
        int fd = SYS.openat(l->dirfd, LG_MARKER, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
            return pd__err(&l->base, PD_ERR_IO, errno, "%s: open %s/%s", op,
                           l->path, LG_MARKER);
        int rc = s_pread_all(fd, m, sizeof m, 0);
        SYS.close(fd);
        if (rc)
            return pd__err(&l->base, rc < 0 ? PD_ERR_IO : PD_ERR_CORRUPT,
                           rc < 0 ? errno : 0, "%s: read %s/%s", op, l->path,
                           LG_MARKER);
        if (m[8] >= 2) {
            a->v2 = true;
            return 0;
        }
        if (pass == 0) {
            rc = lg_flock(l, LOCK_EX); /* then read it again */
            if (rc) return rc;
            continue;
        }
        m[8] = 2;
        fd = SYS.openat(l->dirfd, LG_MARKER ".tmp",
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                        0666);
        bool ok = fd >= 0 && SYS.write(fd, m, sizeof m) == (ssize_t)sizeof m &&
                  SYS.fsync(fd) == 0;
        int e = errno;
        if (fd >= 0) SYS.close(fd);
        if (ok &&
            SYS.renameat(l->dirfd, LG_MARKER ".tmp", l->dirfd, LG_MARKER) < 0) {
            ok = false;
            e = errno;
        }
        if (!ok) {
            SYS.unlinkat(l->dirfd, LG_MARKER ".tmp", 0);
            return pd__err(&l->base, PD_ERR_IO, e,
                           "%s: write %s/%s (format version 2)", op, l->path,
                           LG_MARKER);
        }
        SYS.fsync(l->dirfd);
        a->v2 = true;
    }
    return 0;
}

static int s_conflict(lg_store *l, const s_won *w, const unsigned char *wpk,
                      size_t wlen, uint64_t attempt, const char *op,
                      bool at_begin) {
    char kb[PD__KEYSHORT_MAX];
    return pd__err(&l->base, PD_ERR_CONFLICT, 0,
                   "%s: writer %s attempt %llu: attempt %llu of this writer "
                   "has committed already%s",
                   op, s_pkshort(wpk, wlen, kb), (unsigned long long)attempt,
                   (unsigned long long)w->attempt,
                   at_begin ? "" : " (this attempt's data is discarded)");
}

/* Whether writer (packed) has a commit: 0 no, PD_ERR_CONFLICT (message
 * set), or an error. */
static int s_check_won(lg_store *l, const unsigned char *wpk, size_t wlen,
                       uint64_t attempt, const char *op) {
    int fd = -1;
    int rc = s_cl_open(l, false, &fd, op);
    if (rc == 1) return 0;
    if (rc) return rc;
    rc = s_cl_scan(l, fd, op);
    SYS.close(fd);
    if (rc) return rc;
    s_won *w = s_won_find(l->att, wpk, wlen);
    return w ? s_conflict(l, w, wpk, wlen, attempt, op, true) : 0;
}

int lg_att_begin(pd_store *s, const pd_key *writer, uint64_t attempt,
                 void **impl, unsigned flags) {
    (void)flags;
    lg_store *l = (lg_store *)s;
    bool took;
    int rc = s_enter(l, &took);
    if (rc) return rc;
    size_t wlen = pd__key_packed_size(writer);
    lg_attempt *at = calloc(1, sizeof *at + wlen);
    if (!at || !s_att(l)) {
        free(at);
        return s_leave(l, took,
                       pd__err(s, PD_ERR_NOMEM, ENOMEM, "attempt begin"));
    }
    pd__key_pack(writer, at->wpk);
    at->wlen = wlen;
    at->attempt = attempt;
    at->pid = pd__getpid();
    rc = s_upgrade(l, "attempt begin");
    if (rc == 0) rc = s_check_won(l, at->wpk, wlen, attempt, "attempt begin");
    if (rc) {
        free(at);
        return s_leave(l, took, rc);
    }
    at->inst = lg_next_seq(l);
    *impl = at;
    return s_leave(l, took, 0);
}

/* --------------------------------------------------------------- Append */

int lg_att_append(pd_store *s, void *impl, size_t n, const pd_key *keys,
                  const pd_bytes *vals, unsigned flags) {
    lg_store *l = (lg_store *)s;
    lg_attempt *at = impl;
    bool took;
    int rc = s_enter(l, &took);
    if (rc) return rc;
    char kb[PD__KEYSHORT_MAX];
    if (!s_att(l) || s_pin_reserve(l->att, at)) {
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "attempt append %s",
                     pd__key_short(&keys[0], kb));
        return s_leave(l, took, rc);
    }
    lg_hdr h;
    rc = lg_rec_build(&l->rec, LG_APPEND, lg_next_seq(l), n, keys, vals);
    if (rc == 0 && lg_hdr_parse(l->rec.p, &h)) rc = PD_ERR_LIMIT;
    if (rc == 0) {
        unsigned char tag[16];
        s_put64(tag, at->attempt);
        s_put64(tag + 8, at->inst);
        h.type = LG_ATTEMPT;
        rc = s_prefix(&l->rec, h, at->wpk, at->wlen, tag, sizeof tag);
    }
    if (rc) {
        rc = pd__err(s, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                     "attempt append %s: a record of %zu keys",
                     pd__key_short(&keys[0], kb), n);
        return s_leave(l, took, rc);
    }
    rc = lg_write_rec(l, "attempt append", &keys[0], flags & PD_FSYNC);
    if (rc == 0) {
        at->nrecs++;
        at->nbytes += h.data_len;
        s_pin_cur(l->att, at);
    }
    return s_leave(l, took, rc);
}

/* ------------------------------------------------------- Commit, abort */

static int s_fsync(lg_store *l, int fd, const char *op, const char *what) {
    int rc;
    do rc = SYS.fsync(fd);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s: fsync(%s/%s)", op,
                       l->path, what);
    return 0;
}

/* fsyncs every segment holding the attempt's records, and the directory. */
static int s_sync_data(lg_store *l, const lg_attempt *at, const char *op) {
    struct lg_att *a = l->att;
    for (size_t i = 0; i < at->npins; i++) {
        const s_pin *p = s_pin_find(a, at->pins[i]);
        int fd = !p ? -1 : p->fd >= 0 ? p->fd : l->wfd;
        if (fd < 0) continue;
        int rc = s_fsync(l, fd, op, "segment");
        if (rc) return rc;
    }
    return s_fsync(l, l->dirfd, op, ".");
}

static int s_commit(lg_store *l, lg_attempt *at, bool dosync) {
    const char *op = "attempt commit";
    char kb[PD__KEYSHORT_MAX];
    int fd = -1;
    int rc = s_cl_open(l, true, &fd, op);
    if (rc) return rc;
    rc = s_cl_scan(l, fd, op);
    const s_won *won = rc ? NULL : s_won_find(l->att, at->wpk, at->wlen);
    if (won) rc = s_conflict(l, won, at->wpk, at->wlen, at->attempt, op, false);
    if (rc == 0 && dosync) rc = s_sync_data(l, at, op);
    if (rc == 0) {
        unsigned char tag[32];
        s_put64(tag, at->attempt);
        s_put64(tag + 8, at->inst);
        s_put64(tag + 16, at->nrecs);
        s_put64(tag + 24, at->nbytes);
        lg_hdr h = {LG_COMMIT, 0, 0, lg_next_seq(l), 0, 0};
        pd__buf_clear(&l->rec);
        if (pd__buf_reserve(&l->rec, 2 * LG_HDR)) {
            rc = PD_ERR_NOMEM;
        } else {
            l->rec.len = 2 * LG_HDR;
            rc = s_prefix(&l->rec, h, at->wpk, at->wlen, tag, sizeof tag);
        }
        if (rc)
            rc = pd__err(&l->base, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                         "%s: writer %s: commit record", op,
                         s_pkshort(at->wpk, at->wlen, kb));
    }
    uint64_t start = l->att->cl_off;
    if (rc == 0) {
        size_t done = 0;
        while (done < l->rec.len && rc == 0) {
            ssize_t w = SYS.write(fd, l->rec.p + done, l->rec.len - done);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                int e = w < 0 ? errno : EIO;
                rc = pd__err(&l->base, e == ENOMEM ? PD_ERR_NOMEM : PD_ERR_IO,
                             e, "%s: writer %s: write(%s/%s) at offset %llu",
                             op, s_pkshort(at->wpk, at->wlen, kb), l->path,
                             LG_COMMITS, (unsigned long long)start);
            } else {
                done += (size_t)w;
            }
        }
        if (rc == 0 && dosync) {
            rc = s_fsync(l, fd, op, LG_COMMITS);
            if (rc == 0) msync(l->sh, 4096, MS_SYNC);
        }
        if (rc) {
            /* Nothing of the commit stays (we hold the log's lock). */
            if (SYS.ftruncate(fd, (off_t)start) < 0) {
                /* A tail that the next committer cuts as torn. */
            }
            __atomic_add_fetch(&l->sh->writes, 1, __ATOMIC_SEQ_CST);
        }
    }
    if (rc == 0) {
        l->att->cl_off = start + l->rec.len;
        if (s_won_add(l->att, at->wpk, at->wlen, at->attempt))
            s_won_clear(l->att); /* read again at the next commit */
        __atomic_add_fetch(&l->sh->writes, 1, __ATOMIC_SEQ_CST);
    }
    SYS.close(fd);
    return rc;
}

int lg_att_commit(pd_store *s, void *impl, unsigned flags) {
    lg_store *l = (lg_store *)s;
    lg_attempt *at = impl;
    bool took;
    int rc = s_enter(l, &took);
    if (rc == 0 && !s_att(l))
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "attempt commit");
    if (rc == 0) rc = s_commit(l, at, (flags & PD_FSYNC) || l->fsync_all);
    s_end(l, at);
    return s_leave(l, took, rc);
}

int lg_att_abort(pd_store *s, void *impl) {
    s_end((lg_store *)s, impl);
    return 0;
}
