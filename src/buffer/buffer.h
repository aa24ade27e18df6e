/*
 * Buffer internals exposed for tests.  Not part of the public API.
 */
#ifndef PARTD_BUFFER_H
#define PARTD_BUFFER_H

#include "core/internal.h"

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

#endif /* PARTD_BUFFER_H */
