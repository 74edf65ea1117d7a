/*
 * Persistence, broker side (DESIGN.md section 5): the event stream to the
 * persistence plugin, acknowledgements held until the plugin reports the
 * events behind them durable, and the restore at start.
 *
 * Without a persistence plugin `persist_active` is 0 and every call site
 * is one test of it.
 */
#ifndef MIDGE_PERSIST_H
#define MIDGE_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include "midge/plugin.h"

struct conn;
struct msg;
struct session;
struct worker;

/* A plugin with a persist hook is loaded. Fixed after load. */
extern int persist_active;

/* Load time: p has the persist hook (only one may). Main thread. */
void persist_set_plugin(struct midge_plugin *p);

/* Events. [the thread changing the state; see plugin.h struct midge_persist_event] */
void persist_session(const struct session *s, int connected);
void persist_session_end(const struct session *s);
void persist_sub(const struct session *s, const char *filter, size_t len, uint8_t opts,
                 uint32_t sub_id, int add);
/* A new delivery id and its MSG_QUEUED event. */
uint64_t persist_queued(const char *client_id, struct msg *m, int qos, int retain);
void persist_delivery(int type, const char *client_id, uint64_t delivery_id, uint16_t pid);
void persist_qos2_in(const struct session *s, uint16_t pid, int marked);
void persist_will(const struct session *s);
/* Retained store change for m's topic (set, or clear when m has no payload). Under the store's lock. */
void persist_retained(struct msg *m);

/*
 * The last event sequence number this thread emitted: read it before and
 * after handling a packet to know whether its acknowledgement must wait.
 */
uint64_t persist_thread_mark(void);

/* 1 while the plugin reports failing storage: QoS 1/2 publishes are refused. */
int persist_refusing(void);

/*
 * Sends an acknowledgement (PUBACK/PUBREC/...) once every event up to
 * `need` is durable, and after any acknowledgement held before it on this
 * connection (MQTT keeps acks in order). Returns 0 or -1 (out of memory,
 * the caller fails the connection). [worker thread]
 */
int persist_send_ack_slow(struct conn *c, int type, uint16_t pid, uint8_t rc, uint64_t need);

/*
 * As persist_send_ack_slow, and also after api->ack_release reached `hold`
 * (0: no plugin hold). [worker thread]
 */
int persist_send_ack_held(struct conn *c, int type, uint16_t pid, uint8_t rc, uint64_t need,
                          uint64_t hold);

/* Some plugin has the publish_accepted hook, so acks may be held (persist_send_ack takes the slow path). */
extern int persist_holds_possible;

/* proto.c: sends an acknowledgement now. */
int proto_send_ack(struct conn *c, int type, uint16_t pid, uint8_t rc);

/* Without persistence this is proto_send_ack(): the publish path pays one test. */
static inline int
persist_send_ack(struct conn *c, int type, uint16_t pid, uint8_t rc, uint64_t need)
{
    return persist_active || persist_holds_possible ? persist_send_ack_slow(c, type, pid, rc, need)
                                                    : proto_send_ack(c, type, pid, rc);
}

/* Runs fn(c, arg) when `need` is durable, in order with held acks; free_fn(arg) if dropped. */
int persist_after(struct conn *c, uint64_t need, void (*fn)(struct conn *c, void *arg),
                  void (*free_fn)(void *arg), void *arg);

/* 1 when c has something held (later acknowledgements must queue behind it). */
int persist_conn_holding(const struct conn *c);

/* The connection is being freed: drop what it holds. [worker thread] */
void persist_conn_free(struct conn *c);

/* API entries. [any thread] */
void persist_durable(midge_plugin *self, uint64_t seq);
void persist_failing(midge_plugin *self, int failing);
int persist_ack_hold(midge_plugin *self, midge_client *client, uint64_t seq);
void persist_ack_release(midge_plugin *self, uint64_t seq);

/*
 * Start-up, workers running, listeners not yet open: the plugin's restore
 * hook, then waits until every restored item reached its worker. Returns 0
 * or -1 (the message is in err). Main thread.
 */
int persist_restore(char *err, size_t errlen);

int persist_restore_session(midge_plugin *self, const char *client_id, uint32_t expiry,
                            int protocol, uint32_t expires_in);
int persist_restore_subscription(midge_plugin *self, const char *client_id, const char *filter,
                                 int options, uint32_t sub_id);
int persist_restore_retained(midge_plugin *self, const midge_message *msg);
int persist_restore_message(midge_plugin *self, const char *client_id, uint64_t delivery_id,
                            const midge_message *msg, int qos, int retain, int state,
                            uint16_t packet_id);
int persist_restore_qos2_in(midge_plugin *self, const char *client_id, uint16_t packet_id);
int persist_restore_will(midge_plugin *self, const char *client_id, const midge_message *will,
                         uint32_t delay);

#endif
