/*
 * Coalescing one batch before it is written: a delivery that is queued and
 * finished within the same transaction never needs a row.
 */
#ifndef PSQ_COALESCE_H
#define PSQ_COALESCE_H

#include <stddef.h>

#include "queue.h"

/*
 * Marks (e->skip = 1) the events of `list` whose effect the rest of the list
 * undoes, so the transaction ends in the same state without them:
 *  - MSG_QUEUED, MSG_SENT, MSG_RELEASED and MSG_DONE of a delivery whose
 *    MSG_QUEUED and MSG_DONE are both in the list;
 *  - MSG_SENT and MSG_RELEASED of a delivery whose MSG_DONE is in the list
 *    (the DONE deletes the row they would update).
 * Returns the number marked, or 0 when out of memory (nothing is marked:
 * coalescing is only an optimisation). [writer thread]
 */
size_t psq_coalesce(struct psq_event *list, size_t n);

#endif
