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

#define S_BATCH (4u << 20) /* data per record written */

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
    int rc = lg_rec_build(&l->rec, type, o->seq, n, keys, vals);
    if (rc)
        return pd__err(&l->base, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                       "%s: build record for %s/%s", o->op, l->path, o->name);
    size_t done = 0;
    while (done < l->rec.len) {
        ssize_t w = SYS.write(o->fd, l->rec.p + done, l->rec.len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return pd__err(&l->base, PD_ERR_IO, w < 0 ? errno : EIO,
                           "%s: write(%s/%s)", o->op, l->path, o->name);
        done += (size_t)w;
    }
    return 0;
}

/* Salvage: the extents of k that pass their checksum, one by one. */
static int s_read_salvage(lg_store *l, const lg_key *k, const pd_key *key,
                          pd_result *r, const char *op) {
    for (uint32_t i = 0; i < k->n; i++) {
        lg_key one = *k;
        one.ext = (lg_ext *)&k->ext[i];
        one.n = 1;
        one.size = k->ext[i].len;
        int rc = lg_read_key(l, &one, key, r, op);
        if (rc && rc != PD_ERR_CORRUPT) return rc; /* corrupt: left out */
    }
    return 0;
}

/* Emits the n keys ks (their values in r) as one record. */
static int s_flush(s_out *o, lg_key **ks, size_t n, pd_result *r) {
    pd_key *keys = malloc(n * sizeof *keys);
    pd_bytes *vals = malloc(n * sizeof *vals);
    pd_bytes *parts = malloc(n * PD_KEY_MAX_PARTS * sizeof *parts);
    int rc = keys && vals && parts ? 0 : PD_ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (pd__key_unpack(ks[i]->pk, ks[i]->node.klen, &keys[i],
                           parts + i * PD_KEY_MAX_PARTS))
            rc = PD_ERR_CORRUPT;
        vals[i] = pd_result_value(r, i);
    }
    if (rc == 0)
        rc = s_emit(o, LG_APPEND, n, keys, vals);
    else
        pd__err(&o->l->base, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                "%s: key batch", o->op);
    free(keys);
    free(vals);
    free(parts);
    return rc;
}

static int s_write_keys(s_out *o, bool salvage) {
    lg_store *l = o->l;
    size_t cap = 0, n = 0;
    lg_key **ks = NULL;
    pd_result *r = pd__result_new(16, 0);
    int rc = r ? 0 : pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s", o->op);
    for (pd__knode *nd = l->keys.head; nd && rc == 0; nd = nd->next) {
        lg_key *k = (lg_key *)nd;
        if (k->size == 0) continue;
        if (pd__grow((void **)&ks, &cap, n + 1, sizeof *ks)) {
            rc = pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: keys", o->op);
            break;
        }
        pd_key key;
        pd_bytes parts[PD_KEY_MAX_PARTS];
        if (pd__key_unpack(k->pk, k->node.klen, &key, parts)) {
            rc = pd__err(&l->base, PD_ERR_CORRUPT, 0, "%s: a key", o->op);
            break;
        }
        rc = lg_read_key(l, k, &key, r, o->op);
        if (rc == PD_ERR_CORRUPT && salvage)
            rc = s_read_salvage(l, k, &key, r, o->op);
        if (rc == 0 && pd__result_next(r))
            rc = pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s", o->op);
        if (rc) break;
        ks[n++] = k;
        if (r->len >= S_BATCH) {
            rc = s_flush(o, ks, n, r);
            n = 0;
            pd_result_free(&r);
            r = pd__result_new(16, 0);
            if (!r && rc == 0)
                rc = pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s", o->op);
        }
    }
    if (rc == 0 && n) rc = s_flush(o, ks, n, r);
    pd_result_free(&r);
    free(ks);
    return rc;
}

/* Removes what the new generation supersedes. */
static void s_cleanup(lg_store *l, const char *keep) {
    int fd = SYS.openat(l->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    DIR *d = fd >= 0 ? SYS.fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) SYS.close(fd);
        return; /* left for the next compaction */
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (!strcmp(n, keep)) continue;
        if (!strncmp(n, "c-", 2) || !strncmp(n, "t-", 2)) {
            SYS.unlinkat(l->dirfd, n, 0);
        } else if (!strncmp(n, "w-", 2) && strcmp(n, l->wname) != 0) {
            int sfd = SYS.openat(l->dirfd, n, O_RDONLY | O_CLOEXEC, 0);
            if (sfd < 0) continue;
            if (SYS.flock(sfd, LOCK_EX | LOCK_NB) == 0)
                SYS.unlinkat(l->dirfd, n, 0);
            SYS.close(sfd);
        }
    }
    closedir(d);
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
    uint64_t gen = __atomic_load_n(&l->sh->gen, __ATOMIC_SEQ_CST);
    if (gen < l->cgen) gen = l->cgen;
    gen++;
    s_out o = {l, -1, "", lg_next_seq(l), op};
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
    /* Our own segment holds superseded records only. */
    if (l->wfd >= 0) {
        SYS.close(l->wfd);
        l->wfd = -1;
        SYS.unlinkat(l->dirfd, l->wname, 0);
        l->wname[0] = 0;
    }
    s_cleanup(l, cname);
    lg_index_reset(l);
    l->appended = false;
    return 0;
}
