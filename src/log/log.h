/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: a store in a directory of append-only segment files, one per open
 * handle, for shuffles (docs/log-format.md).  Private to src/log.
 *
 * Files: format.c (records: building, checking, parsing), segment.c (the
 * directory, its lock and shared state, the writer), index.c (the reader:
 * catch-up, gets), apply.c (applying records to the key index), extents.c
 * (its extent arrays), compact.c (compaction), log.c (the store
 * ops and the public functions); attempts: attempt.c (the ops, records,
 * the writer's pins), pending.c (readers), commits.c (the commit log),
 * sharing attempt.h.
 */
#ifndef PARTD_LOG_H
#define PARTD_LOG_H

#include "core/buf.h"
#include "core/internal.h"
#include "core/ktab.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* ------------------------------------------------------------- Format */

#define LG_FORMAT 2u             /* highest format version this code reads */
#define LG_FORMAT_NEW 1u         /* a new store's (2 at its first attempt) */
#define LG_REC_FORMAT 1u         /* the record layout's version byte */
#define LG_COMMITS "commits"     /* the commit log (attempts) */
#define LG_MARKER "partd-log"    /* the marker file */
#define LG_MAGIC "PARTDLOG"      /* its first 8 bytes */
#define LG_MARKER_SIZE 16        /* magic, u32 version, u32 reserved */
#define LG_STATE "state"         /* the shared counters (mmap'd) */
#define LG_LOCK ".lock"          /* flock: SH per call, EX for pd_lock */
#define LG_REC_MAGIC 0x52444c50u /* "PLDR" little-endian */
#define LG_HDR 48                /* record header (and trailer) size */
#define LG_ENT 24                /* key-table entry, before the key */
#define LG_MAX_TABLE (1u << 30)  /* largest key table a reader accepts */
#define LG_MAX_DATA (1ull << 40) /* largest record data a reader accepts */
#define LG_MAX_KEYS (1u << 25)   /* most keys in one record */
#define LG_SEQ_MAX (1ull << 62)  /* sequence numbers stay below it */
#define LG_GEN_MAX (1ull << 62)  /* compaction generations too */

enum lg_type {
    LG_APPEND = 1,  /* values appended to keys */
    LG_SET = 2,     /* keys replaced by values (iset) */
    LG_DELETE = 3,  /* keys forgotten (values empty) */
    LG_BASE = 4,    /* first record of a compacted segment: seq is its base */
    LG_ATTEMPT = 5, /* values appended under an attempt (invisible) */
    LG_COMMIT = 6,  /* an attempt committed (in the commit log only) */
};

/* A record header as parsed (all fields checked by lg_hdr_parse). */
typedef struct lg_hdr {
    unsigned type;
    uint32_t nkeys, table_len;
    uint64_t seq, data_len, table_hash;
} lg_hdr;

/* Total bytes of a record: header, table, data, trailer. */
static inline uint64_t lg_rec_len(const lg_hdr *h) {
    return (uint64_t)LG_HDR * 2 + h->table_len + h->data_len;
}

/* Writes the 48-byte header for h into out (its hash included). */
void lg_hdr_write(const lg_hdr *h, unsigned char out[LG_HDR]);
/* Checks and decodes a header.  0, or -1 if it is not a valid header. */
int lg_hdr_parse(const unsigned char *p, lg_hdr *h);

/* One key of a record's table, as parsed. */
typedef struct lg_ent {
    pd_key key; /* unpacked, valid during the callback */
    const unsigned char *pk;
    uint32_t pklen;
    uint64_t vlen, vhash, doff; /* doff: offset of its data in the record */
} lg_ent;

/* Little-endian loads and stores, a byte at a time and written out (the
 * compiler makes one load or store of each; a loop of byte stores stays a
 * loop at -O2), and the 8-byte padding of table entries' keys. */
static inline uint32_t lg_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static inline uint64_t lg_le64(const unsigned char *p) {
    return (uint64_t)lg_le32(p) | (uint64_t)lg_le32(p + 4) << 32;
}
static inline void lg_put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
static inline void lg_put64(unsigned char *p, uint64_t v) {
    lg_put32(p, (uint32_t)v);
    lg_put32(p + 4, (uint32_t)(v >> 32));
}
static inline size_t lg_pad8(size_t n) { return (n + 7) & ~(size_t)7; }

/* A walk of a key table an entry at a time: the checks of lg_table_walk
 * but the key's packing, which the caller checks when it needs the key
 * (the index: a key equal to one it holds was checked when first seen). */
typedef struct lg_tcur {
    size_t at;     /* the next entry's offset in the table */
    uint64_t doff; /* its data's offset in the record */
    uint32_t i;    /* entries read */
} lg_tcur;

static inline void lg_tcur_init(lg_tcur *c, const lg_hdr *h) {
    c->at = 0;
    c->doff = (uint64_t)LG_HDR + h->table_len;
    c->i = 0;
}

/* The next entry into *e (e->key unset): 1; 0 past the last entry of a
 * well-formed table; -1 if the table is malformed there (c unchanged). */
static inline int lg_tcur_next(lg_tcur *c, const lg_hdr *h,
                               const unsigned char *table, lg_ent *e) {
    if (c->i == h->nkeys)
        return c->at == h->table_len &&
                       c->doff == (uint64_t)LG_HDR + h->table_len + h->data_len
                   ? 0
                   : -1;
    const unsigned char *p = table + c->at;
    if (h->table_len - c->at < LG_ENT || lg_le32(p + 4)) return -1;
    uint32_t pklen = lg_le32(p);
    uint64_t vlen = lg_le64(p + 8);
    if (pklen == 0 || pklen > h->table_len - c->at - LG_ENT) return -1;
    if (vlen > h->data_len - (c->doff - LG_HDR - h->table_len)) return -1;
    size_t next = c->at + LG_ENT + lg_pad8(pklen);
    if (next > h->table_len) return -1;
    e->pk = p + LG_ENT;
    e->pklen = pklen;
    e->vlen = vlen;
    e->vhash = lg_le64(p + 16);
    e->doff = c->doff;
    c->doff += vlen;
    c->at = next;
    c->i++;
    return 1;
}

/* Calls fn for each entry of a table whose hash was checked.  0, or -1 if
 * the table is malformed (bad key, lengths not summing to data_len). */
typedef int (*lg_ent_fn)(void *arg, const lg_hdr *h, const lg_ent *e);
int lg_table_walk(const lg_hdr *h, const unsigned char *table, lg_ent_fn fn,
                  void *arg);

/* Builds a whole record (header, table, data grouped per key, trailer) for
 * n keys/values into b.  Values of a repeated key are concatenated in
 * order under its first occurrence.  0 or PD_ERR_NOMEM / PD_ERR_LIMIT. */
int lg_rec_build(pd__buf *b, unsigned type, uint64_t seq, size_t n,
                 const pd_key *keys, const pd_bytes *vals);

/* A record to write as it lies in memory: iov[0..n), total bytes. */
typedef struct lg_iov {
    struct iovec *iov;
    size_t n, cap, total;
} lg_iov;

/* What building a record needs besides the record (format.c): its
 * distinct keys, each one's occurrences linked, and a key index used once
 * the batch's keys are not in increasing order.  A handle keeps one
 * between calls, so that a call at many keys allocates, faults in and
 * zeroes nothing; lg_plan_done bounds what it keeps.  Zeroed: empty. */
struct lg_pnode;
typedef struct lg_plan {
    struct lg_pnode *nodes; /* [cap]: the distinct keys, in table order */
    size_t *next;           /* [cap]: occurrence i's next one of its key */
    uint64_t *hash;         /* [cap]: occurrence i's key's, for the index */
    size_t cap;             /* entries of each (0: none) */
    pd__ktab t;             /* empty between calls, its slots kept */
    unsigned small;         /* calls in a row that used under a quarter */
} lg_plan;

/* What a handle's plan keeps between calls: entries for at most
 * LG_PLAN_KEEP_MAX occurrences and a record buffer of LG_PLAN_KEEP_BYTES;
 * up to LG_PLAN_KEEP_MIN entries always; more only until
 * LG_PLAN_KEEP_CALLS calls in a row used under a quarter of them. */
#define LG_PLAN_KEEP_MAX ((size_t)1 << 18)
#define LG_PLAN_KEEP_MIN ((size_t)1 << 10)
#define LG_PLAN_KEEP_BYTES ((size_t)32 << 20)
#define LG_PLAN_KEEP_CALLS 16u

/* lg_rec_build_iov copies the values into the record buffer instead when
 * they make LG_COPY_MIN data buffers or more of under LG_COPY_BELOW
 * bytes on average (and the record fits LG_PLAN_KEEP_BYTES). */
#define LG_COPY_MIN 32u
#define LG_COPY_BELOW 2048u

/* After a call that built a record of n keys with pl, b and v (and wrote
 * it, or failed): releases all three (they are empty again) past the
 * bounds above; else keeps them for the next call. */
void lg_plan_done(lg_plan *pl, size_t n, pd__buf *b, lg_iov *v);
/* Frees pl's buffers; pl is empty again. */
void lg_plan_free(lg_plan *pl);

/* As lg_rec_build, but the values stay where they are: b gets the header
 * and the key table, then the trailer; v the whole record in order (b's
 * header and table, the values grouped per key as lg_rec_build copies
 * them, empty ones left out, values that follow each other in memory in
 * one buffer, b's trailer), v->iov growing as needed; pl is kept for the
 * next call (lg_plan_done).  Values in many small buffers (see
 * LG_COPY_BELOW) are copied instead: b gets the whole record, v that one
 * buffer.  The bytes are those lg_rec_build makes.  0 or PD_ERR_NOMEM /
 * PD_ERR_LIMIT. */
int lg_rec_build_iov(pd__buf *b, lg_iov *v, lg_plan *pl, unsigned type,
                     uint64_t seq, size_t n, const pd_key *keys,
                     const pd_bytes *vals);

/* What an attempt's record (LG_ATTEMPT) and its commit's (LG_COMMIT) carry
 * before the batch: two table entries without data, the writer's packed
 * key, then the tag (taglen bytes) as a flat key (docs/log-format.md,
 * "Attempts"). */
typedef struct lg_att_tag {
    const unsigned char *wpk, *tag;
    size_t wlen, taglen;
} lg_att_tag;

/* As lg_rec_build_iov, the table starting with tag's two entries (none
 * when tag is NULL); n may be 0 (a commit: b then holds the whole record,
 * b->len bytes).  Attempts and plain appends build and write their records
 * the same way.  0 or PD_ERR_NOMEM / PD_ERR_LIMIT. */
int lg_rec_build_tagged(pd__buf *b, lg_iov *v, lg_plan *pl, unsigned type,
                        uint64_t seq, const lg_att_tag *tag, size_t n,
                        const pd_key *keys, const pd_bytes *vals);

struct lg_key;
/* As lg_rec_build, for n distinct keys of the index (compaction). */
int lg_rec_build_packed(pd__buf *b, unsigned type, uint64_t seq, size_t n,
                        const struct lg_key *const *keys, const pd_bytes *vals);

/* ----------------------------------------------------------- The store */

/* The shared counters, in the mmap'd state file. */
typedef struct lg_shared {
    char magic[8];      /* "PDLOGST1" once initialised */
    uint64_t seq;       /* last sequence number handed out */
    uint64_t gen;       /* compaction generation (bumped by compact/drop) */
    uint64_t created;   /* segments created (a reader relists when it moves) */
    uint64_t writes;    /* records written or undone (a reader that saw the
                         * same value has nothing new to read) */
    uint64_t compacted; /* `writes` when the last compaction ran */
} lg_shared;

typedef struct lg_ext {
    uint64_t seq, off, len, hash;
    uint32_t seg;
    uint32_t pad;
} lg_ext;

typedef struct lg_key {
    pd__knode node;  /* first: pk points to pk[] below */
    uint64_t floor;  /* extents with seq < floor are gone (delete, set) */
    uint64_t size;   /* bytes of the extents */
    lg_ext *ext;     /* sorted by seq; from the handle's pool (extents.c) */
    uint32_t n, cap; /* cap: 0 or a power of 2 */
    unsigned char pk[];
} lg_key;

/* The extent arrays of a handle's index (extents.c): capacities of 1, 2,
 * 4, ..., LG_XPOOL_MAX extents come from slabs of LG_XSLAB bytes (mapped,
 * aligned to their size), each holding arrays of one capacity, with a free
 * list of its own; a slab whose arrays are all given back is unmapped (one
 * is kept), so keys that grow in step leave no trail of small arrays.
 * Larger arrays are malloc'd.  Zeroed: empty. */
#define LG_XPOOL_CLASSES 9u
#define LG_XPOOL_MAX (1u << (LG_XPOOL_CLASSES - 1))
#define LG_XSLAB ((size_t)1 << 18)
struct lg_xslab;
typedef struct lg_xpool {
    struct lg_xslab *room[LG_XPOOL_CLASSES]; /* slabs with an array free */
    struct lg_xslab *all;                    /* every slab in use */
    struct lg_xslab *spare;                  /* an empty slab kept */
    uint64_t slab_bytes; /* bytes of slabs mapped (the spare included) */
    uint64_t used_bytes; /* bytes of the arrays given out from them */
    uint64_t big_bytes;  /* bytes of malloc'd arrays */
} lg_xpool;

/* Makes room in k for `need` extents (need > k->cap): its capacity becomes
 * the power of 2 at or above max(need, 2 * cap).  0, or PD_ERR_NOMEM (k
 * unchanged). */
int lg_ext_grow(lg_xpool *p, lg_key *k, uint32_t need);
/* After extents were dropped from k: gives its array back when it is empty,
 * moves it to a quarter of its capacity or less when it uses that little
 * (nothing changes when that fails). */
void lg_ext_fit(lg_xpool *p, lg_key *k);
/* Gives k's array back (k has no extents, capacity 0). */
void lg_ext_release(lg_xpool *p, lg_key *k);
/* Unmaps p's slabs, and with them every array of LG_XPOOL_MAX extents or
 * fewer (larger ones are released first, lg_ext_release); p is empty. */
void lg_xpool_free(lg_xpool *p);

typedef struct lg_seg {
    char *name;
    int fd;          /* read-only */
    uint64_t parsed; /* bytes of whole records (or skipped damage) */
    bool compacted;  /* the current compacted segment */
    bool done;       /* a dead writer's torn tail was left out */
    bool commits;    /* the commit log (its writer is never "gone") */
} lg_seg;

struct lg_att;    /* attempt.c */
struct lg_gather; /* gather.c */

/* A read-ahead window (rcache.c). */
#define LG_NWIN 64               /* windows per handle */
#define LG_WIN (128u << 10)      /* bytes per window */
#define LG_WIN_SMALL (16u << 10) /* extents this small go through them */
typedef struct lg_win {
    unsigned char *p; /* LG_WIN bytes, allocated at first use */
    uint64_t off, tick;
    size_t len; /* 0: empty */
    uint32_t seg;
} lg_win;

typedef struct lg_store {
    pd_store base;
    char *path;
    int dirfd, lockfd, statefd;
    lg_shared *sh;
    bool temp, keep, fsync_all;
    pid_t pid;
    int flock_mode; /* 0, LOCK_SH or LOCK_EX: what lockfd holds */

    /* writer */
    int wfd;           /* own segment (O_APPEND), -1 until the first write */
    uint32_t wseg;     /* its index in segs (UINT32_MAX: not listed) */
    char wname[96];    /* its name */
    uint64_t wsize;    /* its size */
    uint64_t wgen;     /* generation it was created in */
    unsigned ncreated; /* segments this handle created (names) */
    pd__buf rec;       /* record being built */
    lg_iov wiov;       /* the record to write (header, table, trailer in rec) */
    lg_plan plan;      /* what building it needs, kept between calls */

    /* reader */
    lg_seg *segs;
    size_t nsegs, capsegs;
    pd__ktab keys;
    uint64_t gen_seen, created_seen, writes_seen;
    bool listed;
    uint64_t base_seq;  /* records at or below it live in the compacted
                         * segment only */
    uint64_t cgen;      /* generation of the compacted segment (0: none) */
    uint64_t max_seq;   /* highest sequence number indexed */
    uint64_t rec_bytes; /* bytes of records indexed (for dead space) */
    uint64_t live_bytes;
    pd__buf rbuf; /* catch-up read buffer */
    /* The keys of the last record applied, in table order, with those it
     * lacked of the record before (apply.c: bit 0 of the pointer set):
     * the next record's entries are tried against them, in order, before
     * a lookup.  hint[0..nhint) holds them, hnext the record being applied
     * (both caphint long).  Only keys of the index (NULL: none); freed by
     * lg_index_reset. */
    lg_key **hint, **hnext;
    size_t nhint, caphint;
    lg_xpool xp; /* the keys' extent arrays */
    lg_win win[LG_NWIN];
    uint64_t win_tick, win_read, win_hit; /* bytes into / out of windows */
    struct lg_gather *gather; /* gather.c's buffers, NULL until used */

    /* damage */
    uint64_t torn;
    uint64_t ndamaged;            /* damaged regions whose keys are unknown */
    char damage[PD__MSG_MAX / 2]; /* the first one, described */
    char notice[PD__MSG_MAX / 2];

    struct lg_att *att; /* attempts (attempt.c), NULL until the first */
} lg_store;

#define SYS pd__sys_table

/* Bytes a writev call of a record takes at most: a page cache write costs
 * more system time in one call of 16 MiB than in 1 MiB ones, and varies
 * more (docs/perf-log.md). */
#define LG_WRITE_PIECE ((size_t)1 << 20)

/* segment.c */
int lg_flock(lg_store *l, int op);
int lg_open_dir(lg_store *l, unsigned flags);
void lg_close_dir(lg_store *l);
/* Writes the record v describes (v consumed) at the end of the handle's
 * segment, in writev calls of at most LG_WRITE_PIECE bytes, then fsyncs it
 * if asked; if that fails, nothing of it stays (see s_undo).  0 or an
 * error naming op and key0. */
int lg_write_iov(lg_store *l, const char *op, const pd_key *key0, bool dosync,
                 lg_iov *v);
/* The next sequence number into *seq; PD_ERR_CORRUPT (recorded on l's
 * handle, naming op) when the counter is at LG_SEQ_MAX. */
int lg_next_seq(lg_store *l, const char *op, uint64_t *seq);
int lg_rm_contents(lg_store *l);
int lg_check_fork(lg_store *l);
/* Replaces the file name in l's directory by the n bytes at buf: writes
 * name.tmp, fsyncs it and renames it over name (the directory is not
 * fsynced).  0, or -1 with errno (name.tmp removed). */
int lg_put_file(lg_store *l, const char *name, const void *buf, size_t n);

/* index.c */
/* pread of exactly n bytes at off: 0, 1 at EOF (errno 0), -1 with errno. */
int lg_pread_all(int fd, void *buf, size_t n, uint64_t off);
int lg_catch_up(lg_store *l, const char *op);
void lg_index_reset(lg_store *l);
int lg_index_rec(lg_store *l, uint32_t seg, uint64_t off, const lg_hdr *h,
                 const unsigned char *table);
lg_key *lg_find(lg_store *l, const pd_key *key);
int lg_read_key(lg_store *l, const lg_key *k, const pd_key *key, pd_result *r,
                const char *op);
int lg_damage_check(lg_store *l, const pd_key *key, const char *op);
int lg_seg_add(lg_store *l, const char *name, int fd, bool compacted);

/* As lg_index_rec past its checks: applies the record's entries (the first
 * `skip` left out) as a record of type h->type and sequence h->seq. */
int lg_index_apply(lg_store *l, uint32_t seg, uint64_t off, const lg_hdr *h,
                   const unsigned char *table, uint32_t skip);

/* attempt.c: the ops, and hooks for the other files. */
int lg_att_begin(pd_store *s, const pd_key *writer, uint64_t attempt,
                 void **impl, unsigned flags);
int lg_att_append(pd_store *s, void *impl, size_t n, const pd_key *keys,
                  const pd_bytes *vals, unsigned flags);
int lg_att_commit(pd_store *s, void *impl, unsigned flags);
int lg_att_abort(pd_store *s, void *impl);
/* An attempt or commit record found by a reader (index.c). */
int lg_att_index(lg_store *l, uint32_t seg, uint64_t off, const lg_hdr *h,
                 const unsigned char *table);
/* The writer leaves its segment (rotation, compaction, an abandoned
 * write): 0 close and remove it as before; 1 close it but leave it on disk
 * (it holds attempt records a later commit may need until the next
 * compaction); 2 neither (an open attempt's records: the segment is kept
 * open and locked until the attempt ends).  Resets the current segment's
 * attempt state. */
int lg_att_retire(lg_store *l);
/* The end of a catch-up: a commit still missing records (written before
 * it) after the catch-up that followed the one that found it is damage.
 * Returns 1 when commits found in this catch-up miss records (the caller
 * then catches up once more), else 0. */
int lg_att_caught_up(lg_store *l);
/* Index reset (readers forget pending attempts), fork, destroy. */
void lg_att_reset(lg_store *l);
void lg_att_fork(lg_store *l);
void lg_att_free(lg_store *l);
/* Compaction: a drop forgets every commit (removes the commit log). */
void lg_att_dropped(lg_store *l);
/* A salvaging compaction at sequence number `base`: rewrites the commit
 * log with its valid records at or below base only (one above it was
 * never read: hidden behind damage) (best effort; the error is recorded,
 * the store stays as it was). */
int lg_att_salvage(lg_store *l, const char *op, uint64_t base);

/* rcache.c: copies len bytes at off of segment si into dst from a window;
 * 0, or 1 when not served that way (the caller reads them itself). */
int lg_win_read(lg_store *l, uint32_t si, uint64_t off, size_t len, void *dst);
void lg_win_reset(lg_store *l); /* with the index */
void lg_win_free(lg_store *l);

/* gather.c: reads the values of the n keys ks[i] (NULL: a key with no
 * value) into r as n values, their extents in file order with a preadv per
 * run of extents at most LG_GATHER_GAP bytes apart, and checks them; an
 * error names op and the key.  For several keys of at most LG_GATHER_MAX
 * extents in all (s_get splits larger batches): it holds about 150 bytes
 * per extent while it runs, and the handle keeps those arrays for the next
 * get up to 2^17 extents (20 MB), plus a 1 MiB staging buffer. */
#define LG_GATHER_GAP 4096u
#define LG_GATHER_MAX ((size_t)1 << 18)
#define LG_GATHER_RUN ((size_t)1 << 20) /* bytes a run spans at most */
#define LG_GATHER_SMALL 2048u           /* extents smaller on average: staged */
int lg_read_keys(lg_store *l, size_t n, const lg_key *const *ks,
                 const pd_key *keys, pd_result *r, const char *op);
void lg_gather_free(lg_store *l); /* its buffers kept between gets */

/* compact.c */
int lg_compact(lg_store *l, bool empty, bool salvage, const char *op);
bool lg_compact_pays(const lg_store *l);

#endif /* PARTD_LOG_H */
