/*
 * The libmicrohttpd daemon: one internal thread polls every connection
 * and runs the routes. Requests are bounded (header memory, body size,
 * connections, idle time); authentication happens before a route runs.
 */
#ifndef HTTP_ADMIN_SERVER_H
#define HTTP_ADMIN_SERVER_H

#include <stddef.h>
#include <sys/socket.h>

#include "admin.h"

#define HTTP_BODY_MAX 4096 /* no route takes a body: anything larger is refused with 413 */

/* What the daemon listens on and how. Strings borrowed during server_start. */
struct server_conf {
    const char *listen;   /* "ADDRESS:PORT", "[V6]:PORT" */
    const char *certfile; /* both set: HTTPS */
    const char *keyfile;
    unsigned max_connections;
};

/*
 * A listen string as a socket address. Returns 0, or -1 with the reason in
 * err. *loopback is 1 for 127.0.0.0/8 and ::1.
 */
int server_parse_listen(const char *listen, struct sockaddr_storage *out, int *loopback,
                        char *err, size_t errlen);

/*
 * Starts the daemon and its thread. Returns it (owned by the caller, freed
 * by server_stop), or NULL with the reason in err. [main thread: init]
 */
struct http_server *server_start(struct admin *a, const struct server_conf *conf, char *err,
                                 size_t errlen);

/* The port it listens on (useful with port 0). */
unsigned server_port(const struct http_server *s);

/* Stops accepting, waits for the thread (running requests finish) and frees. */
void server_stop(struct http_server *s);

#endif
