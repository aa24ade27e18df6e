/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Buffer's private header: its state, shared by buffer.c (the ops and
 * the public calls) and spill.c (what to spill and how it moves), and the
 * spill choice, exposed for the tests that compare it with partd's.
 */
#ifndef PARTD_BUFFER_H
#define PARTD_BUFFER_H

#include "core/internal.h"
#include "core/ktab.h"
#include "dict/dict.h"

#define PD__BUFFER_FRACTION 0.1
#define PD__BUFFER_MAXCOUNT 20
#define PD__BUFFER_FLUSH_BATCH 32
/* An append batch of at least this many bytes goes straight to a slow Log
 * (bypass.c; the measurements: docs/perf-log.md).  A
 * build may set another (-DPD__BUFFER_BYPASS=BYTES) to measure. */
#ifndef PD__BUFFER_BYPASS
#define PD__BUFFER_BYPASS ((uint64_t)1 << 20)
#endif

typedef struct pd__bcount {
    pd__knode kn;      /* first: the index's node is the entry */
    uint64_t bytes;    /* bytes this Buffer put in fast under the key */
    uint64_t mark;     /* pd_buffer_flush: de-duplication stamp */
    pd__dict_ref dref; /* fast's entry, when fast is a Dict (dict.h) */
    pd_key key;        /* points into this allocation */
    pd_bytes parts[];  /* nparts of key, then the packed key */
} pd__bcount;

typedef struct pd__buffer {
    pd_store base;
    pd_store *fast, *slow;
    bool owned;
    uint64_t limit;
    uint64_t usage;
    uint64_t spills; /* moves to slow to stay under the limit */
    uint64_t bypass; /* bypass.c's threshold (tests set it; 0: never) */
    pd__ktab counts; /* pd__bcount entries, in insertion order */
    uint64_t mark;
    bool slow_locked; /* this session holds slow's lock */
    /* scratch for moves (keys and values of one batch to slow) */
    pd_key *mk;
    pd_bytes *mv;
    size_t mcap;
    /* scratch for append/set (entries of one batch, and their Dict refs) */
    pd__bcount **ents;
    bool *created;
    pd__dict_ref **refs;
    size_t ecap;
    /* scratch for choosing what to spill (sizes and entries of fast) */
    uint64_t *selsz;
    size_t selszcap;
    pd__bcount **selnode;
    size_t selnodecap;
    size_t *selheap; /* pd__buffer_plan's ranking (positions in selnode) */
    size_t selheapcap;
    bool fast_dict; /* fast is a Dict: appends take pd__dict_append_refs */
    /* PD_BUFFER_PRIVATE: slow changes only through this Buffer, so a key
     * never spilled has nothing in slow.  `spilled` indexes the keys moved
     * to slow since the last drop (s_spill entries); `spilled_all` means
     * the index is incomplete (slow held keys at open, or an entry could
     * not be allocated) and slow must be read for every key. */
    bool private_slow;
    bool spilled_all;
    pd__ktab spilled;
} pd__buffer;

/*
 * The reference's spill selection (partd/buffer.py keys_to_flush): of the
 * larger half of the keys (at least one), taken biggest first with ties in
 * input order (heapq.nlargest), the leading ones whose cumulative sizes stay
 * at or under total * fraction; at least 1, at most maxcount (0 counts as 1).
 *
 * sizes[0..n) are the keys' sizes.  Writes the chosen indices, biggest first,
 * to out, which must hold min(max(n / 2, 1), maxcount) entries, and returns
 * how many were chosen (0 only when n is 0).  No allocation.
 */
size_t pd__buffer_keys_to_flush(const uint64_t *sizes, size_t n,
                                double fraction, size_t maxcount, size_t *out);

/* spill.c: the counts, the spilled set and the moves. */
pd__bcount *pd__buffer_count_find(const pd__buffer *b, const pd_key *key,
                                  uint64_t h);
pd__bcount *pd__buffer_count_add(pd__buffer *b, const pd_key *key, uint64_t h);
void pd__buffer_count_remove(pd__buffer *b, pd__bcount *e);
bool pd__buffer_slow_may_hold(const pd__buffer *b, size_t n,
                              const pd_key *keys);
void pd__buffer_spilled_remove(pd__buffer *b, size_t n, const pd_key *keys);
/* Records keys[0..n), just written to slow otherwise than by a spill (an
 * attempt's commit), as spilled. */
void pd__buffer_spilled_note(pd__buffer *b, size_t n, const pd_key *keys);
void pd__buffer_spilled_clear(pd__buffer *b);
void pd__buffer_counts_clear(pd__buffer *b);
int pd__buffer_mscratch(pd__buffer *b, size_t need);
int pd__buffer_need_slow(pd__buffer *b);
int pd__buffer_move_keys(pd__buffer *b, size_t n, const pd_key *keys,
                         unsigned fsync);
int pd__buffer_move_all(pd__buffer *b, unsigned fsync);
int pd__buffer_make_room(pd__buffer *b, uint64_t incoming, unsigned fsync);
int pd__buffer_move(pd__buffer *b, pd__bcount **sel, size_t m, unsigned fsync,
                    bool spill);

/* The values of an append batch that go to slow with the keys spilled
 * after it: those of the batch whose count entry ents[i] is marked stamp;
 * every value when ents is NULL (a bypass). */
typedef struct pd__spill_batch {
    size_t n;
    const pd_key *keys;
    const pd_bytes *vals;
    pd__bcount *const *ents;
    uint64_t stamp;
} pd__spill_batch;
int pd__buffer_move_batch(pd__buffer *b, pd__bcount **sel, size_t m,
                          const pd__spill_batch *batch, unsigned fsync,
                          bool spill, bool *in_slow);
int pd__buffer_plan(pd__buffer *b, uint64_t stamp, size_t *m);

/* bypass.c: whether an append of `incoming` bytes goes straight to slow,
 * and that append (the batch's keys held in fast are moved first, in the
 * same append to slow).  0 or the error, recorded; on error nothing is
 * applied unless the message says so (fast's delete failed after slow took
 * the batch: the keys' old bytes are then held twice, as for a spill). */
uint64_t pd__buffer_bypass_for(const pd_store *slow); /* b->bypass */
bool pd__buffer_bypass_wants(const pd__buffer *b, uint64_t incoming);
int pd__buffer_bypass(pd__buffer *b, size_t n, const pd_key *keys,
                      const pd_bytes *vals, unsigned fsync);

/* attempt.c: the attempt ops (partd.h, "Attempts"), passed to slow. */
PD__ATTEMPT_DECLS(pd__buffer_att_);

#endif /* PARTD_BUFFER_H */
