/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: compaction.  With the directory locked exclusively (no write is in
 * progress anywhere), the live data is rewritten grouped by key into a new
 * compacted segment: a BASE record carrying a fresh sequence number S, then
 * append records holding each key's whole content in one extent.  It is
 * written under a temporary name, synced and renamed to c-<generation>;
 * from then on records at or below S in other segments are superseded, so
 * a reader sees the old store or the new one, never a mix.  The shared
 * generation is bumped (readers rebuild their index), then the files it
 * supersedes are removed: older compacted segments, and the segments of
 * writers that are gone (a live writer moves to a new segment at its next
 * write and removes its old one).  A drop is a compaction to nothing.
 */
#include "log/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

typedef struct s_out {
    lg_store *l;
    int fd;
    char name[64];
    uint64_t seq;
    const char *op;
} s_out;

static int s_emit(s_out *o, unsigned type, size_t n, const pd_key *keys,
                  const pd_bytes *vals) {
    lg_store *l = o->l;
    int rc = type ? lg_rec_build(&l->rec, type, o->seq, n, keys, vals) : 0;
    if (rc)
        return pd__err(&l->base, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                       "%s: build record for %s/%s", o->op, l->path, o->name);
    if (pd__write_all(o->fd, l->rec.p, l->rec.len) < l->rec.len)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s: write(%s/%s)", o->op,
                       l->path, o->name);
    return 0;
}

/* Keys are rewritten in groups of about S_GROUP bytes: the group's extents
 * are read in (segment, offset) order with few large reads (reading past
 * gaps of up to S_GAP), each is checked, and the group is written as one
 * record. */
#define S_GROUP (16u << 20)
#define S_WINDOW (8u << 20)
#define S_GAP (256u << 10)

typedef struct s_piece {
    const lg_ext *x;
    size_t key; /* index in the group */
    size_t dst; /* offset in the group's buffer */
    bool bad;
} s_piece;

typedef struct s_group {
    lg_key **ks;
    size_t n, cap, bytes, table;
    s_piece *pc;
    size_t np, cappc;
    struct s_ord *ord;
    unsigned char *buf;
} s_group;

/* A piece's place in read order, sorted without following pointers. */
typedef struct s_ord {
    uint64_t seg, off, len, hash;
    size_t dst, i;
} s_ord;

static int s_ord_cmp(const void *a, const void *b) {
    const s_ord *x = a, *y = b;
    if (x->seg != y->seg) return x->seg < y->seg ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Reads every piece of the group into g->buf and checks it. */
static int s_gather(s_out *o, s_group *g) {
    lg_store *l = o->l;
    for (size_t i = 0; i < g->np; i++)
        g->ord[i] = (s_ord){g->pc[i].x->seg,  g->pc[i].x->off, g->pc[i].x->len,
                            g->pc[i].x->hash, g->pc[i].dst,    i};
    qsort(g->ord, g->np, sizeof *g->ord, s_ord_cmp);
    for (size_t i = 0; i < g->np;) {
        const s_ord *x = &g->ord[i];
        uint64_t start = x->off, end = x->off + x->len;
        size_t j = i + 1;
        while (j < g->np) {
            const s_ord *y = &g->ord[j];
            if (y->seg != x->seg || y->off < end || y->off - end > S_GAP ||
                y->off + y->len - start > S_WINDOW)
                break;
            end = y->off + y->len;
            j++;
        }
        const lg_seg *sg = &l->segs[x->seg];
        unsigned char *dst;
        if (j == i + 1) {
            dst = g->buf + x->dst; /* straight into place */
        } else {
            pd__buf_clear(&l->rbuf);
            if (pd__buf_reserve(&l->rbuf, (size_t)(end - start)))
                return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: read",
                               o->op);
            dst = l->rbuf.p;
        }
        int rc = lg_pread_all(sg->fd, dst, (size_t)(end - start), start);
        if (rc)
            return pd__err(&l->base, rc < 0 ? PD_ERR_IO : PD_ERR_CORRUPT,
                           rc < 0 ? errno : 0, "%s: %s(%s/%s) at %llu", o->op,
                           rc < 0 ? "pread" : "short read", l->path, sg->name,
                           (unsigned long long)start);
        for (; i < j; i++) {
            const s_ord *p = &g->ord[i];
            unsigned char *at = g->buf + p->dst;
            if (dst != at) memcpy(at, dst + (p->off - start), p->len);
            if (XXH3_64bits(at, (size_t)p->len) != p->hash)
                g->pc[p->i].bad = true;
        }
    }
    return 0;
}

/* Writes the group as one record (salvage: leaving out bad pieces). */
static int s_group_flush(s_out *o, s_group *g, bool salvage) {
    lg_store *l = o->l;
    int rc = s_gather(o, g);
    if (rc) return rc;
    pd_bytes *vals = malloc((g->n ? g->n : 1) * sizeof *vals);
    if (!vals) return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s", o->op);
    size_t p = 0;
    for (size_t k = 0; k < g->n; k++) {
        unsigned char *v = g->buf + (p < g->np ? g->pc[p].dst : 0);
        size_t len = 0;
        for (; p < g->np && g->pc[p].key == k; p++) {
            const s_piece *pc = &g->pc[p];
            if (pc->bad && !salvage) {
                free(vals);
                pd_key key;
                pd_bytes parts[PD_KEY_MAX_PARTS];
                char kb[PD__KEYSHORT_MAX] = "?";
                if (!pd__key_unpack(g->ks[k]->pk, g->ks[k]->node.klen, &key,
                                    parts))
                    pd__key_short(&key, kb);
                return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                               "%s %s: %llu bytes at offset %llu of %s/%s "
                               "fail their checksum",
                               o->op, kb, (unsigned long long)pc->x->len,
                               (unsigned long long)pc->x->off, l->path,
                               l->segs[pc->x->seg].name);
            }
            if (pc->bad) continue;
            if (v + len != g->buf + pc->dst)
                memmove(v + len, g->buf + pc->dst, (size_t)pc->x->len);
            len += (size_t)pc->x->len;
        }
        vals[k] = PD_BYTES(v, len);
    }
    rc = lg_rec_build_packed(&l->rec, LG_APPEND, o->seq, g->n,
                             (const lg_key *const *)g->ks, vals);
    free(vals);
    if (rc)
        return pd__err(&l->base, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                       "%s: build record", o->op);
    return s_emit(o, 0, 0, NULL, NULL);
}

static int s_write_keys(s_out *o, bool salvage) {
    lg_store *l = o->l;
    s_group g = {0};
    int rc = 0;
    for (pd__knode *nd = l->keys.head; rc == 0; nd = nd->next) {
        lg_key *k = nd ? (lg_key *)nd : NULL;
        if (k && k->size == 0) continue;
        size_t kt = k ? LG_ENT + lg_pad8(k->node.klen) : 0;
        if (g.n && (!k || g.bytes + k->size > S_GROUP ||
                    g.table + kt > LG_MAX_TABLE / 2)) {
            g.buf = malloc(g.bytes ? g.bytes : 1);
            g.ord = malloc((g.np ? g.np : 1) * sizeof *g.ord);
            if (!g.buf || !g.ord)
                rc = pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s", o->op);
            if (rc == 0) rc = s_group_flush(o, &g, salvage);
            free(g.buf);
            free(g.ord);
            g.buf = NULL;
            g.ord = NULL;
            g.n = g.np = g.bytes = g.table = 0;
        }
        if (!k || rc) break;
        if (k->size > SIZE_MAX / 2 ||
            pd__grow((void **)&g.ks, &g.cap, g.n + 1, sizeof *g.ks) ||
            pd__grow((void **)&g.pc, &g.cappc, g.np + k->n, sizeof *g.pc)) {
            rc = pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s", o->op);
            break;
        }
        size_t dst = g.bytes;
        for (uint32_t i = 0; i < k->n; i++) {
            g.pc[g.np++] = (s_piece){&k->ext[i], g.n, dst, false};
            dst += (size_t)k->ext[i].len;
        }
        g.ks[g.n++] = k;
        g.bytes = dst;
        g.table += kt;
    }
    free(g.ks);
    free(g.pc);
    return rc;
}

typedef struct s_cleanctx {
    lg_store *l;
    const char *keep;
} s_cleanctx;

static int s_clean_entry(void *arg, int dfd, const char *n,
                         unsigned char type) {
    (void)type;
    const s_cleanctx *c = arg;
    if (!strcmp(n, c->keep)) return 0;
    if (!strncmp(n, "c-", 2) || !strncmp(n, "t-", 2)) {
        SYS.unlinkat(dfd, n, 0); /* a directory stays */
    } else if (!strncmp(n, "w-", 2) && strcmp(n, c->l->wname) != 0) {
        int sfd = SYS.openat(dfd, n,
                             O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
        if (sfd < 0) return 0;
        struct stat st;
        if (SYS.fstat(sfd, &st) == 0 && S_ISREG(st.st_mode) &&
            SYS.flock(sfd, LOCK_EX | LOCK_NB) == 0)
            SYS.unlinkat(dfd, n, 0); /* its writer is gone */
        SYS.close(sfd);
    }
    return 0;
}

/* Removes what the new generation supersedes (best effort: what stays is
 * removed by the next compaction). */
static void s_cleanup(lg_store *l, const char *keep) {
    int fd = SYS.openat(l->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) return;
    s_cleanctx c = {l, keep};
    const char *failed;
    pd__dir_each(fd, s_clean_entry, &c, &failed);
}

bool lg_compact_pays(const lg_store *l) {
    uint64_t dead =
        l->rec_bytes > l->live_bytes ? l->rec_bytes - l->live_bytes : 0;
    return dead > (64u << 20) && dead > l->live_bytes;
}

int lg_compact(lg_store *l, bool empty, bool salvage, const char *op) {
    int rc = 0;
    if (!empty) {
        rc = lg_catch_up(l, op);
        if (rc) return rc;
        if (l->ndamaged && !salvage) return lg_damage_check(l, NULL, op);
    }
    uint64_t writes = __atomic_load_n(&l->sh->writes, __ATOMIC_SEQ_CST);
    uint64_t gen = __atomic_load_n(&l->sh->gen, __ATOMIC_SEQ_CST);
    if (gen < l->cgen) gen = l->cgen;
    if (++gen >= LG_GEN_MAX) /* a hostile name; the state file is checked */
        return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                       "%s: %s: the compaction generation is at %llu, its "
                       "limit is 2^62: a compacted segment's name claims a "
                       "number no store reaches (not a file this library "
                       "wrote); nothing was compacted",
                       op, l->path, (unsigned long long)gen - 1);
    s_out o = {l, -1, "", 0, op};
    if (lg_next_seq(l, op, &o.seq)) {
        /* At the limit (damaged data): the last number handed out is the
         * base; every record at or below it is in this compaction. */
        pd__err_clear(&l->base);
        o.seq = __atomic_load_n(&l->sh->seq, __ATOMIC_SEQ_CST);
    }
    snprintf(o.name, sizeof o.name, "t-%016llx", (unsigned long long)gen);
    o.fd =
        SYS.openat(l->dirfd, o.name,
                   O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (o.fd < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s: create %s/%s", op,
                       l->path, o.name);
    rc = s_emit(&o, LG_BASE, 0, NULL, NULL);
    if (rc == 0 && !empty) rc = s_write_keys(&o, salvage);
    if (rc == 0 && SYS.fsync(o.fd) < 0)
        rc = pd__err(&l->base, PD_ERR_IO, errno, "%s: fsync(%s/%s)", op,
                     l->path, o.name);
    SYS.close(o.fd);
    char cname[32];
    snprintf(cname, sizeof cname, "c-%016llx", (unsigned long long)gen);
    if (rc == 0 && SYS.renameat(l->dirfd, o.name, l->dirfd, cname) < 0)
        rc = pd__err(&l->base, PD_ERR_IO, errno, "%s: rename %s/%s to %s", op,
                     l->path, o.name, cname);
    if (rc) {
        SYS.unlinkat(l->dirfd, o.name, 0);
        return rc;
    }
    SYS.fsync(l->dirfd);
    __atomic_store_n(&l->sh->gen, gen, __ATOMIC_SEQ_CST);
    __atomic_store_n(&l->sh->compacted, writes, __ATOMIC_SEQ_CST);
    /* Our own segment holds superseded records only. */
    if (l->wfd >= 0) {
        int keep = lg_att_retire(l);
        if (keep < 2) SYS.close(l->wfd);
        l->wfd = -1;
        if (!keep) SYS.unlinkat(l->dirfd, l->wname, 0);
        l->wname[0] = 0;
    }
    if (empty) lg_att_dropped(l);
    if (salvage) lg_att_salvage(l, op, o.seq);
    s_cleanup(l, cname);
    lg_index_reset(l);
    return 0;
}
