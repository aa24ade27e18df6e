/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: the private state of attempts, shared by attempt.c (the ops, the
 * writer's pins), pending.c (readers: pending records, commits applied)
 * and commits.c (the commit log and the marker's version).  See attempt.c.
 */
#ifndef PARTD_LOG_ATTEMPT_H
#define PARTD_LOG_ATTEMPT_H

#include "log/log.h"
#include "core/hash.h"

/* ------------------------------------------------------------ The state */

typedef struct lg_pin { /* a segment holding an open attempt's records */
    uint64_t id;
    int fd; /* -1 while it is the current segment (l->wfd) */
    unsigned refs;
} lg_pin;

typedef struct lg_prec { /* a pending attempt record, as a reader found it */
    uint32_t seg;
    bool applied;
    uint64_t off;
    lg_hdr h;
    unsigned char *table;
} lg_prec;

typedef struct lg_pend { /* a reader's view of one instance */
    UT_hash_handle hh;
    uint64_t inst;
    lg_prec *r;
    size_t n, cap;
    uint64_t bytes;
    bool committed;
    uint64_t cseq, cnrecs, cbytes;
    uint32_t cseg;
    uint64_t coff;
    uint64_t cround; /* the catch-up that found the commit */
} lg_pend;

typedef struct lg_won { /* a committer's view: writer -> winning attempt */
    UT_hash_handle hh;
    uint64_t attempt;
    size_t len;
    unsigned char pk[];
} lg_won;

struct lg_att {
    /* writer */
    lg_pin *pins;
    size_t npins, cappins;
    uint64_t pin_ids;
    uint64_t cur_pin; /* pin of the current segment, 0: none */
    bool cur_has;     /* the current segment holds attempt records */
    bool v2;          /* the marker says version 2 */
    /* committer */
    lg_won *won;
    uint64_t cl_off, cl_gen;
    dev_t cl_dev;
    ino_t cl_ino;
    /* reader */
    lg_pend *pend;
    uint64_t round;  /* catch-ups completed */
    size_t awaiting; /* committed instances missing records */
};

typedef struct lg_attempt { /* the ops' impl */
    pid_t pid;
    uint64_t attempt, inst, nrecs, nbytes;
    uint64_t *pins;
    size_t npins, cappins;
    size_t wlen;
    unsigned char wpk[];
} lg_attempt;

/* The writer and the tag of an attempt or commit record's table (checked
 * by lg_table_walk already). */
typedef struct lg_tags {
    const unsigned char *wpk, *tag;
    uint32_t wlen, taglen;
    int n;
} lg_tags;

/* attempt.c */
/* The store's attempt state, allocated at first use (NULL: no memory). */
struct lg_att *lg_att_state(lg_store *l);
/* A packed key, printable, for messages. */
const char *lg_pkshort(const unsigned char *pk, size_t len,
                       char kb[PD__KEYSHORT_MAX]);
/* The writer and tag of an attempt (16-byte tag) or commit (32) record's
 * table (checked by lg_table_walk already): 0, or -1 when malformed. */
int lg_tags_get(const lg_hdr *h, const unsigned char *table, lg_tags *t);

/* commits.c */
/* Opens the commit log and locks it exclusively: 0 (*fdp set), 1 when it
 * does not exist and create is false, or an error (recorded). */
int lg_cl_open(lg_store *l, bool create, int *fdp, const char *op);
/* Reads the commits not seen yet from the commit log (fd, locked) into the
 * winners' table; a torn tail is cut.  0 or an error (recorded). */
int lg_cl_scan(lg_store *l, int fd, const char *op);
lg_won *lg_won_find(struct lg_att *a, const unsigned char *pk, size_t len);
/* Records pk's winner (the first one stays).  0 or PD_ERR_NOMEM. */
int lg_won_add(struct lg_att *a, const unsigned char *pk, size_t len,
               uint64_t attempt);
void lg_won_clear(struct lg_att *a);
/* Format version 2 in the marker (once per handle).  0 or an error. */
int lg_upgrade(lg_store *l, const char *op);

#endif /* PARTD_LOG_ATTEMPT_H */
