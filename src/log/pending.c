/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: attempts as readers see them (docs/log-format.md, "Attempts").
 * Attempt records are kept aside per instance (their key tables copied,
 * nothing indexed); a commit record naming an instance whose records are
 * all known indexes each of them, in append order, as an append at the
 * commit's sequence number.  A commit still missing records after the
 * catch-up that follows the one that found it is damage.
 */
#include "log/attempt.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- Readers */

static void s_pend_free(lg_store *l, lg_pend *p) {
    if (p->committed) l->att->awaiting--;
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
static int s_try_apply(lg_store *l, lg_pend *p) {
    if (!p->committed || p->n < p->cnrecs) return 0;
    if (p->n > p->cnrecs || p->bytes != p->cbytes) {
        s_damage(l, p->cseg, p->coff,
                 "a commit that does not match its attempt's records");
        s_pend_free(l, p);
        return 0;
    }
    for (size_t i = 0; i < p->n; i++) {
        lg_prec *r = &p->r[i];
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

static lg_pend *s_pend_get(lg_store *l, uint64_t inst) {
    lg_pend *p = NULL;
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
    lg_tags t;
    if (lg_tags_get(h, table, &t)) return PD_ERR_CORRUPT;
    if (!lg_att_state(l)) return PD_ERR_NOMEM;
    uint64_t inst = lg_le64(t.tag + 8);
    lg_pend *p = s_pend_get(l, inst);
    if (!p) return PD_ERR_NOMEM;
    if (h->type == LG_COMMIT) {
        if (p->committed) return s_try_apply(l, p); /* seen: a retry */
        p->committed = true;
        l->att->awaiting++;
        p->cround = l->att->round;
        p->cseq = h->seq;
        p->cnrecs = lg_le64(t.tag + 16);
        p->cbytes = lg_le64(t.tag + 24);
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
    p->r[i] = (lg_prec){seg, false, off, *h, tb};
    p->n++;
    p->bytes += h->data_len;
    return s_try_apply(l, p);
}

void lg_att_reset(lg_store *l) {
    if (!l->att) return;
    lg_pend *p, *tmp;
    HASH_ITER(hh, l->att->pend, p, tmp) s_pend_free(l, p);
}

int lg_att_caught_up(lg_store *l) {
    struct lg_att *a = l->att;
    if (!a) return 0;
    a->round++;
    if (!a->awaiting) return 0;
    lg_pend *p, *tmp;
    int again = 0;
    HASH_ITER(hh, a->pend, p, tmp) {
        if (!p->committed) continue;
        if (p->cround + 1 >= a->round) {
            again = 1;
            continue;
        }
        char why[96];
        snprintf(why, sizeof why,
                 "a commit naming %llu records, %zu of them found",
                 (unsigned long long)p->cnrecs, p->n);
        s_damage(l, p->cseg, p->coff, why);
        s_pend_free(l, p);
    }
    return again;
}
