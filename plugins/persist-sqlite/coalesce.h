/*
 * Coalescing one batch before it is written: a delivery that is queued and
 * finished within the same transaction never needs a row, a delivery queued
 * and sent within it is written once, already sent, and of several state
 * changes of one delivery only the last is written.
 */
#ifndef PSQ_COALESCE_H
#define PSQ_COALESCE_H

#include <stddef.h>

#include "queue.h"

/* The tables coalescing uses, kept from batch to batch. Owned by the writer. */
struct psq_coalescer;

struct psq_coalescer *psq_coalescer_new(void);
void psq_coalescer_free(struct psq_coalescer *c);

/*
 * Marks (e->skip = 1) the events of `list` (`n` of them, in seq order) whose
 * effect the rest of the list undoes or that another event can carry, so
 * the transaction ends in the same state without them:
 *  - MSG_QUEUED, MSG_SENT, MSG_RELEASED and MSG_DONE of a delivery whose
 *    MSG_QUEUED comes before its MSG_DONE in the list;
 *  - MSG_SENT and MSG_RELEASED of a delivery whose MSG_DONE follows them
 *    (the DONE deletes the row they would update);
 *  - MSG_SENT and MSG_RELEASED that follow the delivery's MSG_QUEUED: the
 *    QUEUED event takes their state and packet id (e->state, e->packet_id)
 *    and inserts the row that way;
 *  - MSG_SENT and MSG_RELEASED followed by another of the same delivery
 *    (each sets both the state and the packet id: the last one wins);
 *  - a second MSG_QUEUED of a delivery still queued in the list (the
 *    insert would be ignored).
 * Events already marked stay marked (a failed batch is coalesced again with
 * what arrived since). Returns the number of marked events in the list; 0
 * and nothing newly marked when out of memory: coalescing is only an
 * optimisation. One pass over the list. [writer thread]
 */
size_t psq_coalesce(struct psq_coalescer *c, struct psq_event *list, size_t n);

#endif
