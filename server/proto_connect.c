/*
 * CONNECT: validation, client identifier, authentication (allow_anonymous
 * until the plugin ABI), the move to the session's home worker, session
 * takeover/resume, will, CONNACK.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "broker.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "msg.h"
#include "persist.h"
#include "plugin.h"
#include "proto.h"
#include "session.h"
#include "subs.h"
#include "topic.h"
#include "worker.h"
#include "xport.h"

/* Refuses a CONNECT with a v5 reason code, mapped to the v3 return code for older clients. */
static int
refuse(struct conn *c, uint8_t v5rc, uint8_t v3rc, const char *why)
{
    struct mqtt_packet p;
    char reason[160];

    memset(&p, 0, sizeof(p));
    p.type = MQTT_CONNACK;
    p.u.connack.rc = c->version == MQTT_V5 ? v5rc : v3rc;
    if (c->version == 0) {
        c->version = MQTT_V311;
    }
    conn_send(c, &p);
    midge_log(MLOG_NOTICE, "connection refused client=%s user=%s addr=%s rc=0x%02x reason=\"%s\"",
              c->client_id ? c->client_id : "", c->username ? c->username : "", conn_addr(c),
              p.u.connack.rc, why);
    snprintf(reason, sizeof(reason), "connection refused: %s", why);
    conn_close(c, 0, 0, reason);
    return PROTO_CLOSE;
}

/*
 * An assigned client identifier [MQTT-3.1.3-6] chosen so that it hashes to
 * this worker: the connection then needs no handoff.
 */
static void
assign_id(struct conn *c, char *out, size_t len)
{
    const char *prefix = broker_cfg()->auto_id_prefix;

    for (;;) {
        unsigned long long r = ((unsigned long long)random() << 31) ^ (unsigned long long)random();
        snprintf(out, len, "%s%016llx", prefix ? prefix : "auto-", r);
        if (broker_home_worker(out, strlen(out)) == c->w->id) {
            return;
        }
    }
}

static int
send_connack(struct conn *c, int session_present, const char *assigned, uint16_t server_ka)
{
    const struct config *cfg = broker_cfg();
    struct mqtt_packet p;
    struct mqtt_props *pr = &p.u.connack.props;

    memset(&p, 0, sizeof(p));
    p.type = MQTT_CONNACK;
    p.u.connack.session_present = (uint8_t)session_present;
    if (c->version == MQTT_V5) {
        if (cfg->max_inflight_messages > 0 && cfg->max_inflight_messages < 65535) {
            pr->present |= MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM);
            pr->receive_maximum = (uint16_t)cfg->max_inflight_messages;
        }
        if (c->alias_max > 0) {
            pr->present |= MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM);
            pr->topic_alias_maximum = c->alias_max;
        }
        if (assigned != NULL) {
            pr->present |= MQTT_PBIT(MQTT_PROP_ASSIGNED_CLIENT_ID);
            pr->assigned_client_id.ptr = (const uint8_t *)assigned;
            pr->assigned_client_id.len = (uint32_t)strlen(assigned);
        }
        if (server_ka) {
            pr->present |= MQTT_PBIT(MQTT_PROP_SERVER_KEEP_ALIVE);
            pr->server_keep_alive = c->keepalive;
        }
        if (cfg->max_packet_size > 0) {
            pr->present |= MQTT_PBIT(MQTT_PROP_MAXIMUM_PACKET_SIZE);
            pr->maximum_packet_size = cfg->max_packet_size;
        }
        if (!cfg->retain_available) {
            pr->present |= MQTT_PBIT(MQTT_PROP_RETAIN_AVAILABLE);
            pr->retain_available = 0;
        }
        if (cfg->max_qos < 2) {
            pr->present |= MQTT_PBIT(MQTT_PROP_MAXIMUM_QOS);
            pr->maximum_qos = (uint8_t)cfg->max_qos;
        }
        plugin_eauth_connack_props(c, pr);
    }
    return conn_send(c, &p);
}

/* allow_anonymous for this client's listener (listener_allow_anonymous wins). */
static int
is_anonymous_allowed(struct conn *c)
{
    int l = atomic_load(&c->listener->allow_anonymous);

    return l >= 0 ? l : broker_cfg()->allow_anonymous;
}

/*
 * Applies the auth chain's outcome with mosquitto's rules: a plugin's ALLOW or
 * DENY decides; when every plugin deferred, a client without a username is
 * decided by allow_anonymous, and one with a username that no plugin
 * accepted is refused; with no auth plugin at all, allow_anonymous decides
 * for everyone. Returns PROTO_OK or PROTO_CLOSE (refused).
 */
static int
auth_decide(struct conn *c, const struct mqtt_connect *cp)
{
    uint8_t r = c->auth_reason;

    switch (c->auth_verdict) {
    case PLUGIN_ALLOW:
        return PROTO_OK;
    case PLUGIN_DENY:
        if (r < 0x80) {
            r = MQTT_RC_NOT_AUTHORIZED;
        }
        return refuse(c, r,
                      r == MQTT_RC_BAD_USERNAME_OR_PASSWORD ? MQTT_V3_REFUSED_BAD_USERNAME_PASSWORD
                      : r == MQTT_RC_SERVER_UNAVAILABLE    ? MQTT_V3_REFUSED_SERVER_UNAVAILABLE
                                                           : MQTT_V3_REFUSED_NOT_AUTHORIZED,
                      "denied by plugin");
    default:
        break;
    }
    if (xport_identity_required(c)) {
        return PROTO_OK; /* issue 9: a verified certificate authenticated the client */
    }
    if (c->auth_any && cp->has_username) {
        return refuse(c, MQTT_RC_BAD_USERNAME_OR_PASSWORD, MQTT_V3_REFUSED_BAD_USERNAME_PASSWORD,
                      "no plugin accepted the username");
    }
    if (!is_anonymous_allowed(c)) {
        return refuse(c, cp->has_username ? MQTT_RC_BAD_USERNAME_OR_PASSWORD
                                          : MQTT_RC_NOT_AUTHORIZED,
                      cp->has_username ? MQTT_V3_REFUSED_BAD_USERNAME_PASSWORD
                                       : MQTT_V3_REFUSED_NOT_AUTHORIZED,
                      "not authorized");
    }
    return PROTO_OK;
}

/*
 * The will passes the ACL as a will (and as a retain when retained): the
 * chain of *action from position `start` with the verdict so far `v`
 * (DEFER: ask from `start`). Returns PLUGIN_ALLOW, PLUGIN_DENY or
 * PLUGIN_PENDING (*action: the chain that waits).
 */
static int
will_acl(struct conn *c, const struct mqtt_connect *cp, int *action, size_t start, int v)
{
    uint8_t r;

    for (;;) {
        if (v == MIDGE_DEFER) {
            int retain = *action == MIDGE_ACL_RETAIN ? 1 : cp->will_retain;
            v = plugin_acl_wait(c, *action, (const char *)cp->will_topic.ptr, cp->will_topic.len,
                                cp->will_qos, retain, cp->will_payload.ptr, cp->will_payload.len,
                                start, &r);
        }
        if (v != PLUGIN_ALLOW || *action == MIDGE_ACL_RETAIN || !cp->will_retain) {
            return v;
        }
        *action = MIDGE_ACL_RETAIN;
        start = 0;
        v = MIDGE_DEFER;
    }
}

static void
will_release(struct conn *c, struct acl_hold *h)
{
    (void)c;
    free(h->raw);
    free(h);
}

/* A will the ACL denied: CONNACK 0x87 (MQTT 3: 5). */
static int
refuse_will(struct conn *c)
{
    return refuse(c, MQTT_RC_NOT_AUTHORIZED, MQTT_V3_REFUSED_NOT_AUTHORIZED, "will denied by ACL");
}

/* A decision about a CONNECT's will arrived: refuse, or complete the CONNECT. */
static void
will_resume(struct conn *c, struct acl_hold *h, size_t index, int verdict, uint8_t reason)
{
    struct mqtt_packet pk;
    uint8_t rc = 0;
    int v;

    (void)reason; /* a denied will is always CONNACK 0x87, as in the synchronous case */
    memset(&pk, 0, sizeof(pk));
    if (mqtt_decode(h->raw, h->raw_len, MQTT_V311, &pk, &rc) != MQTT_OK) {
        will_release(c, h);
        conn_close(c, MQTT_RC_UNSPECIFIED, 0, "stored CONNECT unreadable");
        return;
    }
    v = will_acl(c, &pk.u.connect, &h->action, index + 1, verdict);
    if (v == PLUGIN_PENDING) {
        plugin_acl_hold(c, h);
        return;
    }
    if (v == PLUGIN_DENY) {
        refuse_will(c);
    } else {
        c->will_acl_done = 1;
        if (proto_connect(c, h->raw, h->raw_len, &pk, 0) == PROTO_OK) {
            conn_continue(c);
        }
    }
    will_release(NULL, h);
}

/* Keeps the CONNECT while its will waits for an ACL decision. Returns PROTO_WAIT or PROTO_CLOSE. */
static int
will_hold(struct conn *c, const uint8_t *raw, size_t raw_len, int action)
{
    struct acl_hold *h = calloc(1, sizeof(*h));

    if (h == NULL || (h->raw = malloc(raw_len)) == NULL) {
        free(h);
        return refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT_V3_REFUSED_SERVER_UNAVAILABLE,
                      "out of memory");
    }
    memcpy(h->raw, raw, raw_len);
    h->raw_len = raw_len;
    h->action = action;
    h->resume = will_resume;
    h->release = will_release;
    plugin_acl_hold(c, h);
    return PROTO_WAIT;
}

/* Continues a CONNECT after a pending decision; see proto.h. [worker thread] */
void
proto_connect_resume(struct conn *c, const uint8_t *raw, size_t raw_len, size_t index,
                     int verdict, uint8_t reason)
{
    struct mqtt_packet pk;
    uint8_t rc = 0;

    memset(&pk, 0, sizeof(pk));
    if (mqtt_decode(raw, raw_len, MQTT_V311, &pk, &rc) != MQTT_OK) {
        conn_close(c, MQTT_RC_UNSPECIFIED, 0, "stored CONNECT unreadable");
        return;
    }
    if (verdict == MIDGE_DEFER) {
        int any = 1;
        verdict = plugin_auth(c, &pk.u.connect, raw, raw_len, index + 1, &reason, &any);
        if (verdict == PLUGIN_PENDING) {
            return;
        }
    }
    c->auth_state = AUTH_DONE;
    c->auth_verdict = (uint8_t)verdict;
    c->auth_reason = reason;
    c->auth_any = 1;
    if (proto_connect(c, raw, raw_len, &pk, 0) == PROTO_OK) {
        conn_continue(c);
    }
}

/* Handles CONNECT; see proto.h. */
int
proto_connect(struct conn *c, const uint8_t *raw, size_t raw_len, const struct mqtt_packet *pk,
              uint8_t decode_rc)
{
    const struct config *cfg = broker_cfg();
    const struct mqtt_connect *cp = &pk->u.connect;
    struct worker *w = c->w;
    struct session *s;
    char assigned[96];
    const char *id;
    size_t id_len;
    int clean;
    int present = 0;
    int server_ka = 0;
    uint32_t expiry;
    double now = ev_now(w->loop);

    if (decode_rc != 0) {
        if (decode_rc == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION) {
            /* [MQTT-3.1.2-2]: CONNACK 0x01 (v3) / 0x84 (v5), then close. */
            c->version = cp->version == MQTT_V5 ? MQTT_V5 : MQTT_V311;
            return refuse(c, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION,
                          MQTT_V3_REFUSED_PROTOCOL_VERSION, "unsupported protocol version");
        }
        return proto_fail(c, decode_rc, "invalid CONNECT");
    }
    c->version = cp->version;
    id = (const char *)cp->client_id.ptr;
    id_len = cp->client_id.len;
    clean = cp->clean_start;
    if (id_len == 0) {
        if (cp->version == MQTT_V31 || !cfg->allow_zero_length_clientid ||
            (cp->version == MQTT_V311 && !clean)) {
            /* [MQTT-3.1.3-8] */
            return refuse(c, MQTT_RC_CLIENT_ID_NOT_VALID, MQTT_V3_REFUSED_IDENTIFIER_REJECTED,
                          "empty client identifier");
        }
        if (c->auth_state == AUTH_DONE && c->client_id != NULL) {
            /* Resumed after a plugin decision: keep the id the plugin saw. */
            snprintf(assigned, sizeof(assigned), "%s", c->client_id);
        } else {
            assign_id(c, assigned, sizeof(assigned));
        }
        id = assigned;
        id_len = strlen(assigned);
    } else if (cp->version == MQTT_V31 && id_len > 23) {
        return refuse(c, MQTT_RC_CLIENT_ID_NOT_VALID, MQTT_V3_REFUSED_IDENTIFIER_REJECTED,
                      "MQTT 3.1 client identifier longer than 23 bytes");
    }
    if (cp->will_flag) {
        if (!topic_name_valid((const char *)cp->will_topic.ptr, cp->will_topic.len)) {
            return refuse(c, MQTT_RC_TOPIC_NAME_INVALID, MQTT_V3_REFUSED_NOT_AUTHORIZED,
                          "invalid will topic");
        }
        if (cp->will_qos > cfg->max_qos) {
            return refuse(c, MQTT_RC_QOS_NOT_SUPPORTED, MQTT_V3_REFUSED_NOT_AUTHORIZED,
                          "will QoS above max_qos");
        }
        if (cp->will_retain && !cfg->retain_available) {
            return refuse(c, MQTT_RC_RETAIN_NOT_SUPPORTED, MQTT_V3_REFUSED_NOT_AUTHORIZED,
                          "retain not available");
        }
    }
    c->keepalive = cp->keep_alive;
    if (cfg->max_keepalive < 65535 && (cp->keep_alive > cfg->max_keepalive || cp->keep_alive == 0)) {
        if (cp->version == MQTT_V5) {
            /* Server Keep Alive [MQTT-3.2.2-21]. */
            c->keepalive = (uint16_t)cfg->max_keepalive;
            server_ka = 1;
        } else if (cp->keep_alive > cfg->max_keepalive) {
            return refuse(c, MQTT_RC_IMPLEMENTATION_SPECIFIC, MQTT_V3_REFUSED_IDENTIFIER_REJECTED,
                          "keep alive above max_keepalive");
        }
    }

    /* Identity for logs and plugins (set again after a handoff: the home re-reads CONNECT). */
    free(c->client_id);
    free(c->username);
    c->client_id = strndup(id, id_len);
    c->username = cp->has_username ? strndup((const char *)cp->username.ptr, cp->username.len)
                                   : NULL;
    c->clean_start = (uint8_t)clean;
    if (c->client_id == NULL || (cp->has_username && c->username == NULL) ||
        plugin_conn_keep_user_props(c, &cp->props) < 0) {
        return refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT_V3_REFUSED_SERVER_UNAVAILABLE,
                      "out of memory");
    }
    /* issue 9: use_identity_as_username / use_subject_as_username: the certificate names the user. */
    if (xport_identity_required(c)) {
        if (xport_identity(c) == NULL) {
            return refuse(c, MQTT_RC_NOT_AUTHORIZED, MQTT_V3_REFUSED_NOT_AUTHORIZED,
                          "no verified client certificate identity");
        }
        free(c->username);
        if ((c->username = strdup(xport_identity(c))) == NULL) {
            return refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT_V3_REFUSED_SERVER_UNAVAILABLE,
                          "out of memory");
        }
    }

    /* The session's home worker owns it: move there before touching sessions. */
    {
        unsigned home = broker_home_worker(id, id_len);
        if (home != w->id) {
            c->handoff_to = home;
            return PROTO_HANDOFF;
        }
    }

    /* Authentication: the plugin chain, possibly asynchronous (the client waits, not the worker). */
    if (c->auth_state != AUTH_DONE && cp->version == MQTT_V5 &&
        (cp->props.present & MQTT_PBIT(MQTT_PROP_AUTH_METHOD))) {
        /* Enhanced authentication replaces the auth hooks (plugin_eauth.c). */
        int r = plugin_eauth_connect(c, cp, raw, raw_len);
        if (r != 1) {
            return r;
        }
    }
    if (c->auth_state != AUTH_DONE) {
        uint8_t reason = 0;
        int any = 0;
        int v = plugins_auth_active ? plugin_auth(c, cp, raw, raw_len, 0, &reason, &any)
                                    : PLUGIN_DEFER;
        if (v == PLUGIN_PENDING) {
            return PROTO_WAIT;
        }
        c->auth_state = AUTH_DONE;
        c->auth_verdict = (uint8_t)v;
        c->auth_reason = reason;
        c->auth_any = (uint8_t)any;
    }
    if (auth_decide(c, cp) != PROTO_OK) {
        return PROTO_CLOSE;
    }
    if (cp->will_flag && plugins_acl_active && !c->will_acl_done) {
        /* The will's ACL may be pending too: the CONNECT then resumes in will_resume. */
        int action = MIDGE_ACL_WILL;
        int v = will_acl(c, cp, &action, 0, MIDGE_DEFER);
        if (v == PLUGIN_PENDING) {
            return will_hold(c, raw, raw_len, action);
        }
        if (v == PLUGIN_DENY) {
            return refuse_will(c);
        }
    }

    if (cp->version == MQTT_V5) {
        expiry = (cp->props.present & MQTT_PBIT(MQTT_PROP_SESSION_EXPIRY)) ? cp->props.session_expiry
                                                                         : 0;
    } else if (clean) {
        expiry = 0;
    } else {
        expiry = cfg->persistent_client_expiration > 0
                     ? (uint32_t)cfg->persistent_client_expiration
                     : UINT32_MAX;
    }

    s = session_find(w, id, id_len);
    if (s != NULL && s->conn != NULL && s->conn->sink != NULL) {
        return refuse(c, MQTT_RC_CLIENT_ID_NOT_VALID, MQTT_V3_REFUSED_IDENTIFIER_REJECTED,
                      "client identifier in use by a plugin's internal session");
    }
    if (s != NULL && s->conn != NULL) {
        /* What the old client sent before this CONNECT counts first: its DISCONNECT
         * may end the session (3.14.2.2.2) or cancel its will [MQTT-3.14.4-3]. */
        conn_drain(s->conn);
        s = session_find(w, id, id_len); /* it ended if its expiry was 0 */
    }
    if (s != NULL && s->conn != NULL) {
        /* Takeover [MQTT-3.1.4-3]: the old connection goes, v5 with 0x8E. */
        conn_close(s->conn, MQTT_RC_SESSION_TAKEN_OVER, 1, "session taken over");
        s = session_find(w, id, id_len); /* it ended if its expiry was 0 */
    }
    if (s != NULL && clean) {
        /* A delayed will of the old session goes out as that session ends [MQTT-3.1.3-9]. */
        session_publish_will(s);
        session_destroy(s);
        s = NULL;
    }
    if (s != NULL) {
        /* Resumed before the will delay passed: that will is cancelled [MQTT-3.1.3-9]. */
        msg_unref(s->will);
        s->will = NULL;
        s->will_at = 0;
        present = 1;
    } else {
        s = session_new(w, id, id_len);
        if (s == NULL) {
            return refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT_V3_REFUSED_SERVER_UNAVAILABLE,
                          "out of memory");
        }
    }
    s->version = cp->version;
    s->expiry = expiry;
    s->expire_at = 0;
    s->conn = c;
    c->session = s;
    atomic_store(&s->sub->online, 1);
    c->recv_max_out = 65535;
    if (cp->version == MQTT_V5) {
        if (cp->props.present & MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM)) {
            c->recv_max_out = cp->props.receive_maximum;
        }
        if (cp->props.present & MQTT_PBIT(MQTT_PROP_MAXIMUM_PACKET_SIZE)) {
            c->max_packet_out = cp->props.maximum_packet_size;
        }
        c->alias_max = (uint16_t)atomic_load(&c->listener->max_topic_alias);
    }
    if (cp->will_flag) {
        struct msg *m = msg_new((const char *)cp->will_topic.ptr, cp->will_topic.len,
                                cp->will_payload.ptr, cp->will_payload.len, cp->will_qos,
                                cp->will_retain, cp->version == MQTT_V5 ? &cp->will_props : NULL,
                                now);
        if (m == NULL) {
            return refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT_V3_REFUSED_SERVER_UNAVAILABLE,
                          "out of memory");
        }
        m->origin_session = s->uid;
        s->will = m;
        s->will_delay = cp->version == MQTT_V5 ? cp->will_props.will_delay : 0;
    }
    if (persist_active) {
        session_persist_update(s, 1);
        if (s->persist) {
            persist_will(s);
        }
    }

    if (send_connack(c, present, id == assigned ? assigned : NULL, (uint16_t)server_ka) < 0) {
        conn_close(c, 0, 1, "out of memory");
        return PROTO_CLOSE;
    }
    c->state = CONN_ACTIVE;
    {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        c->connected_us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    }
    STAT_ADD(&w->stats, clients_connected, 1);
    STAT_ADD(&w->stats, connects_total, 1);
    if (cfg->connection_messages) {
        midge_log(MLOG_NOTICE,
                  "client connected client=%s addr=%s listener=%s version=%d clean=%d "
                  "keepalive=%u session_present=%d user=%s",
                  c->client_id ? c->client_id : "", conn_addr(c), c->listener->name, cp->version,
                  clean, c->keepalive, present, c->username ? c->username : "");
    }
    if (plugins_events_active) {
        plugin_client_connected(c);
    }
    if (present) {
        session_resume(s);
    }
    return PROTO_OK;
}
