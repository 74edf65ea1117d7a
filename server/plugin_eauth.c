/*
 * MQTT 5 enhanced authentication (MQTT 5 section 4.12) through the
 * enhanced_auth hook: CONNECT with an Authentication Method, AUTH 0x18
 * round trips, re-authentication with AUTH 0x19, decisions that may be
 * PENDING like any other (tickets and timeouts from plugin_hooks.c).
 *
 * The plugin that answers step 0 with anything but DEFER owns the exchange;
 * later steps and re-authentications go to it alone.
 */
#include "plugin.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "mqtt.h"
#include "proto.h"

/* Owned by its connection (c->eauth); freed with it. */
struct eauth {
    char *method;              /* Authentication Method of the CONNECT */
    struct midge_plugin *owner; /* who answered step 0; NULL before */
    size_t owner_idx;
    uint32_t step;             /* the step the next hook call gets */
    int reauth;                /* the exchange running is a re-authentication */
    int awaiting;              /* AUTH 0x18 sent: the client's AUTH is expected */
    int in_hook;               /* auth_data_set allowed */
    uint8_t *out;              /* Authentication Data to send with the answer */
    uint32_t out_len;
    uint8_t *in;               /* this step's data from the client (kept while pending) */
    uint32_t in_len;
    uint8_t *connect;          /* the CONNECT being authenticated, until CONNACK */
    size_t connect_len;
    char *password;            /* from CONNECT, for the hook; NULL when none */
    uint32_t password_len;
};

/* Result of plugin_eauth_connect when the client is authenticated. */
#define EAUTH_DONE 1

static void
set_bytes(uint8_t **dst, uint32_t *dlen, const uint8_t *src, uint32_t len)
{
    free(*dst);
    *dst = NULL;
    *dlen = 0;
    if (src != NULL && len > 0 && (*dst = malloc(len)) != NULL) {
        memcpy(*dst, src, len);
        *dlen = len;
    }
}

void
plugin_eauth_free(struct conn *c)
{
    struct eauth *ea = c->eauth;

    if (ea == NULL) {
        return;
    }
    free(ea->method);
    free(ea->out);
    free(ea->in);
    free(ea->connect);
    free(ea->password);
    free(ea);
    c->eauth = NULL;
}

int
plugin_auth_data_set(midge_client *mc, const void *data, uint32_t len)
{
    struct conn *c = (struct conn *)mc;
    struct eauth *ea = c != NULL ? c->eauth : NULL;

    if (ea == NULL || !ea->in_hook) {
        return -MIDGE_ESTATE;
    }
    if (data == NULL && len > 0) {
        return -MIDGE_EINVAL;
    }
    set_bytes(&ea->out, &ea->out_len, data, len);
    return len > 0 && ea->out == NULL ? -MIDGE_ENOMEM : 0;
}

/* Calls p's hook for the current step. Returns its (validated) verdict. */
static int
call_step(struct conn *c, struct midge_plugin *p, size_t idx, uint8_t *reason)
{
    struct eauth *ea = c->eauth;
    struct midge_enhanced_auth_request req;
    struct plugin_wait pw;
    int v;

    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.method = ea->method;
    req.data = ea->in;
    req.data_len = ea->in_len;
    req.step = ea->step;
    req.reauth = ea->reauth;
    req.client_id = c->client_id;
    req.username = c->username;
    req.password = (const uint8_t *)ea->password;
    req.password_len = ea->password_len;
    if (plugin_wait_begin(&pw, c, p, idx, PLUGIN_WAIT_EAUTH) < 0) {
        *reason = MQTT_RC_SERVER_UNAVAILABLE;
        return MIDGE_DENY;
    }
    set_bytes(&ea->out, &ea->out_len, NULL, 0);
    *reason = 0;
    ea->in_hook = 1;
    v = p->hooks->enhanced_auth(p->state, (midge_client *)c, &req, reason,
                                plugin_wait_ticket(&pw));
    ea->in_hook = 0;
    if (v != MIDGE_ALLOW && v != MIDGE_DENY && v != MIDGE_DEFER && v != MIDGE_PENDING &&
        v != MIDGE_CONTINUE) {
        midge_log(MLOG_ERROR, "plugin bug plugin=%s hook=enhanced_auth returned %d: treated as "
                  "deny", p->name, v);
        v = MIDGE_DENY;
    }
    plugin_record(p, PH_EAUTH, v == MIDGE_CONTINUE ? MIDGE_ALLOW : v, 1);
    if (plugin_wait_end(&pw, c, v, NULL, 0) < 0) {
        *reason = MQTT_RC_SERVER_UNAVAILABLE;
        return MIDGE_DENY;
    }
    return v;
}

/* Step 0 through the chain from position `start`; the first non-DEFER answer owns it. */
static int
run_chain(struct conn *c, size_t start, uint8_t *reason)
{
    struct midge_plugin *p;
    size_t idx = 0;

    for (p = plugins; p != NULL; p = p->next, idx++) {
        int v;
        if (idx < start || !PLUGIN_HAS(p, enhanced_auth) || !plugin_applies(p, c->listener)) {
            continue;
        }
        v = call_step(c, p, idx, reason);
        if (v != MIDGE_DEFER) {
            c->eauth->owner = p;
            c->eauth->owner_idx = idx;
            return v;
        }
    }
    return MIDGE_DEFER;
}

/* Sends AUTH with reason rc, the method and the data the plugin set. */
static int
send_auth(struct conn *c, uint8_t rc)
{
    struct eauth *ea = c->eauth;
    struct mqtt_packet p;

    memset(&p, 0, sizeof(p));
    p.type = MQTT_AUTH;
    p.u.reason.rc = rc;
    p.u.reason.props.present = MQTT_PBIT(MQTT_PROP_AUTH_METHOD);
    p.u.reason.props.auth_method.ptr = (const uint8_t *)ea->method;
    p.u.reason.props.auth_method.len = (uint32_t)strlen(ea->method);
    if (ea->out != NULL) {
        p.u.reason.props.present |= MQTT_PBIT(MQTT_PROP_AUTH_DATA);
        p.u.reason.props.auth_data.ptr = ea->out;
        p.u.reason.props.auth_data.len = ea->out_len;
    }
    return conn_send(c, &p);
}

/*
 * Acts on a step's verdict. Initial authentication: EAUTH_DONE (go on with
 * the CONNECT), PROTO_OK (AUTH 0x18 sent, keep reading), PROTO_WAIT
 * (pending), PROTO_CLOSE. Re-authentication: PROTO_OK, PROTO_WAIT or
 * PROTO_CLOSE.
 */
static int
apply(struct conn *c, int v, uint8_t reason)
{
    struct eauth *ea = c->eauth;
    uint8_t rc = reason >= 0x80 ? reason : MQTT_RC_NOT_AUTHORIZED;

    switch (v) {
    case MIDGE_PENDING:
        return PROTO_WAIT;
    case MIDGE_CONTINUE:
        /* [MQTT-4.12.0-2]: more data needed: AUTH 0x18 with the same method. */
        ea->step++;
        ea->awaiting = 1;
        if (send_auth(c, MQTT_RC_CONTINUE_AUTHENTICATION) < 0) {
            return proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
        }
        return PROTO_OK;
    case MIDGE_ALLOW:
        ea->awaiting = 0;
        set_bytes(&ea->in, &ea->in_len, NULL, 0);
        if (ea->reauth) {
            ea->reauth = 0;
            midge_log(MLOG_INFO, "client re-authenticated client=%s method=%s plugin=%s",
                      c->client_id, ea->method, ea->owner->name);
            return send_auth(c, MQTT_RC_SUCCESS) < 0
                       ? proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory")
                       : PROTO_OK;
        }
        c->auth_state = AUTH_DONE;
        c->auth_verdict = PLUGIN_ALLOW;
        c->auth_any = 1;
        return EAUTH_DONE;
    case MIDGE_DEFER:
        if (ea->owner == NULL) {
            /* [MQTT-4.12.0-1]: no plugin knows this method. */
            return proto_fail(c, MQTT_RC_BAD_AUTHENTICATION_METHOD,
                              "authentication method not supported");
        }
        rc = MQTT_RC_NOT_AUTHORIZED; /* the owner cannot pass its own exchange on */
        /* fall through */
    default:
        if (ea->reauth) {
            /* [MQTT-4.12.1-2]: DISCONNECT with the reason code, then close. */
            conn_close(c, rc, 1, "re-authentication failed");
            return PROTO_CLOSE;
        }
        return proto_fail(c, rc, "enhanced authentication failed");
    }
}

int
plugin_eauth_connect(struct conn *c, const struct mqtt_connect *cp, const uint8_t *raw,
                     size_t raw_len)
{
    struct eauth *ea;
    uint8_t reason = 0;
    int v;

    plugin_eauth_free(c);
    ea = calloc(1, sizeof(*ea));
    if (ea == NULL || (ea->method = strndup((const char *)cp->props.auth_method.ptr,
                                            cp->props.auth_method.len)) == NULL ||
        (ea->connect = malloc(raw_len)) == NULL) {
        if (ea != NULL) {
            free(ea->method);
            free(ea);
        }
        return proto_fail(c, MQTT_RC_SERVER_UNAVAILABLE, "out of memory");
    }
    c->eauth = ea;
    memcpy(ea->connect, raw, raw_len);
    ea->connect_len = raw_len;
    if (cp->has_password) {
        ea->password = malloc(cp->password.len + 1);
        if (ea->password != NULL) {
            memcpy(ea->password, cp->password.ptr, cp->password.len);
            ea->password[cp->password.len] = 0;
            ea->password_len = cp->password.len;
        }
    }
    if (cp->props.present & MQTT_PBIT(MQTT_PROP_AUTH_DATA)) {
        set_bytes(&ea->in, &ea->in_len, cp->props.auth_data.ptr, cp->props.auth_data.len);
    }
    /* Two statements: apply() must see the reason run_chain() set (argument order is unspecified). */
    v = run_chain(c, 0, &reason);
    return apply(c, v, reason);
}

/* Authenticated: go on with the stored CONNECT (proto_connect skips auth now). */
static int
finish_connect(struct conn *c)
{
    struct eauth *ea = c->eauth;
    struct mqtt_packet pk;
    uint8_t rc = 0;
    int r;

    memset(&pk, 0, sizeof(pk));
    if (mqtt_decode(ea->connect, ea->connect_len, MQTT_V5, &pk, &rc) != MQTT_OK) {
        return proto_fail(c, MQTT_RC_UNSPECIFIED, "stored CONNECT unreadable");
    }
    r = proto_connect(c, ea->connect, ea->connect_len, &pk, 0);
    if (c->eauth != NULL && c->state == CONN_ACTIVE) {
        /* Only the method is needed for re-authentication. */
        free(ea->connect);
        ea->connect = NULL;
        free(ea->password);
        ea->password = NULL;
        ea->password_len = 0;
    }
    return r;
}

int
plugin_eauth_packet(struct conn *c, const struct mqtt_reason *auth)
{
    struct eauth *ea = c->eauth;
    const struct mqtt_props *pr = &auth->props;
    uint8_t reason = 0;
    int v;
    int r;

    if (ea == NULL) {
        /* [MQTT-4.12.0-7]: no AUTH from a client that did not start with a method. */
        return proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "AUTH without authentication method");
    }
    if (!(pr->present & MQTT_PBIT(MQTT_PROP_AUTH_METHOD)) ||
        pr->auth_method.len != strlen(ea->method) ||
        memcmp(pr->auth_method.ptr, ea->method, pr->auth_method.len) != 0) {
        /* [MQTT-4.12.0-5] the method stays the same; [MQTT-4.12.1-1] also on re-auth. */
        return proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "AUTH with another authentication method");
    }
    if (auth->rc == MQTT_RC_CONTINUE_AUTHENTICATION && ea->awaiting) {
        ea->awaiting = 0;
    } else if (auth->rc == MQTT_RC_REAUTHENTICATE && c->state == CONN_ACTIVE &&
               !ea->awaiting && c->auth_wait == NULL && !ea->reauth) {
        ea->reauth = 1;
        ea->step = 0;
    } else {
        return proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "unexpected AUTH");
    }
    set_bytes(&ea->in, &ea->in_len, (pr->present & MQTT_PBIT(MQTT_PROP_AUTH_DATA))
                                         ? pr->auth_data.ptr : NULL,
              pr->auth_data.len);
    v = call_step(c, ea->owner, ea->owner_idx, &reason);
    r = apply(c, v, reason);
    return r == EAUTH_DONE ? finish_connect(c) : r;
}

void
plugin_eauth_resume(struct conn *c, size_t index, int verdict, uint8_t reason,
                    const uint8_t *data, uint32_t len)
{
    struct eauth *ea = c->eauth;
    int r;

    if (ea == NULL) {
        return;
    }
    set_bytes(&ea->out, &ea->out_len, data, len);
    if (verdict == MIDGE_DEFER && ea->step == 0 && !ea->reauth) {
        ea->owner = NULL;
        verdict = run_chain(c, index + 1, &reason);
    }
    r = apply(c, verdict, reason);
    if (r == EAUTH_DONE) {
        r = finish_connect(c);
    }
    if (r == PROTO_OK) {
        conn_continue(c); /* input held while the plugin decided */
    }
}

void
plugin_eauth_connack_props(struct conn *c, struct mqtt_props *pr)
{
    struct eauth *ea = c->eauth;

    if (ea == NULL) {
        return;
    }
    pr->present |= MQTT_PBIT(MQTT_PROP_AUTH_METHOD);
    pr->auth_method.ptr = (const uint8_t *)ea->method;
    pr->auth_method.len = (uint32_t)strlen(ea->method);
    if (ea->out != NULL) {
        pr->present |= MQTT_PBIT(MQTT_PROP_AUTH_DATA);
        pr->auth_data.ptr = ea->out;
        pr->auth_data.len = ea->out_len;
    }
}
