/*
 * The client calls of the admin API. api->client_list and api->client_find
 * answer through callbacks on broker threads; these functions wait for
 * them (at most admin->wait_timeout seconds, less when the plugin stops),
 * so a route can answer at once. [HTTP thread]
 */
#ifndef HTTP_ADMIN_CLIENTS_H
#define HTTP_ADMIN_CLIENTS_H

#include <stdint.h>

#include <jansson.h>

#include "admin.h"

/*
 * Every session as a JSON array of client objects (at most `limit`;
 * *truncated 1 when there were more). Returns 0 and *out (caller
 * json_decref), -MIDGE_ESTATE on timeout or stop, -MIDGE_ENOMEM.
 */
int clients_list(struct admin *a, size_t limit, json_t **out, int *truncated);

/*
 * One session as a JSON object: 0 and *out, -MIDGE_ENOENT when there is
 * none, -MIDGE_EINVAL (bad id), -MIDGE_ESTATE (timeout), -MIDGE_ENOMEM.
 */
int clients_find(struct admin *a, const char *client_id, json_t **out);

/* Sums of queued and inflight messages over every session. 0 or negative as above. */
int clients_totals(struct admin *a, uint64_t *queued, uint64_t *inflight);

#endif
