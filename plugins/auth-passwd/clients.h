/*
 * The connected clients that have a user name (client id -> user name),
 * kept from the client_connected / client_disconnected hooks so that a
 * reload can disconnect the clients whose user was removed or whose
 * password changed. Thread-safe (one mutex): the hooks run on every worker.
 */
#ifndef AUTH_PASSWD_CLIENTS_H
#define AUTH_PASSWD_CLIENTS_H

#include <stddef.h>

struct client_map;

struct client_map *client_map_new(void);
void client_map_free(struct client_map *m);

/*
 * A connection of client `id` with user `user` started (copied). A
 * takeover connects the new connection before the old one ends, so
 * connections are counted per id and the entry goes when the last ends.
 * Returns 0 or -1 (out of memory: that client is not tracked).
 */
int client_map_add(struct client_map *m, const char *id, const char *user);
void client_map_remove(struct client_map *m, const char *id);

/*
 * Calls keep(arg, user) for every tracked client under the lock and returns
 * a NULL-terminated array of copies of the ids for which it returned 0
 * (caller frees with client_ids_free), or NULL when out of memory.
 */
char **client_map_select(struct client_map *m, int (*keep)(void *arg, const char *user), void *arg);
void client_ids_free(char **ids);

size_t client_map_count(struct client_map *m);

#endif
