/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Dict internals for the Buffer's fast path.  Not part of the public API.
 */
#ifndef PARTD_DICT_H
#define PARTD_DICT_H

#include "core/internal.h"

/* Whether s is a Dict. */
bool pd__dict_is(const pd_store *s);

/*
 * What a Buffer over a Dict keeps per key so that its appends skip the
 * Dict's lookup: the key's hash, and the Dict's entry for the key as last
 * seen, valid while the Dict's generation (bumped whenever it frees an
 * entry) is still `gen`.  Zeroed means "not known yet"; only the Dict
 * writes ent and gen.
 */
typedef struct pd__dict_ref {
    uint64_t hash; /* pd__khash of the key, set by the owner */
    void *ent;
    uint64_t gen;
} pd__dict_ref;

/*
 * The Dict's append op, with refs[i] the ref of keys[i] (several i may share
 * one): what a Buffer over a Dict calls instead of pd_append, so a key is
 * hashed once and, while the Dict frees no entry, looked up once per append.
 * The caller holds d's lock (a pd_lock session or the lock of a wrapper over
 * it) and has validated keys and values as pd_append does.  Atomic as
 * pd_append.  0, or PD_ERR_NOMEM with the message recorded on d.
 */
int pd__dict_append_refs(pd_store *d, size_t n, const pd_key *keys,
                         pd__dict_ref *const *refs, const pd_bytes *vals);

/*
 * Tells Dict d it will likely hold up to `bytes` (a Buffer over it says
 * its limit).  From 32 MiB on, d asks for huge pages from its first 2 MiB
 * of chunk memory on, not from its second (see arena.h): 2 MiB resident
 * at the first append, and hundreds fewer page faults per fill.  Takes d's
 * lock; never fails.
 */
void pd__dict_expect(pd_store *d, uint64_t bytes);

/*
 * While held, Dict d frees memory without giving it back to the system;
 * releasing the hold trims as a delete would.  A spilling Buffer holds it
 * across the delete of the keys it spilled and the append of the rest of
 * the batch, which refills the freed pages instead of faulting (and the
 * kernel zeroing) fresh ones: the peak stays what the delete's trim would
 * allow, since the rest goes where the spilled bytes were.  Takes d's
 * lock; never fails.
 */
void pd__dict_trim_hold(pd_store *d, bool hold);

/* Trims (giving free memory back to the system) made by Dict d, for
 * tests of the policy. */
uint64_t pd__dict_trims(const pd_store *d);

/* Dict d's chunk memory (arena.h), for tests; NULL if d is no Dict.  Read
 * it only while no other thread uses d. */
struct pd__arena;
const struct pd__arena *pd__dict_arena(const pd_store *d);

#endif /* PARTD_DICT_H */
