/*
 * Test plugin "isession" (tests/integration/test_isession.py): an internal
 * session that behaves like a tiny bridge.
 *   - at init it opens session plugin_opt_id (default "isess-bridge") with
 *     expiry 3600 s and window plugin_opt_window (default 2);
 *   - the session subscribes to "isess/in/#" (QoS 1, no local); control
 *     messages "isess/ctl/CMD" reach the plugin through an internal
 *     subscription (api->subscribe) on the publisher's worker, which hands the
 *     command to the session's home worker through an atomic and a timer
 *     there (session calls belong to the home worker; a control message
 *     through the session itself would wait behind the full window);
 *   - each delivered "isess/in/X" is published back as "isess/out/X" with the
 *     same payload (QoS 1) through session_publish, and reported on
 *     "isess/delivered" as "ID DUP QOS TOPIC";
 *   - acknowledgements: with plugin_opt_ack "now" it acks at once (inside
 *     deliver); with "hold" it keeps ids until "isess/ctl/ack" arrives;
 *   - "isess/ctl/wide" sets the window to 65535 (ABI 1.2 session_window);
 *   - "isess/ctl/redeliver" calls session_redeliver, "isess/ctl/close" closes
 *     the session (not ended) and "isess/ctl/end" ends it; "isess/ctl/reopen"
 *     cannot arrive after a close, so reopening is done by SIGHUP (reload).
 * Reports "isess/opened" with "PRESENT" when the session opens.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "midge/plugin.h"

static const char *const opts[] = {"id", "window", "ack", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("isession", "1.0", "test: an internal session", opts);

struct state {
    const struct midge_api *api;
    midge_plugin *self;
    char id[128];
    unsigned window;
    int hold;
    midge_session *s;    /* home worker only */
    midge_timer *timer;  /* home worker: polls `cmd` */
    atomic_int cmd;      /* 0 none, 'a' ack, 'r' redeliver, 'w' wide, 'c' close, 'e' end */
    atomic_int closed;   /* the session was closed: SIGHUP reopens it */
    uint32_t held[1024];
    unsigned nheld;
};

static void
report(struct state *st, const char *topic, const char *text)
{
    st->api->publish(st->self, topic, text, (uint32_t)strlen(text), 0, 0);
}

static void opened(void *arg, midge_session *s, int present);
static void deliver(void *arg, midge_session *s, const midge_message *msg, int qos, int retain,
                    uint32_t id, int dup);

static const struct midge_session_handlers handlers = {
    .size = sizeof(struct midge_session_handlers), .opened = opened, .deliver = deliver};

/* On the home worker: carries out a control command. */
static void
poll_cmd(void *arg, midge_timer *t)
{
    struct state *st = arg;
    const struct midge_api *api = st->api;
    int cmd = atomic_exchange(&st->cmd, 0);
    unsigned i;

    switch (cmd) {
    case 'a':
        for (i = 0; i < st->nheld; i++) {
            api->session_ack(st->s, st->held[i]);
        }
        st->nheld = 0;
        break;
    case 'r':
        st->nheld = 0; /* they come again */
        api->session_redeliver(st->s);
        break;
    case 'w':
        if (api->session_window(st->s, 65535) != 0) {
            report(st, "isess/error", "session_window failed");
        }
        break;
    case 'c':
    case 'e':
        api->timer_stop(st->self, t);
        st->timer = NULL;
        api->session_close(st->s, cmd == 'e');
        st->s = NULL;
        atomic_store(&st->closed, 1);
        report(st, "isess/closed", cmd == 'e' ? "end" : "close");
        break;
    default:
        break;
    }
}

/* Internal subscription callback: any worker. */
static void
control(void *arg, const midge_message *msg)
{
    struct state *st = arg;
    const char *cmd = st->api->message_topic(msg) + strlen("isess/ctl/");

    atomic_store(&st->cmd, strcmp(cmd, "ack") == 0 ? 'a' : strcmp(cmd, "redeliver") == 0 ? 'r'
                           : strcmp(cmd, "wide") == 0 ? 'w' : strcmp(cmd, "close") == 0 ? 'c'
                           : strcmp(cmd, "end") == 0 ? 'e' : 0);
}

static void
opened(void *arg, midge_session *s, int present)
{
    struct state *st = arg;

    st->s = s;
    if (s == NULL) {
        report(st, "isess/opened", "failed");
        return;
    }
    st->nheld = 0;
    st->timer = st->api->timer_start(st->self, 0.005, 0.005, poll_cmd, st);
    if (st->timer == NULL ||
        st->api->session_subscribe(s, "isess/in/#", 1, MIDGE_SUB_NO_LOCAL) != 0) {
        report(st, "isess/opened", "subscribe failed");
        return;
    }
    report(st, "isess/opened", present ? "1" : "0");
}

static void
deliver(void *arg, midge_session *s, const midge_message *msg, int qos, int retain, uint32_t id,
        int dup)
{
    struct state *st = arg;
    const struct midge_api *api = st->api;
    const char *topic = api->message_topic(msg);
    uint32_t len = 0;
    const void *payload = api->message_payload(msg, &len);
    char buf[512];

    (void)retain;
    snprintf(buf, sizeof(buf), "%u %d %d %s", (unsigned)id, dup, qos, topic);
    report(st, "isess/delivered", buf);
    if (strncmp(topic, "isess/in/", 9) == 0) {
        char out[300];
        snprintf(out, sizeof(out), "isess/out/%s", topic + 9);
        /* A message published as the session itself: no local keeps it from coming back. */
        api->session_publish(s, out, payload, len, 1, 0);
        api->session_publish(s, topic, payload, len, 0, 0);
    }
    if (id != 0) {
        if (st->hold && st->nheld < 1024) {
            st->held[st->nheld++] = id;
        } else if (api->session_ack(s, id) != 0) {
            report(st, "isess/error", "ack failed");
        }
    }
}

static int
configure(struct state *st)
{
    const char *id = st->api->option(st->self, "id");
    const char *w = st->api->option(st->self, "window");
    const char *ack = st->api->option(st->self, "ack");

    snprintf(st->id, sizeof(st->id), "%s", id ? id : "isess-bridge");
    st->window = w ? (unsigned)atoi(w) : 2;
    st->hold = ack != NULL && strcmp(ack, "hold") == 0;
    return st->api->session_open(st->self, st->id, 3600, (uint16_t)st->window, &handlers, st);
}

/* SIGHUP: reopens the session when it was closed (tests reopening). */
static int
reload(void *arg)
{
    struct state *st = arg;

    return atomic_exchange(&st->closed, 0) ? configure(st) : 0;
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .reload = reload,
};

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *st;

    if (!MIDGE_API_HAS(api, session_close)) {
        api->set_error(self, "this broker has no internal sessions");
        return -MIDGE_ENOTSUP;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return -MIDGE_ENOMEM;
    }
    st->api = api;
    st->self = self;
    *state = st;
    api->hooks_set(self, &hooks);
    if (api->subscribe(self, "isess/ctl/#", control, st) == NULL || configure(st) != 0) {
        api->set_error(self, "session_open failed");
        return -MIDGE_EINVAL;
    }
    return 0;
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    free(state);
}
