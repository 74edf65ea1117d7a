/*
 * The handle of an internal session (api->session_open), shared by
 * plugin_isession.c (open, subscriptions, deliveries, close) and
 * plugin_isession_publish.c (api->session_publish_message). Broker-internal.
 */
#ifndef MIDGE_PLUGIN_ISESSION_H
#define MIDGE_PLUGIN_ISESSION_H

#include "conn.h"
#include "midge/plugin.h"

struct ipub;

/*
 * A plugin's handle. Owned by the broker: linked on its home worker's
 * `isessions` list while open; freed by session_close or at worker shutdown.
 */
struct midge_session {
    struct conn vconn;            /* the stand-in connection; vconn.session is the session */
    struct midge_plugin *plugin;
    struct midge_session_handlers h;
    void *arg;
    uint32_t expiry;
    uint16_t window;
    int open;                     /* attached to its session; 0 once session_close was called */
    int end;                      /* session_close(s, 1) */
    int in_deliver;               /* inside h.deliver */
    struct midge_session *next;   /* worker's list */
    /* session_publish_message calls not routed yet, in call order (plugin_isession_publish.c) */
    struct ipub *pub_head;
    struct ipub *pub_tail;
    int pub_waiting;              /* pub_head waits for an ACL decision */
    size_t id_len;
    char id[];
};

/*
 * The handle is closing (close_run) or its worker stops: every pending
 * session_publish_message gets done(-MIDGE_ESTATE). [home worker]
 */
void isession_pub_abandon(midge_session *ms);

/* 1 when ms is open and the calling thread is its home worker. */
int isession_on_home(const midge_session *ms);

#endif
