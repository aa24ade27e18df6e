/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: the reader.  Each handle keeps an index key -> extents (segment,
 * offset, length, sequence number, checksum), sorted by sequence number,
 * and before a get or keys catches up: it lists the directory when a
 * segment was created or a compaction happened (counters in the shared
 * state), then reads the new tail of every segment in large sequential
 * chunks, parsing headers and key tables (the data is skipped: it is read,
 * and checked, by gets); apply.c applies each record to the index.
 *
 * Incomplete records: a partial record at the end of a segment whose
 * writer still holds its flock is a write in progress (not visible yet); if
 * the writer is gone it is a torn record, left out and counted.  Damage: a
 * header that fails its checksum is resynchronised past (the next valid
 * header); if the trailer copy before it describes the whole region, the
 * record is recovered from it.  A region whose keys cannot be recovered
 * (a bad header with a bad trailer, or a bad key table) may hold any key's
 * data, so every get and keys fails with PD_ERR_CORRUPT naming it until a
 * salvaging compaction drops it (docs/log-format.md).
 */
#include "log/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define S_CHUNK (1u << 20)

int lg_seg_add(lg_store *l, const char *name, int fd, bool compacted) {
    if (pd__grow((void **)&l->segs, &l->capsegs, l->nsegs + 1, sizeof *l->segs))
        return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "segment table");
    char *nm = strdup(name);
    if (!nm) return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "segment table");
    lg_seg *s = &l->segs[l->nsegs];
    memset(s, 0, sizeof *s);
    s->name = nm;
    s->fd = fd;
    s->compacted = compacted;
    if (!strcmp(name, l->wname)) l->wseg = (uint32_t)l->nsegs;
    return (int)l->nsegs++;
}

void lg_index_reset(lg_store *l) {
    pd__knode *n = l->keys.head;
    while (n) {
        pd__knode *next = n->next;
        lg_key *k = (lg_key *)n;
        if (k->cap > LG_XPOOL_MAX) lg_ext_release(&l->xp, k);
        free(k);
        n = next;
    }
    pd__ktab_reset(&l->keys);
    lg_xpool_free(&l->xp); /* the other arrays */
    free(l->hint);         /* they point at the keys just freed */
    free(l->hnext);
    l->hint = l->hnext = NULL;
    l->nhint = l->caphint = 0;
    lg_win_reset(l);
    for (size_t i = 0; i < l->nsegs; i++) {
        if (l->segs[i].fd >= 0) SYS.close(l->segs[i].fd);
        free(l->segs[i].name);
    }
    l->nsegs = 0;
    l->wseg = UINT32_MAX;
    l->listed = false;
    l->base_seq = l->cgen = 0;
    l->rec_bytes = l->live_bytes = 0;
    l->ndamaged = 0;
    l->damage[0] = 0;
    lg_att_reset(l);
}

lg_key *lg_find(lg_store *l, const pd_key *key) {
    return (lg_key *)pd__ktab_find(&l->keys, key, pd__khash(key));
}

/* ------------------------------------------------------------- Reading */

int lg_pread_all(int fd, void *buf, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r =
            SYS.pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {
            errno = 0;
            return 1;
        }
        done += (size_t)r;
    }
    return 0;
}

static int s_read_err(lg_store *l, int rc, const char *op, const lg_seg *s,
                      uint64_t off) {
    if (rc < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s: pread(%s/%s) at %llu",
                       op, l->path, s->name, (unsigned long long)off);
    return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                   "%s: %s/%s ends before offset %llu (truncated?)", op,
                   l->path, s->name, (unsigned long long)off);
}

/* The writer of segment s has gone (its flock can be taken). */
static bool s_writer_gone(lg_store *l, lg_seg *s) {
    if (s->compacted) return true;
    if (l->wseg < l->nsegs && s == &l->segs[l->wseg] && l->wfd >= 0)
        return false;
    if (SYS.flock(s->fd, LOCK_EX | LOCK_NB) < 0) return false;
    SYS.flock(s->fd, LOCK_UN);
    return true;
}

static void s_damage(lg_store *l, const lg_seg *s, uint64_t a, uint64_t b,
                     const char *why) {
    if (l->ndamaged++ == 0)
        snprintf(l->damage, sizeof l->damage,
                 "%s/%s has a damaged region at offsets [%llu, %llu) (%s) "
                 "whose keys are unknown",
                 l->path, s->name, (unsigned long long)a, (unsigned long long)b,
                 why);
}

/* Reads a record's table (table_len bytes at off) into buf, checks it and
 * indexes the record.  0, 1 when the table is damaged, or an error. */
static int s_index_at(lg_store *l, uint32_t si, uint64_t off, const lg_hdr *h,
                      const char *op) {
    lg_seg *s = &l->segs[si];
    pd__buf_clear(&l->rbuf);
    if (pd__buf_reserve(&l->rbuf, h->table_len))
        return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: key table", op);
    int rc = lg_pread_all(s->fd, l->rbuf.p, h->table_len, off + LG_HDR);
    if (rc) return s_read_err(l, rc, op, s, off + LG_HDR);
    if (XXH3_64bits(l->rbuf.p, h->table_len) != h->table_hash) return 1;
    rc = lg_index_rec(l, si, off, h, l->rbuf.p);
    if (rc == PD_ERR_CORRUPT) return 1;
    if (rc) return pd__err(&l->base, rc, ENOMEM, "%s: index", op);
    return 0;
}

/* A bad header at x: finds the next valid header (or the end), recovers
 * the record from its trailer if it can, else records the damage.  Sets
 * *next; returns 0, 2 (nothing valid follows and the writer is alive:
 * wait), or an error. */
static int s_resync(lg_store *l, uint32_t si, uint64_t x, uint64_t size,
                    uint64_t *next, const char *op) {
    lg_seg *s = &l->segs[si];
    unsigned char *buf = malloc(S_CHUNK + LG_HDR);
    if (!buf) return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: resync", op);
    uint64_t y = size;
    lg_hdr h;
    for (uint64_t at = x + 1; at + LG_HDR <= size && y == size;) {
        size_t n = (size_t)(size - at < S_CHUNK + LG_HDR ? size - at
                                                         : S_CHUNK + LG_HDR);
        int rc = lg_pread_all(s->fd, buf, n, at);
        if (rc) {
            free(buf);
            return s_read_err(l, rc, op, s, at);
        }
        for (size_t i = 0; i + LG_HDR <= n; i++)
            if (buf[i] == (LG_REC_MAGIC & 0xff) &&
                lg_hdr_parse(buf + i, &h) == 0) {
                y = at + i;
                break;
            }
        at += n - LG_HDR + 1;
    }
    free(buf);
    if (y < size && y + LG_HDR - x >= lg_rec_len(&h)) {
        /* A trailer (the region's end)?  If its record's table checks, the
         * record is recovered. */
        uint64_t start = y + LG_HDR - lg_rec_len(&h);
        int rc = s_index_at(l, si, start, &h, op);
        if (rc <= 0) {
            if (rc == 0 && start > x)
                s_damage(l, s, x, start, "bad record header");
            *next = y + LG_HDR;
            return rc;
        }
    }
    if (y == size && !s_writer_gone(l, s)) return 2;
    *next = y;
    /* The trailer before y: the same header, describing [x, y)? */
    unsigned char t[LG_HDR];
    if (y - x >= 2 * LG_HDR &&
        lg_pread_all(s->fd, t, LG_HDR, y - LG_HDR) == 0 &&
        lg_hdr_parse(t, &h) == 0 && lg_rec_len(&h) == y - x) {
        int rc = s_index_at(l, si, x, &h, op);
        if (rc <= 0) return rc;
    }
    s_damage(l, s, x, y, "bad record header");
    return 0;
}

/* Parses segment si from s->parsed to its current end. */
static int s_catch_seg(lg_store *l, uint32_t si, const char *op) {
    lg_seg *s = &l->segs[si];
    struct stat st;
    if (s->done) return 0;
    if (SYS.fstat(s->fd, &st) < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s: fstat(%s/%s)", op,
                       l->path, s->name);
    uint64_t size = (uint64_t)st.st_size;
    if (size < s->parsed) return 3; /* a record we read was undone */
    while (s->parsed < size) {
        uint64_t off = s->parsed;
        size_t len = (size_t)(size - off < S_CHUNK ? size - off : S_CHUNK);
        lg_hdr h;
        if (len >= LG_HDR) {
            pd__buf_clear(&l->rbuf);
            if (pd__buf_reserve(&l->rbuf, len))
                return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: read", op);
            int rc = lg_pread_all(s->fd, l->rbuf.p, len, off);
            if (rc) return s_read_err(l, rc, op, s, off);
            /* Whole records in the chunk. */
            size_t pos = 0;
            while (pos + LG_HDR <= len) {
                const unsigned char *p = l->rbuf.p + pos;
                if (lg_hdr_parse(p, &h)) break;
                uint64_t rl = lg_rec_len(&h);
                if (off + pos + rl > size) break;
                if ((uint64_t)pos + LG_HDR + h.table_len > len) break;
                if (XXH3_64bits(p + LG_HDR, h.table_len) != h.table_hash) {
                    s_damage(l, s, off + pos, off + pos + rl, "bad key table");
                } else {
                    rc = lg_index_rec(l, si, off + pos, &h, p + LG_HDR);
                    if (rc == PD_ERR_CORRUPT)
                        s_damage(l, s, off + pos, off + pos + rl,
                                 "malformed key table");
                    else if (rc)
                        return pd__err(&l->base, rc, ENOMEM, "%s: index", op);
                }
                s->parsed = off + pos + rl;
                if (rl >= len - pos) break;
                pos += (size_t)rl;
            }
            if (s->parsed != off) continue;
        }
        /* The record at off was not handled in the chunk: a big table, an
         * incomplete record, or a bad header. */
        unsigned char hb[LG_HDR];
        if (size - off >= LG_HDR) {
            int rc = lg_pread_all(s->fd, hb, LG_HDR, off);
            if (rc) return s_read_err(l, rc, op, s, off);
        }
        if (size - off >= LG_HDR && lg_hdr_parse(hb, &h) != 0) {
            uint64_t next = size;
            int rc = s_resync(l, si, off, size, &next, op);
            if (rc == 2) return 0;
            if (rc) return rc;
            s->parsed = next;
            continue;
        }
        if (size - off >= LG_HDR && off + lg_rec_len(&h) <= size) {
            int rc = s_index_at(l, si, off, &h, op); /* a big table */
            if (rc < 0 || rc > 1) return rc;
            if (rc == 1)
                s_damage(l, s, off, off + lg_rec_len(&h), "bad key table");
            s->parsed = off + lg_rec_len(&h);
            continue;
        }
        /* Incomplete: in progress, or torn.  (The commit log's torn tail
         * is cut by the next committer, which counts it: read on.) */
        if (s->commits || !s_writer_gone(l, s)) return 0;
        l->torn++;
        snprintf(l->notice, sizeof l->notice,
                 "log: left out a torn record of %llu bytes at offset %llu of "
                 "%s/%s (its writer is gone)",
                 (unsigned long long)(size - off), (unsigned long long)off,
                 l->path, s->name);
        s->done = true;
        return 0;
    }
    return 0;
}

/* ------------------------------------------------------------- Listing */

/* Lists the directory (pd__dir_each) into fn; 0 or the error recorded. */
static int s_listdir(lg_store *l, const char *op, pd__dirent_fn fn, void *arg) {
    const char *failed = "open";
    int fd = SYS.openat(l->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    int rc = fd < 0 ? -1 : pd__dir_each(fd, fn, arg, &failed);
    if (rc == -1)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s: list %s: %s", op,
                       l->path, failed);
    return rc;
}

static int s_newest_compacted(void *arg, int dfd, const char *name,
                              unsigned char type) {
    (void)dfd;
    (void)type;
    uint64_t *cgen = arg;
    unsigned long long g;
    char tail;
    if (sscanf(name, "c-%16llx%c", &g, &tail) == 1 && strlen(name) == 18 &&
        g > *cgen)
        *cgen = g;
    return 0;
}

typedef struct s_addctx {
    lg_store *l;
    const char *op;
    int rc;
} s_addctx;

/* Indexes a writer segment not seen yet. */
static int s_add_writer(void *arg, int dfd, const char *name,
                        unsigned char type) {
    (void)dfd;
    (void)type;
    s_addctx *c = arg;
    lg_store *l = c->l;
    bool commits = !strcmp(name, LG_COMMITS);
    if (!commits && strncmp(name, "w-", 2) != 0) return 0;
    for (size_t i = 0; i < l->nsegs; i++)
        if (!strcmp(l->segs[i].name, name)) return 0;
    int sfd = SYS.openat(l->dirfd, name,
                         O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
    if (sfd < 0) {
        /* Removed since: a writer rotating away from a segment that a
         * compaction superseded. */
        if (errno == ENOENT) return 0;
        c->rc = pd__err(&l->base, PD_ERR_IO, errno, "%s: open %s/%s", c->op,
                        l->path, name);
        return 1;
    }
    struct stat st;
    if (SYS.fstat(sfd, &st) == 0 && !S_ISREG(st.st_mode)) {
        SYS.close(sfd); /* not a segment of ours */
        return 0;
    }
    int ix = lg_seg_add(l, name, sfd, false);
    if (ix < 0) {
        SYS.close(sfd);
        c->rc = ix;
        return 1;
    }
    l->segs[ix].commits = commits;
    return 0;
}

static int s_list(lg_store *l, const char *op) {
    /* The newest compacted segment first. */
    uint64_t cgen = 0;
    int rc = s_listdir(l, op, s_newest_compacted, &cgen);
    if (rc < 0) return rc;
    if (cgen != l->cgen && l->nsegs) lg_index_reset(l);
    if (cgen && l->nsegs == 0) {
        char nm[32];
        snprintf(nm, sizeof nm, "c-%016llx", (unsigned long long)cgen);
        int sfd = SYS.openat(l->dirfd, nm,
                             O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
        if (sfd < 0)
            rc = pd__err(&l->base, PD_ERR_IO, errno, "%s: open %s/%s", op,
                         l->path, nm);
        else if ((rc = lg_seg_add(l, nm, sfd, true)) < 0)
            SYS.close(sfd);
        else
            rc = s_catch_seg(l, 0, op);
        if (rc == 3)
            rc = pd__err(&l->base, PD_ERR_CORRUPT, 0,
                         "%s: %s/%s shrank (compacted segments never change)",
                         op, l->path, nm);
        l->cgen = cgen;
    }
    if (rc >= 0) {
        s_addctx c = {l, op, 0};
        rc = s_listdir(l, op, s_add_writer, &c);
        if (rc == 1) rc = c.rc;
    }
    if (rc >= 0) l->listed = true;
    return rc < 0 ? rc : 0;
}

int lg_catch_up(lg_store *l, const char *op) {
    uint64_t writes = __atomic_load_n(&l->sh->writes, __ATOMIC_SEQ_CST);
    uint64_t gen = __atomic_load_n(&l->sh->gen, __ATOMIC_SEQ_CST);
    uint64_t created = __atomic_load_n(&l->sh->created, __ATOMIC_SEQ_CST);
    if (l->listed && gen == l->gen_seen && created == l->created_seen &&
        writes == l->writes_seen)
        return 0; /* nothing written since the last catch-up */
    if (gen != l->gen_seen) lg_index_reset(l);
    if (!l->listed || created != l->created_seen || gen != l->gen_seen) {
        int rc = s_list(l, op);
        if (rc) return rc;
        l->gen_seen = gen;
        l->created_seen = created;
    }
    for (size_t i = 0; i < l->nsegs; i++) {
        int rc = s_catch_seg(l, (uint32_t)i, op);
        if (rc == 3) {
            /* A segment shrank under a record we had read (a write undone
             * after a failed fsync): read everything again. */
            lg_index_reset(l);
            l->gen_seen = UINT64_MAX;
            return lg_catch_up(l, op);
        }
        if (rc) return rc;
    }
    l->writes_seen = writes;
    if (lg_att_caught_up(l)) {
        /* A commit found now whose records are not all indexed: they were
         * written before it, so one more listing and reading finds them. */
        l->listed = false;
        return lg_catch_up(l, op);
    }
    return 0;
}

/* --------------------------------------------------------------- Gets */

int lg_damage_check(lg_store *l, const pd_key *key, const char *op) {
    if (!l->ndamaged) return 0;
    char kb[PD__KEYSHORT_MAX];
    return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                   "%s %s: may have data in a damaged region: %s (%llu such "
                   "regions; pd_log_compact with PD_LOG_SALVAGE drops them)",
                   op, key ? pd__key_short(key, kb) : "", l->damage,
                   (unsigned long long)l->ndamaged);
}

int lg_read_key(lg_store *l, const lg_key *k, const pd_key *key, pd_result *r,
                const char *op) {
    char kb[PD__KEYSHORT_MAX];
    if (k->size > SIZE_MAX / 2)
        return pd__err(&l->base, PD_ERR_LIMIT, 0, "%s %s: %llu bytes", op,
                       pd__key_short(key, kb), (unsigned long long)k->size);
    char *dst = pd__result_reserve(r, (size_t)k->size);
    if (!dst && k->size)
        return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s %s: %llu bytes", op,
                       pd__key_short(key, kb), (unsigned long long)k->size);
    size_t at = 0;
    for (uint32_t i = 0; i < k->n;) {
        /* Extents that follow each other in one segment: one read. */
        uint32_t j = i + 1;
        uint64_t len = k->ext[i].len;
        while (j < k->n && k->ext[j].seg == k->ext[i].seg &&
               k->ext[j].off == k->ext[i].off + len) {
            len += k->ext[j].len;
            j++;
        }
        const lg_seg *s = &l->segs[k->ext[i].seg];
        int rc =
            lg_win_read(l, k->ext[i].seg, k->ext[i].off, (size_t)len, dst + at);
        if (rc) rc = lg_pread_all(s->fd, dst + at, (size_t)len, k->ext[i].off);
        if (rc) {
            if (rc < 0)
                return pd__err(&l->base, PD_ERR_IO, errno,
                               "%s %s: pread(%s/%s) at %llu", op,
                               pd__key_short(key, kb), l->path, s->name,
                               (unsigned long long)k->ext[i].off);
            return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                           "%s %s: %s/%s ends before offset %llu (truncated?)",
                           op, pd__key_short(key, kb), l->path, s->name,
                           (unsigned long long)(k->ext[i].off + len));
        }
        for (; i < j; i++) {
            const lg_ext *x = &k->ext[i];
            if (XXH3_64bits(dst + at, (size_t)x->len) != x->hash)
                return pd__err(
                    &l->base, PD_ERR_CORRUPT, 0,
                    "%s %s: %llu bytes at offset %llu of %s/%s "
                    "fail their checksum",
                    op, pd__key_short(key, kb), (unsigned long long)x->len,
                    (unsigned long long)x->off, l->path, l->segs[x->seg].name);
            at += (size_t)x->len;
        }
    }
    pd__result_commit(r, at);
    return 0;
}
