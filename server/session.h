/*
 * Sessions: the MQTT state that outlives a connection (subscriptions,
 * queued and inflight messages, packet ids, will). Each session lives on its
 * home worker (broker_home_worker of its client id) and is touched only
 * there; see docs/architecture.md "Ownership and handoff".
 */
#ifndef MIDGE_SESSION_H
#define MIDGE_SESSION_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct msg;
struct worker;
struct subscriber;

enum qstate {
    QS_QUEUED = 0,   /* not sent yet */
    QS_SENT = 1,     /* PUBLISH sent, awaiting PUBACK / PUBREC */
    QS_RELEASED = 2, /* PUBREL sent, awaiting PUBCOMP */
    QS_DONE = 3,     /* acknowledged out of order; popped when it reaches the head */
};

/*
 * One outgoing message for this session. Owns one reference to `msg` and
 * the `more_ids` array (subscription ids beyond the first).
 */
struct qentry {
    struct msg *msg;
    uint32_t *more_ids;
    uint32_t sub_id;   /* first subscription id; 0: none */
    uint32_t seq;      /* sending sequence; packet id = seq % 65535 + 1 */
    uint64_t delivery_id; /* persisted delivery (persist.c), 0: not persisted */
    uint16_t n_ids;
    uint8_t qos;
    uint8_t retain;
    uint8_t state;     /* enum qstate */
};

/* A FIFO ring of entries. Owned by its session. */
struct qring {
    struct qentry *v;
    uint32_t head;
    uint32_t count;
    uint32_t cap;
};

/* A subscription as the session remembers it (to remove it from the trie at the end). */
struct sess_sub {
    char *filter;
    uint8_t opts;
    uint32_t sub_id;
};

/*
 * Owned by its worker's session table; freed by session_destroy() on that
 * worker. `conn` is the live connection or NULL; the connection points back.
 */
struct session {
    uint64_t uid;
    struct worker *w;
    struct subscriber *sub;   /* routing handle: one reference */
    struct conn *conn;
    uint8_t version;
    uint32_t expiry;          /* Session Expiry Interval, s; UINT32_MAX: never */
    double expire_at;         /* disconnected: when it ends; 0 while connected */
    struct qring inflight;    /* sent, unacknowledged QoS 1/2, in send order */
    struct qring queue;       /* waiting: offline, window full or output capped */
    size_t queue_bytes;
    uint32_t next_seq;
    uint8_t *in_qos2;         /* bitmap of packet ids awaiting PUBREL; lazily allocated */
    uint32_t in_qos2_count;
    struct msg *will;         /* one reference, or NULL */
    uint32_t will_delay;
    double will_at;           /* pending delayed will: publish time; 0: none */
    struct sess_sub *subs;
    uint32_t nsubs;
    uint32_t subcap;
    uint32_t *sub_index;      /* filter -> subs[] position + 1 (0: empty), open addressing; built
                                 once a session has SUB_INDEX_MIN filters so a client with 100,000
                                 costs no linear scan per SUBSCRIBE; owned, NULL below that */
    uint32_t sub_index_cap;   /* slots, a power of two >= 2 * subcap */
    uint16_t client_id_len;
    uint8_t pressing;         /* counted in broker.pressure (session_press_update) */
    uint8_t persist;          /* outlives its connection and a persistence plugin keeps it */
    uint64_t dropped;         /* messages dropped for this session (logs) */
    uint64_t dropped_logged;  /* value of `dropped` at the last drop log line */
    double drop_log_at;       /* when that line was written */
    struct session *next_id;  /* hash chains, owned by the table */
    struct session *next_uid;
    struct session *all_next; /* worker list, for timers */
    struct session *all_prev;
    char client_id[];         /* NUL-terminated, stored with the session */
};

/* Creates a worker's session table. */
struct sessions *sessions_new(void);

/* Destroys every session of a table (shutdown; no wills). */
void sessions_free(struct sessions *t);

/* The worker's sessions, linked by all_next. [worker thread] */
struct session *sessions_all(struct worker *w);

struct session *session_find(struct worker *w, const char *id, size_t len);
struct session *session_find_uid(struct worker *w, uint64_t uid);

/* Creates a session on worker w. Returns NULL when out of memory. [worker thread] */
struct session *session_new(struct worker *w, const char *id, size_t len);

/*
 * Ends a session: removes its subscriptions from the trie, drops its queues
 * and will, frees it. The connection, if any, must already be detached.
 */
void session_destroy(struct session *s);

/*
 * Delivers one message copy to the session: sent now when connected and
 * allowed (window, output cap), else queued within the limits, else dropped
 * and counted. Takes its own reference to m; `ids` is borrowed.
 * [worker thread]
 */
void session_deliver(struct session *s, struct msg *m, uint8_t qos, uint8_t retain,
                     uint32_t sub_id, const uint32_t *more_ids, uint16_t n_ids);

/* session_deliver for a delivery already announced to persistence (id != 0). */
void session_deliver_id(struct session *s, struct msg *m, uint8_t qos, uint8_t retain,
                        uint32_t sub_id, const uint32_t *more_ids, uint16_t n_ids,
                        uint64_t delivery_id);

/*
 * Restore: appends a stored delivery (queued, or inflight with its packet id
 * in send order). Returns 0 or -1 (bad packet id order, out of memory).
 */
int session_restore_delivery(struct session *s, struct msg *m, uint8_t qos, uint8_t retain,
                             uint64_t delivery_id, int state, uint16_t pid);

/* Whether the session is persisted now (persistence plugin and expiry > 0); emits the change. */
void session_persist_update(struct session *s, int connected);

/*
 * Back-pressure bookkeeping: a session whose client is reading but falls
 * behind (queue above a soft limit or output above CONN_OUT_CAP) counts in
 * broker.pressure, which makes every worker pause its publishers. A client
 * that stopped reading does not count: it only loses its own messages.
 * An internal session "reads" while its plugin acknowledges deliveries (a
 * bridge whose link is up); its queue grows past its window (ABI 1.2
 * session_window).
 */
void session_press_update(struct session *s);

/* Sends queued messages while the window and the output cap allow. */
void session_pump(struct session *s);

/*
 * A connection took this session over or resumed it: resend the inflight
 * messages (DUP set, PUBREL for released ones) in order, then the queue
 * [MQTT-4.4.0-1].
 */
void session_resume(struct session *s);

/*
 * Completes inflight message `pid` whatever its QoS (an internal session's
 * plugin is done with it). Returns 0, or -1 when no such message is in flight.
 */
int session_release(struct session *s, uint16_t pid);

/* Handles PUBACK / PUBREC / PUBCOMP from the client. Returns 0, or -1 for a protocol error. */
int session_ack(struct session *s, int type, uint16_t pid, uint8_t rc);

/* Drops every inflight/queued entry, subscription kept (clean start on an existing session). */
void session_clear_messages(struct session *s);

/* Publishes and drops the session's will now, if it has one. */
void session_publish_will(struct session *s);

/*
 * The connection went away. `send_will` says whether the will applies
 * (abnormal close, or v5 DISCONNECT 0x04). Starts the will delay and the
 * session expiry, or destroys the session at once when it expires now.
 */
void session_detach(struct session *s, int send_will);

/* 1-second housekeeping: delayed wills and session expiry. [worker thread] */
void sessions_tick(struct worker *w, double now);

/*
 * Inbound QoS 2 packet ids awaiting PUBREL. mark returns 1 when the id was
 * already awaiting (a resent PUBLISH: do not deliver again), 0 when newly
 * marked, -1 when out of memory. release returns 1 when the id was awaiting.
 */
int session_qos2_mark(struct session *s, uint16_t pid);
int session_qos2_release(struct session *s, uint16_t pid);

/* Removes/updates the subscription records of a session (trie updated by the caller). */
int session_sub_add(struct session *s, const char *filter, size_t len, uint8_t opts,
                    uint32_t sub_id);
int session_sub_remove(struct session *s, const char *filter, size_t len);

#endif
