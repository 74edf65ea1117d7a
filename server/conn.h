/*
 * A client connection: socket, input remainder, output buffer, protocol
 * state. Owned by exactly one worker at a time (it moves once, to its
 * session's home worker, right after CONNECT). Freed by that worker after
 * conn_close() at the end of the loop iteration.
 */
#ifndef MIDGE_CONN_H
#define MIDGE_CONN_H

#include <ev.h>
#include <netinet/in.h>
#include <stdint.h>

#include "outbuf.h"

struct worker;
struct session;
struct listener;
struct mqtt_packet;

enum conn_state {
    CONN_NEW = 0,    /* waiting for CONNECT */
    CONN_ACTIVE = 1, /* CONNACK sent */
    CONN_CLOSED = 2,
};

enum conn_auth {
    AUTH_NONE = 0,
    AUTH_DONE = 1,
};

struct auth_wait;
struct plugin_slot;
struct eauth;
struct held_ring;
struct midge_session;
struct xport;

/* The peer's address, kept binary (an idle connection should cost little); see conn_addr(). */
struct peer {
    uint8_t family; /* AF_INET, AF_INET6, or 0 when unknown */
    uint16_t port;
    uint8_t ip[16];
};

struct conn {
    ev_io io;              /* one watcher: EV_READ unless paused, EV_WRITE while output waits */
    struct worker *w;
    struct listener *listener;
    int fd;
    uint8_t state;         /* enum conn_state */
    uint8_t version;       /* protocol level; 0 before CONNECT */
    uint8_t on_dirty;      /* linked on w->dirty */
    uint8_t read_paused;
    uint8_t want_write;    /* the socket was full: wait for EV_WRITE */
    uint8_t io_events;     /* events `io` was last started with */
    uint8_t will_cancelled; /* clean DISCONNECT: no will */
    uint8_t is_publisher;  /* has sent PUBLISH: paused under back-pressure */
    uint8_t clean_start;
    uint8_t auth_state;    /* enum conn_auth */
    uint8_t auth_verdict;  /* plugin_result once auth_state is AUTH_DONE */
    uint8_t auth_reason;
    uint8_t auth_any;      /* some auth hook applied to this client */
    uint8_t got_disconnect; /* the client sent DISCONNECT, with disconnect_rc */
    uint8_t disconnect_rc;
    uint8_t will_acl_done; /* the CONNECT's will passed an ACL decision that was pending */
    uint8_t rd_eof;        /* end of input seen while a decision was pending (see hold_input) */
    struct auth_wait *auth_wait; /* pending plugin decision (plugin_hooks.c), or NULL */
    uint16_t keepalive;    /* effective keep alive, s */
    uint16_t recv_max_out; /* client's Receive Maximum: our QoS>0 window */
    uint16_t alias_max;    /* Topic Alias Maximum we granted */
    uint32_t max_packet_out; /* client's Maximum Packet Size; 0: none */
    unsigned handoff_to;   /* set by proto_connect with PROTO_HANDOFF */
    double last_rx;
    double last_progress;  /* last time a write to the socket moved data */
    double created;
    uint64_t connected_us; /* wall clock at CONNACK (us since the epoch): orders takeovers
                              across brokers (api->client_session_list) */
    uint8_t *inbuf;        /* unparsed input remainder; NULL when empty */
    uint32_t inlen;
    uint32_t incap;
    struct outbuf out;
    struct session *session;
    char **aliases;        /* inbound topic aliases [1..alias_max]; lazily allocated */
    char *username;        /* owned copy, or NULL */
    char *client_id;       /* owned copy (logs), set at CONNECT */
    struct conn *next;     /* worker's list */
    struct conn *prev;
    struct conn *dirty_next;
    struct conn *grave_next;
    struct peer peer;
    char *addr_str;        /* formatted peer address for plugins; lazily allocated */
    struct plugin_slot *pslots; /* per-plugin client data [plugins_count]; lazily allocated */
    uint8_t *connect_uprops;    /* CONNECT user properties (encoded) for plugins, or NULL */
    uint32_t connect_uprops_len;
    struct eauth *eauth;        /* MQTT 5 enhanced authentication state, or NULL */
    struct midge_session *sink; /* set on the stand-in connection of an internal session */
    struct held_ring *held;     /* acks waiting for durability (persist.c), or NULL */
    uint64_t ack_hold;          /* api->ack_hold of the PUBLISH being handled, 0 none */
    struct xport *xp;      /* TLS/WebSocket layers (xport.c), owned; NULL: plain TCP */
};

/* "ip:port" / "[ip6]:port" of the peer, in a buffer of the calling thread (next call overwrites). */
const char *conn_addr(const struct conn *c);

/* Output above this is "capped": QoS 0 dropped, QoS 1/2 left in the session queue. */
#define CONN_OUT_CAP (1024 * 1024)
/* The largest packet before CONNACK (CONNECT, AUTH), whatever max_packet_size says: an
 * unauthenticated client cannot make the broker buffer more. A CONNECT with every
 * string at its 65535-byte maximum is ~330 KB. */
#define CONN_CONNECT_MAX (1024 * 1024)
/* Unparsed input kept while a plugin decides (c->auth_wait). */
#define CONN_HOLD_MAX (64 * 1024)
/* A client that is reading (see conn_progressing) may go this far past the
 * cap while back-pressure slows the publishers down. */
#define CONN_OUT_HARD (8 * CONN_OUT_CAP)

/* 1 when the client took data from its socket recently: slow, not stalled. */
int conn_progressing(const struct conn *c);

/* Adopts a new socket on worker w. Returns NULL (and closes fd) on failure. */
struct conn *conn_new(struct worker *w, int fd, struct listener *l);

/* Takes over a connection handed off by another worker and processes its pending input. */
void conn_adopt(struct worker *w, struct conn *c);

/*
 * Closes the connection: sends a v5 DISCONNECT with `rc` when rc != 0 and the
 * connection is active, flushes what it can, detaches the session (will per
 * `send_will`), logs `reason`. The struct is freed later in the loop.
 */
void conn_close(struct conn *c, uint8_t rc, int send_will, const char *reason);

/* Encodes a packet into the output buffer. Returns 0, or -1 (out of memory / too big). */
int conn_send(struct conn *c, const struct mqtt_packet *p);

/* Schedules a flush at the end of this loop iteration. */
void conn_mark_dirty(struct conn *c);

/* Flushes output now. Returns 0, or -1 when the connection was closed. */
int conn_flush(struct conn *c);

/* Flushes every dirty connection and frees closed ones (end of an iteration). */
void conn_flush_dirty(struct worker *w);
void conn_reap(struct worker *w);

/* 1-second housekeeping: keep alive [MQTT-3.1.2-24] and connect timeout. */
void conns_tick(struct worker *w, double now);

/*
 * Parses input kept while the connection waited (for a plugin decision) and
 * reads from the socket again. [worker thread]
 */
void conn_continue(struct conn *c);

/*
 * Handles what the client already sent on a connected socket (up to
 * CONN_HOLD_MAX), before its session is taken over by a new connection.
 * The connection may be closed on return. [worker thread]
 */
void conn_drain(struct conn *c);

/* Stops/restarts reading (back-pressure). */
void conn_pause_read(struct conn *c);
void conn_resume_read(struct conn *c);

#endif
