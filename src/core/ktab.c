/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The key index of ktab.h: slot array management and tuple keys.
 */
#include "core/ktab.h"

#include <stdlib.h>

#define S_MIN_SLOTS 16u

uint64_t pd__khash_tuple(const pd_key *key) {
    /* Each part's hash is seeded with the previous one: the order and the
     * boundaries of the parts change the result. */
    uint64_t h = 0x9E3779B97F4A7C15ull ^ key->nparts;
    for (size_t i = 0; i < key->nparts; i++)
        h = XXH3_64bits_withSeed(key->parts[i].data, key->parts[i].size,
                                 h + key->parts[i].size);
    return h;
}

bool pd__keq_tuple(const pd_key *key, const unsigned char *pk, size_t len) {
    if (len < 1 || pk[0] != 1) return false;
    size_t pos = 1;
    for (size_t i = 0; i < key->nparts; i++) {
        size_t n = key->parts[i].size;
        if (len - pos < 4) return false;
        uint32_t l = (uint32_t)pk[pos] | (uint32_t)pk[pos + 1] << 8 |
                     (uint32_t)pk[pos + 2] << 16 | (uint32_t)pk[pos + 3] << 24;
        pos += 4;
        if (l != n || len - pos < n) return false;
        if (n && memcmp(pk + pos, key->parts[i].data, n) != 0) return false;
        pos += n;
    }
    return pos == len;
}

/* Puts n in the first free slot of its probe sequence. */
static void s_place(pd__kslot *slots, size_t mask, pd__knode *n) {
    size_t i = (size_t)n->hash & mask;
    while (slots[i].node) i = (i + 1) & mask;
    slots[i].hash = n->hash;
    slots[i].node = n;
}

/* Rebuilds the slots with `cap` (a power of two, > count) of them.  0, or -1
 * when out of memory (t unchanged). */
static int s_resize(pd__ktab *t, size_t cap) {
    pd__kslot *ns = calloc(cap, sizeof *ns);
    if (!ns) return -1;
    for (pd__knode *n = t->head; n; n = n->next) s_place(ns, cap - 1, n);
    free(t->slots);
    t->slots = ns;
    t->mask = cap - 1;
    return 0;
}

int pd__ktab_reserve(pd__ktab *t, size_t n) {
    size_t cap = t->slots ? t->mask + 1 : 0;
    /* At most half full: probe sequences stay about one slot long. */
    if (n > cap / 2) {
        size_t ncap = cap ? cap : S_MIN_SLOTS;
        while (n > ncap / 2) {
            if (ncap > SIZE_MAX / 2 / sizeof(pd__kslot)) return -1;
            ncap *= 2;
        }
        if (s_resize(t, ncap)) return -1;
    }
    return 0;
}

int pd__ktab_insert(pd__ktab *t, pd__knode *n) {
    if (pd__ktab_reserve(t, t->count + 1)) return -1;
    n->flat16 = n->klen >= 1 && n->klen <= 17 && n->pk[0] == 0;
    n->kw[0] = n->kw[1] = 0;
    if (n->flat16) pd__load16(n->pk + 1, n->klen - 1, &n->kw[0], &n->kw[1]);
    s_place(t->slots, t->mask, n);
    n->next = NULL;
    n->prev = t->tail;
    if (t->tail)
        t->tail->next = n;
    else
        t->head = n;
    t->tail = n;
    t->count++;
    return 0;
}

void pd__ktab_remove(pd__ktab *t, pd__knode *n) {
    size_t mask = t->mask;
    size_t i = (size_t)n->hash & mask;
    while (t->slots[i].node != n) i = (i + 1) & mask;
    /* Backward-shift deletion: move later members of the cluster into the
     * hole when their home slot is not between the hole and them, so
     * lookups never need tombstones. */
    for (size_t j = (i + 1) & mask; t->slots[j].node; j = (j + 1) & mask) {
        size_t home = (size_t)t->slots[j].hash & mask;
        /* Keep slot j when home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        t->slots[i] = t->slots[j];
        i = j;
    }
    t->slots[i].node = NULL;
    t->slots[i].hash = 0;
    if (n->prev)
        n->prev->next = n->next;
    else
        t->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        t->tail = n->prev;
    n->prev = n->next = NULL;
    t->count--;
    /* Give memory back after mass removals (a Buffer that spilled most of
     * its keys); when that fails the larger table still works. */
    size_t cap = mask + 1;
    if (cap > S_MIN_SLOTS && t->count < cap / 8) {
        if (t->count == 0) {
            pd__ktab_reset(t);
        } else {
            size_t ncap = cap / 2;
            while (ncap > S_MIN_SLOTS && t->count < ncap / 8) ncap /= 2;
            (void)s_resize(t, ncap);
        }
    }
}

void pd__ktab_reset(pd__ktab *t) {
    free(t->slots);
    t->slots = NULL;
    t->mask = 0;
    t->count = 0;
    t->head = t->tail = NULL;
}

void pd__ktab_clear(pd__ktab *t) {
    size_t cap = t->slots ? t->mask + 1 : 0;
    /* A full table is zeroed whole; a sparse one slot by slot (each node
     * is in t, so its probe reaches it; slots emptied before it on the way
     * are passed over). */
    if (t->count > cap / 16) {
        memset(t->slots, 0, cap * sizeof *t->slots);
    } else {
        for (pd__knode *n = t->head; n; n = n->next) {
            size_t i = (size_t)n->hash & t->mask;
            while (t->slots[i].node != n) i = (i + 1) & t->mask;
            t->slots[i] = (pd__kslot){0, NULL};
        }
    }
    t->count = 0;
    t->head = t->tail = NULL;
}
