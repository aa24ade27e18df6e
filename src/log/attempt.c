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
#include "log/attempt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

struct lg_att *lg_att_state(lg_store *l) {
    if (!l->att) l->att = calloc(1, sizeof *l->att);
    return l->att;
}

/* A packed key, printable, for messages. */
const char *lg_pkshort(const unsigned char *pk, size_t len,
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

static int s_tags_ent(void *arg, const lg_hdr *h, const lg_ent *e) {
    (void)h;
    lg_tags *t = arg;
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
int lg_tags_get(const lg_hdr *h, const unsigned char *table, lg_tags *t) {
    memset(t, 0, sizeof *t);
    int rc = lg_table_walk(h, table, s_tags_ent, t);
    size_t want = h->type == LG_COMMIT ? 32 : 16;
    if (rc != 1 || t->taglen != want) return -1;
    return 0;
}

/* --------------------------------------------------------------- Pins */

static lg_pin *s_pin_find(struct lg_att *a, uint64_t id) {
    for (size_t i = 0; i < a->npins; i++)
        if (a->pins[i].id == id) return &a->pins[i];
    return NULL;
}

static void s_pin_remove(struct lg_att *a, lg_pin *p) {
    if (p->id == a->cur_pin) a->cur_pin = 0;
    *p = a->pins[--a->npins];
}

int lg_att_retire(lg_store *l) {
    struct lg_att *a = l->att;
    if (!a) return 0;
    int keep = a->cur_has ? 1 : 0;
    lg_pin *p = a->cur_pin ? s_pin_find(a, a->cur_pin) : NULL;
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
        a->pins[a->npins++] = (lg_pin){a->cur_pin, -1, 0};
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
            lg_pin *p = s_pin_find(a, at->pins[i]);
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
    lg_won_clear(a);
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

/* ---------------------------------------------------------------- Begin */

static int s_conflict(lg_store *l, const lg_won *w, const unsigned char *wpk,
                      size_t wlen, uint64_t attempt, const char *op,
                      bool at_begin) {
    char kb[PD__KEYSHORT_MAX];
    return pd__err(&l->base, PD_ERR_CONFLICT, 0,
                   "%s: writer %s attempt %llu: attempt %llu of this writer "
                   "has committed already%s",
                   op, lg_pkshort(wpk, wlen, kb), (unsigned long long)attempt,
                   (unsigned long long)w->attempt,
                   at_begin ? "" : " (this attempt's data is discarded)");
}

/* Whether writer (packed) has a commit: 0 no, PD_ERR_CONFLICT (message
 * set), or an error. */
static int s_check_won(lg_store *l, const unsigned char *wpk, size_t wlen,
                       uint64_t attempt, const char *op) {
    int fd = -1;
    int rc = lg_cl_open(l, false, &fd, op);
    if (rc == 1) return 0;
    if (rc) return rc;
    rc = lg_cl_scan(l, fd, op);
    SYS.close(fd);
    if (rc) return rc;
    lg_won *w = lg_won_find(l->att, wpk, wlen);
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
    if (!at || !lg_att_state(l)) {
        free(at);
        return s_leave(l, took,
                       pd__err(s, PD_ERR_NOMEM, ENOMEM, "attempt begin"));
    }
    pd__key_pack(writer, at->wpk);
    at->wlen = wlen;
    at->attempt = attempt;
    at->pid = pd__getpid();
    rc = lg_upgrade(l, "attempt begin");
    if (rc == 0) rc = s_check_won(l, at->wpk, wlen, attempt, "attempt begin");
    if (rc) {
        free(at);
        return s_leave(l, took, rc);
    }
    rc = lg_next_seq(l, "attempt begin", &at->inst);
    if (rc) {
        free(at);
        return s_leave(l, took, rc);
    }
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
    if (!lg_att_state(l) || s_pin_reserve(l->att, at)) {
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "attempt append %s",
                     pd__key_short(&keys[0], kb));
        return s_leave(l, took, rc);
    }
    uint64_t seq;
    rc = lg_next_seq(l, "attempt append", &seq);
    if (rc) return s_leave(l, took, rc);
    /* Built and written as a plain append is (the values uncopied), its
     * table led by the writer and the tag. */
    unsigned char tag[16];
    lg_put64(tag, at->attempt);
    lg_put64(tag + 8, at->inst);
    lg_att_tag t = {at->wpk, tag, at->wlen, sizeof tag};
    rc = lg_rec_build_tagged(&l->rec, &l->wiov, &l->plan, LG_ATTEMPT, seq, &t,
                             n, keys, vals);
    lg_hdr h;
    if (rc == 0 && lg_hdr_parse(l->rec.p, &h)) rc = PD_ERR_LIMIT;
    if (rc)
        rc = pd__err(s, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                     "attempt append %s: a record of %zu keys",
                     pd__key_short(&keys[0], kb), n);
    else
        rc = lg_write_iov(l, "attempt append", &keys[0], flags & PD_FSYNC,
                          &l->wiov);
    lg_plan_done(&l->plan, n, &l->rec, &l->wiov);
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
        const lg_pin *p = s_pin_find(a, at->pins[i]);
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
    int rc = lg_cl_open(l, true, &fd, op);
    if (rc) return rc;
    rc = lg_cl_scan(l, fd, op);
    const lg_won *won = rc ? NULL : lg_won_find(l->att, at->wpk, at->wlen);
    if (won) rc = s_conflict(l, won, at->wpk, at->wlen, at->attempt, op, false);
    if (rc == 0 && dosync) rc = s_sync_data(l, at, op);
    uint64_t seq = 0;
    if (rc == 0) rc = lg_next_seq(l, op, &seq);
    if (rc == 0) {
        unsigned char tag[32];
        lg_put64(tag, at->attempt);
        lg_put64(tag + 8, at->inst);
        lg_put64(tag + 16, at->nrecs);
        lg_put64(tag + 24, at->nbytes);
        /* No data: the whole record lands in l->rec. */
        lg_att_tag t = {at->wpk, tag, at->wlen, sizeof tag};
        rc = lg_rec_build_tagged(&l->rec, &l->wiov, &l->plan, LG_COMMIT, seq,
                                 &t, 0, NULL, NULL);
        if (rc)
            rc = pd__err(&l->base, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                         "%s: writer %s: commit record", op,
                         lg_pkshort(at->wpk, at->wlen, kb));
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
                             op, lg_pkshort(at->wpk, at->wlen, kb), l->path,
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
        if (lg_won_add(l->att, at->wpk, at->wlen, at->attempt))
            lg_won_clear(l->att); /* read again at the next commit */
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
    if (rc == 0 && !lg_att_state(l))
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "attempt commit");
    if (rc == 0) rc = s_commit(l, at, (flags & PD_FSYNC) || l->fsync_all);
    s_end(l, at);
    return s_leave(l, took, rc);
}

int lg_att_abort(pd_store *s, void *impl) {
    s_end((lg_store *)s, impl);
    return 0;
}
