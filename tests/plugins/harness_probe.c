/*
 * A plugin that uses every ABI 1.0 addition, for the harness suites
 * (tests/unit/test_harness_*.c); see harness_probe.h. Linked into the test
 * programs, loaded with MIDGE_TEST_LINKED_PLUGIN.
 *
 * auth checks the password like a plugin with a slow backend would: the
 * hook answers PENDING, the check runs through api->run_blocking, its done
 * completes the ticket. enhanced_auth speaks two toy methods: "TOY"
 * (challenge, response, final data) and "ASYNC" (PENDING, completed by the
 * test through api->complete_auth).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <midge/plugin.h>

#include "harness_probe.h"

static const char *const probe_opts[] = {"password", "subscribe", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("probe", "1.0", "exercises every ABI 1.0 addition", probe_opts);

/* One blocking password check. Owned by the job: freed in done. */
struct check {
    struct probe *pr;
    midge_ticket *ticket;
    char password[64];
    int ok;
};

static void
copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

static void
probe_client_free(void *data)
{
    struct probe_client *pc = data;

    pc->pr->client_frees++;
    free(pc);
}

/* [run_blocking worker] */
static void
check_work(void *arg)
{
    struct check *ck = arg;

    ck->pr->work_thread = pthread_self();
    ck->ok = strcmp(ck->password, ck->pr->password) == 0;
}

/* [the loop of the auth hook] */
static void
check_done(void *arg)
{
    struct check *ck = arg;
    const struct midge_api *api = ck->pr->api;

    ck->pr->done_thread = pthread_self();
    api->metric_observe(ck->pr->check_secs, ck->ok ? 0.5 : 1.5);
    api->complete(ck->ticket, ck->ok ? MIDGE_ALLOW : MIDGE_DENY, ck->ok ? 0 : 0x86);
    free(ck);
}

/* An ACL decision made on the pool: topics under async/ (".../no" denied). */
struct acl_job {
    const struct midge_api *api;
    midge_ticket *ticket;
    int allow;
};

/* [pool thread] */
static void
acl_work(void *arg)
{
    struct acl_job *j = arg;

    j->api->complete(j->ticket, j->allow ? MIDGE_ALLOW : MIDGE_DENY, j->allow ? 0 : 0x87);
}

/* [the loop of the acl hook] */
static void
acl_done(void *arg)
{
    free(arg);
}

/* deny/...: denied at once; async/...: decided on the pool (PENDING); else DEFER. */
static int
probe_acl(void *state, midge_client *c, const struct midge_acl_request *req, uint8_t *reason,
          midge_ticket *ticket)
{
    struct probe *pr = state;
    struct acl_job *j;

    (void)c;
    if (strncmp(req->topic, "deny/", 5) == 0) {
        *reason = 0x87;
        return MIDGE_DENY;
    }
    if (strncmp(req->topic, "async/", 6) != 0) {
        return MIDGE_DEFER;
    }
    if (ticket == NULL) {
        return MIDGE_PENDING; /* RECEIVE has no ticket: the broker applies the timeout verdict */
    }
    j = malloc(sizeof(*j));
    if (j == NULL) {
        return MIDGE_DENY;
    }
    j->api = pr->api;
    j->ticket = ticket;
    j->allow = strstr(req->topic, "/no") == NULL;
    if (pr->api->run_blocking(pr->self, acl_work, acl_done, j) != 0) {
        free(j);
        return MIDGE_DENY;
    }
    return MIDGE_PENDING;
}

static int
probe_auth(void *state, midge_client *c, const struct midge_auth_request *req, uint8_t *reason,
           midge_ticket *ticket)
{
    struct probe *pr = state;
    const struct midge_api *api = pr->api;
    struct midge_tls_info tls;
    struct probe_client *pc;
    struct check *ck;
    size_t pos = 0;
    const char *k;
    const char *v;
    size_t kl;
    size_t vl;

    pr->hook_thread = pthread_self();
    api->metric_add(pr->auth_total, 1);
    copy_str(pr->listener, sizeof(pr->listener), api->client_listener_name(c));
    copy_str(pr->peer_ip, sizeof(pr->peer_ip), api->client_peer_ip(c));
    pr->peer_port = api->client_peer_port(c);
    pr->props[0] = '\0';
    while (api->client_user_property_next(c, &pos, &k, &kl, &v, &vl)) {
        size_t n = strlen(pr->props);
        snprintf(pr->props + n, sizeof(pr->props) - n, "%.*s=%.*s;", (int)kl, k, (int)vl, v);
    }
    memset(&tls, 0, sizeof(tls));
    tls.size = sizeof(tls);
    pr->tls_rc = api->client_tls(c, &tls);
    copy_str(pr->tls_subject, sizeof(pr->tls_subject), pr->tls_rc == 0 ? tls.subject : NULL);
    pr->tls_verified = pr->tls_rc == 0 ? tls.verified : -1;

    if (api->client_data(pr->self, c) == NULL) {
        pc = calloc(1, sizeof(*pc));
        if (pc != NULL) {
            pc->pr = pr;
            api->client_data_set(pr->self, c, pc, probe_client_free);
        }
    }

    ck = calloc(1, sizeof(*ck));
    if (ck == NULL) {
        return MIDGE_DENY;
    }
    ck->pr = pr;
    ck->ticket = ticket;
    if (req->password != NULL) {
        snprintf(ck->password, sizeof(ck->password), "%.*s", (int)req->password_len,
                 (const char *)req->password);
    }
    pr->blocking_rc = api->run_blocking(pr->self, check_work, check_done, ck);
    if (pr->blocking_rc != 0) {
        free(ck);
        *reason = 0x89; /* server busy */
        return MIDGE_DENY;
    }
    return MIDGE_PENDING;
}

static void
probe_connected(void *state, midge_client *c)
{
    struct probe *pr = state;
    struct probe_client *pc = pr->api->client_data(pr->self, c);

    if (pc != NULL) {
        pr->connects_seen = ++pc->connects;
    }
    pr->api->metric_add(pr->clients, 1);
}

static void
probe_disconnected(void *state, midge_client *c, int reason)
{
    struct probe *pr = state;

    (void)c;
    (void)reason;
    pr->api->metric_add(pr->clients, -1);
}

static void
on_found(void *arg, const struct midge_client_info *info)
{
    struct probe *pr = arg;

    pr->found = info != NULL;
    if (info != NULL) {
        copy_str(pr->found_user, sizeof(pr->found_user), info->username);
        copy_str(pr->found_address, sizeof(pr->found_address), info->address);
        pr->found_connected = info->connected;
        pr->found_queued = info->queued;
    }
}

static void
on_message(void *arg, const midge_message *msg)
{
    struct probe *pr = arg;

    pr->sub_msgs++;
    copy_str(pr->sub_topic, sizeof(pr->sub_topic), pr->api->message_topic(msg));
}

static void
probe_tick(void *state)
{
    struct probe *pr = state;

    if (pr->find_id[0] != '\0') {
        pr->api->client_find(pr->self, pr->find_id, on_found, pr);
    }
    if (pr->kick_id[0] != '\0') {
        pr->api->client_disconnect(pr->self, pr->kick_id, 0x98);
    }
    if (pr->tick_filter[0] != '\0' && pr->tick_sub == NULL) {
        pr->tick_sub = pr->api->subscribe(pr->self, pr->tick_filter, on_message, pr);
    }
}

static int
probe_message_in(void *state, midge_client *c, const midge_message *msg, midge_message_edit *edit,
                 uint8_t *reason)
{
    struct probe *pr = state;
    const struct midge_api *api = pr->api;
    const char *topic = api->message_topic(msg);
    size_t pos = 0;
    const char *k;
    const char *v;
    size_t kl;
    size_t vl;

    (void)c;
    pr->last_edit = edit;
    pr->first_prop[0] = '\0';
    if (api->message_user_property_next(msg, &pos, &k, &kl, &v, &vl)) {
        snprintf(pr->first_prop, sizeof(pr->first_prop), "%.*s=%.*s", (int)kl, k, (int)vl, v);
    }
    if (strncmp(topic, "drop/", 5) == 0) {
        *reason = 0x87;
        return MIDGE_DENY;
    }
    if (strncmp(topic, "keep/", 5) == 0 && pr->kept == NULL) {
        pr->kept = api->message_ref(msg);
    }
    if (strncmp(topic, "rewrite/", 8) == 0) {
        uint32_t len;
        const char *payload = api->message_payload(msg, &len);
        char upper[64];
        char newtopic[128];
        uint32_t i;

        for (i = 0; i < len && i < sizeof(upper); i++) {
            upper[i] = (char)(payload[i] >= 'a' && payload[i] <= 'z' ? payload[i] - 32
                                                                      : payload[i]);
        }
        snprintf(newtopic, sizeof(newtopic), "rewritten/%s", topic + 8);
        pr->bad_edit_rc = api->edit_topic(edit, "a/+");
        api->edit_topic(edit, newtopic);
        api->edit_payload(edit, upper, i);
        api->edit_user_property_add(edit, "seen-by", api->instance_name(pr->self));
        return MIDGE_ALLOW;
    }
    return MIDGE_DEFER;
}

static void
probe_message_out(void *state, midge_client *c, const midge_message *msg)
{
    struct probe *pr = state;

    (void)c;
    pr->out_count++;
    copy_str(pr->out_topic, sizeof(pr->out_topic), pr->api->message_topic(msg));
}

static void
probe_subscribed(void *state, midge_client *c, const char *filter, int qos)
{
    struct probe *pr = state;

    (void)c;
    copy_str(pr->subscribed, sizeof(pr->subscribed), filter);
    pr->subscribed_qos = qos;
}

static void
probe_unsubscribed(void *state, midge_client *c, const char *filter)
{
    struct probe *pr = state;

    (void)c;
    copy_str(pr->unsubscribed, sizeof(pr->unsubscribed), filter);
}

static void
probe_session_created(void *state, const char *client_id)
{
    (void)client_id;
    ((struct probe *)state)->sessions_created++;
}

static void
probe_session_ended(void *state, const char *client_id)
{
    (void)client_id;
    ((struct probe *)state)->sessions_ended++;
}

static void
probe_will(void *state, const char *client_id, const midge_message *will)
{
    struct probe *pr = state;
    uint32_t len;
    const char *payload = pr->api->message_payload(will, &len);

    (void)client_id;
    copy_str(pr->will_topic, sizeof(pr->will_topic), pr->api->message_topic(will));
    snprintf(pr->will_payload, sizeof(pr->will_payload), "%.*s", (int)len,
             payload != NULL ? payload : "");
}

static int
probe_enhanced_auth(void *state, midge_client *c, const struct midge_enhanced_auth_request *req,
                    uint8_t *reason, midge_ticket *ticket)
{
    struct probe *pr = state;
    const struct midge_api *api = pr->api;

    pr->ea_step = req->step;
    pr->ea_reauth = req->reauth;
    snprintf(pr->ea_password, sizeof(pr->ea_password), "%.*s", (int)req->password_len,
             req->password != NULL ? (const char *)req->password : "");
    if (strcmp(req->method, "ASYNC") == 0) {
        pr->ea_ticket = ticket;
        return MIDGE_PENDING;
    }
    if (strcmp(req->method, "TOY") != 0) {
        return MIDGE_DEFER;
    }
    if (req->step == 0) {
        pr->ea_data_rc = api->auth_data_set(c, "challenge", 9);
        return MIDGE_CONTINUE;
    }
    if (req->data != NULL && req->data_len == 8 && memcmp(req->data, "response", 8) == 0) {
        pr->ea_data_rc = api->auth_data_set(c, "final", 5);
        return MIDGE_ALLOW;
    }
    *reason = 0x87;
    return MIDGE_DENY;
}

static void
probe_persist(void *state, const struct midge_persist_event *ev)
{
    struct probe *pr = state;

    /* Queue only: keep what the writer needs, reference the message. */
    pr->persist_events++;
    pr->persist_last_type = ev->type;
    pr->persist_last_seq = ev->seq;
    if (ev->msg != NULL) {
        if (pr->persist_msg != NULL) {
            pr->api->message_unref(pr->persist_msg);
        }
        pr->persist_msg = pr->api->message_ref(ev->msg);
    }
}

/* Declares everything persisted so far durable; see harness_probe.h. */
void
probe_flush(struct probe *pr)
{
    pr->api->persist_durable(pr->self, pr->persist_last_seq);
}

/* Content type "text/plain" and user property a=b, as message_properties encodes them. */
static const uint8_t restored_props[] = {
    0x03, 0x00, 0x0a, 't', 'e', 'x', 't', '/', 'p', 'l', 'a', 'i', 'n',
    0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b',
};

static int
probe_restore(void *state)
{
    struct probe *pr = state;
    const struct midge_api *api = pr->api;
    const midge_message *m;
    int *rc = pr->restore_rc;

    if (pr->restore_fail) {
        api->set_error(pr->self, "store is corrupt");
        return -MIDGE_EINVAL;
    }
    m = api->message_new(pr->self, "a/state", "on", 2, 1, 1, restored_props,
                         sizeof(restored_props), 30, 77);
    if (m == NULL) {
        return -MIDGE_ENOMEM;
    }
    pr->restored_msg_id = api->message_id(m);
    rc[0] = api->restore_session(pr->self, "s1", 3600, 5, 120);
    rc[1] = api->restore_subscription(pr->self, "s1", "a/#", 1, 0);
    rc[2] = api->restore_retained(pr->self, m);
    rc[3] = api->restore_message(pr->self, "s1", 7, m, 1, 0, MIDGE_DELIVERY_SENT, 3);
    rc[4] = api->restore_qos2_in(pr->self, "s1", 9);
    rc[5] = api->restore_will(pr->self, "s1", m, 10);
    rc[6] = api->restore_subscription(pr->self, "ghost", "a", 0, 0); /* no such session */
    rc[7] = api->restore_message(pr->self, "s1", 8, m, 0, 0, MIDGE_DELIVERY_QUEUED, 0);
    rc[8] = api->restore_subscription(pr->self, "s1", "a/#/b", 0, 0);
    api->message_unref(m); /* the broker keeps its own */
    return 0;
}

static const struct midge_hooks probe_hooks = {
    .size = sizeof(struct midge_hooks),
    .auth = probe_auth,
    .acl = probe_acl,
    .client_connected = probe_connected,
    .client_disconnected = probe_disconnected,
    .tick = probe_tick,
    .enhanced_auth = probe_enhanced_auth,
    .message_in = probe_message_in,
    .message_out = probe_message_out,
    .subscribed = probe_subscribed,
    .unsubscribed = probe_unsubscribed,
    .session_created = probe_session_created,
    .session_ended = probe_session_ended,
    .will_published = probe_will,
    .persist = probe_persist,
    .restore = probe_restore,
};

static void
session_opened(void *arg, midge_session *s, int present)
{
    struct probe *pr = arg;

    pr->session_opened++;
    pr->session = s;
    pr->session_present = present;
    if (s != NULL) {
        pr->session_sub_rc = pr->api->session_subscribe(s, "bridge/#", 1,
                                                        MIDGE_SUB_NO_LOCAL);
        pr->session_pub_rc = pr->api->session_publish(s, "bridge/hello", "up", 2, 1, 0);
    }
}

static void
session_deliver(void *arg, midge_session *s, const midge_message *msg, int qos, int retain,
                uint32_t id, int dup)
{
    struct probe *pr = arg;

    (void)retain;
    pr->deliveries++;
    pr->last_id = id;
    pr->last_dup = dup;
    pr->last_qos = qos;
    copy_str(pr->last_topic, sizeof(pr->last_topic), pr->api->message_topic(msg));
    if (pr->auto_ack && id != 0) {
        pr->api->session_ack(s, id);
    }
}

static const struct midge_session_handlers session_handlers = {
    .size = sizeof(struct midge_session_handlers),
    .opened = session_opened,
    .deliver = session_deliver,
};

/* Asks for the internal session; see harness_probe.h. */
int
probe_open_session(struct probe *pr)
{
    return pr->api->session_open(pr->self, "bridge-1", 60, 2, &session_handlers, pr);
}

static void
on_timer(void *arg, midge_timer *t)
{
    struct probe *pr = arg;

    (void)t;
    pr->timer_fired++;
    pr->api->metric_set(pr->clients, 100 + pr->timer_fired);
}

static void
on_once(void *arg, midge_timer *t)
{
    struct probe *pr = arg;

    pr->once_fired++;
    pr->api->timer_stop(pr->self, t); /* a one-shot that fired must still be stopped */
    pr->once = NULL;
}

/* Starts the one-shot timer; see harness_probe.h. */
void
probe_once(struct probe *pr, double after)
{
    pr->once = pr->api->timer_start(pr->self, after, 0, on_once, pr);
}

/* Reads what the test wrote into the pipe; "stop" removes the watcher. */
static void
on_readable(void *arg, int fd, int revents)
{
    struct probe *pr = arg;
    ssize_t n;

    if (!(revents & MIDGE_FD_READ)) {
        return;
    }
    n = read(fd, pr->watch_buf, sizeof(pr->watch_buf) - 1);
    pr->watch_buf[n > 0 ? n : 0] = '\0';
    pr->watch_reads++;
    if (strcmp(pr->watch_buf, "stop") == 0) {
        pr->api->fd_unwatch(pr->self, pr->watch);
        pr->watch = NULL;
    }
}

MIDGE_EXPORT int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct probe *pr = calloc(1, sizeof(*pr));
    const char *pw = api->option(self, "password");
    const char *filter = api->option(self, "subscribe");
    int fds[2];

    if (pr == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    pr->self = self;
    pr->api = api;
    pr->found = -1;
    pr->pipe_r = pr->pipe_w = -1;
    copy_str(pr->password, sizeof(pr->password), pw != NULL ? pw : "secret");
    pr->auth_total = api->metric_new(self, "auth_total", MIDGE_METRIC_COUNTER, "auth hook calls");
    pr->clients = api->metric_new(self, "clients", MIDGE_METRIC_GAUGE, "connected clients");
    pr->check_secs = api->metric_new(self, "check_seconds", MIDGE_METRIC_HISTOGRAM,
                                     "password check time");
    if (filter != NULL) {
        copy_str(pr->filter, sizeof(pr->filter), filter);
        pr->sub = api->subscribe(self, filter, on_message, pr);
    }
    pr->timer = api->timer_start(self, 10, 10, on_timer, pr);
    if (pipe(fds) == 0) {
        pr->pipe_r = fds[0];
        pr->pipe_w = fds[1];
        pr->watch = api->fd_watch(self, pr->pipe_r, MIDGE_FD_READ, on_readable, pr);
    }
    api->hooks_set(self, &probe_hooks);
    *state = pr;
    return 0;
}

MIDGE_EXPORT void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    struct probe *pr = state;

    if (pr->timer != NULL) {
        pr->api->timer_stop(self, pr->timer);
    }
    if (pr->watch != NULL) {
        pr->api->fd_unwatch(self, pr->watch);
    }
    if (pr->sub != NULL) {
        pr->api->unsubscribe(self, pr->sub);
    }
    if (pr->kept != NULL) {
        pr->api->message_unref(pr->kept);
    }
    if (pr->persist_msg != NULL) {
        pr->api->message_unref(pr->persist_msg);
    }
    if (pr->session != NULL) {
        pr->api->session_close(pr->session, 0);
    }
    if (pr->pipe_r >= 0) {
        close(pr->pipe_r);
        close(pr->pipe_w);
    }
    free(pr);
}
