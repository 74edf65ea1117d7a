/*
 * http-admin: Prometheus metrics, a JSON admin API and a live dashboard
 * over HTTP (docs/http-api.md).
 *
 *     plugin http-admin
 *     plugin_opt_listen 127.0.0.1:8081
 *     plugin_opt_password_file /etc/midge/passwd     # HTTP Basic, auth-passwd's format
 *     plugin_opt_certfile /etc/midge/admin.crt       # HTTPS (with keyfile)
 *     plugin_opt_keyfile /etc/midge/admin.key
 *
 * Without a password file the plugin serves anyone who can connect, so it
 * insists on a loopback address and `plugin_opt_allow_anonymous true`.
 * Passwords travel in clear without TLS, so a password file on a
 * non-loopback address needs certfile/keyfile. Options change with a
 * restart (no reload hook: the listening socket belongs to the thread).
 *
 * This file: descriptor, options, init, cleanup. See admin.h for the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "basic_auth.h"
#include "server.h"

static const char *const admin_options[] = {"listen",   "password_file",   "certfile",
                                            "keyfile",  "allow_anonymous", "max_connections",
                                            NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("http-admin", "1.0",
                             "Prometheus /metrics, a JSON admin API and a dashboard over HTTP",
                             admin_options);

#define DEFAULT_LISTEN "127.0.0.1:8081"

/* The API entries the HTTP thread calls; plugin_list/metric_list are optional. */
static int
api_complete(const struct midge_api *api)
{
    return MIDGE_API_HAS(api, log) && MIDGE_API_HAS(api, option) &&
           MIDGE_API_HAS(api, set_error) && MIDGE_API_HAS(api, stats) &&
           MIDGE_API_HAS(api, client_list) && MIDGE_API_HAS(api, client_find) &&
           MIDGE_API_HAS(api, client_disconnect) && MIDGE_API_HAS(api, retained_list) &&
           MIDGE_API_HAS(api, reload_request) && MIDGE_API_HAS(api, message_topic) &&
           MIDGE_API_HAS(api, message_payload) && MIDGE_API_HAS(api, message_qos);
}

/* "true"/"false" option. 0, or -1 after set_error. */
static int
opt_bool(struct admin *a, const char *key, int *out)
{
    const char *v = a->api->option(a->self, key);

    *out = 0;
    if (v == NULL || strcmp(v, "false") == 0) {
        return 0;
    }
    if (strcmp(v, "true") == 0) {
        *out = 1;
        return 0;
    }
    a->api->set_error(a->self, "option %s: '%s' is neither true nor false", key, v);
    return -1;
}

/* Checks the options against the security rules; fills conf. 0, or -1 after set_error. */
static int
configure(struct admin *a, struct server_conf *conf)
{
    const char *pwfile = a->api->option(a->self, "password_file");
    const char *max = a->api->option(a->self, "max_connections");
    struct sockaddr_storage addr;
    int loopback = 0;
    int anonymous = 0;
    char err[512];

    memset(conf, 0, sizeof(*conf));
    conf->listen = a->api->option(a->self, "listen");
    if (conf->listen == NULL) {
        conf->listen = DEFAULT_LISTEN;
    }
    conf->certfile = a->api->option(a->self, "certfile");
    conf->keyfile = a->api->option(a->self, "keyfile");
    conf->max_connections = 64;
    if (opt_bool(a, "allow_anonymous", &anonymous) != 0) {
        return -1;
    }
    if (max != NULL) {
        char *end = NULL;
        unsigned long n = strtoul(max, &end, 10);
        if (end == max || *end != '\0' || n < 1 || n > 10000) {
            a->api->set_error(a->self, "option max_connections: '%s' is not a number from 1 to "
                              "10000", max);
            return -1;
        }
        conf->max_connections = (unsigned)n;
    }
    if (server_parse_listen(conf->listen, &addr, &loopback, err, sizeof(err)) != 0) {
        a->api->set_error(a->self, "option %s", err);
        return -1;
    }
    if ((conf->certfile == NULL) != (conf->keyfile == NULL)) {
        a->api->set_error(a->self, "options certfile and keyfile go together: set both for "
                          "HTTPS, or neither");
        return -1;
    }
    if (pwfile != NULL && anonymous) {
        a->api->set_error(a->self, "options password_file and allow_anonymous exclude each "
                          "other: choose one");
        return -1;
    }
    if (pwfile == NULL) {
        if (!anonymous) {
            a->api->set_error(a->self, "no password_file: set plugin_opt_password_file (users "
                              "in auth-passwd's format), or, on a loopback address only, "
                              "plugin_opt_allow_anonymous true");
            return -1;
        }
        if (!loopback) {
            a->api->set_error(a->self, "allow_anonymous is only allowed on a loopback address "
                              "(127.0.0.1, ::1), not on %s: set plugin_opt_password_file",
                              conf->listen);
            return -1;
        }
        return 0;
    }
    if (!loopback && conf->certfile == NULL) {
        a->api->set_error(a->self, "password_file on %s without certfile/keyfile would send "
                          "passwords in clear text: set plugin_opt_certfile and "
                          "plugin_opt_keyfile, or listen on a loopback address", conf->listen);
        return -1;
    }
    a->auth = basic_auth_new(pwfile, err, sizeof(err));
    if (a->auth == NULL) {
        a->api->set_error(a->self, "option password_file: %s", err);
        return -1;
    }
    return 0;
}

MIDGE_EXPORT int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct admin *a = NULL;
    struct server_conf conf;
    char err[512];

    if (!api_complete(api)) {
        if (MIDGE_API_HAS(api, set_error)) {
            api->set_error(self, "this broker lacks the administration API (stats, "
                           "client_list, ...): midge 0.x with plugin ABI 1.0 or later needed");
        }
        return -MIDGE_ENOTSUP;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    a->self = self;
    a->api = api;
    a->wait_timeout = 5.0;
    atomic_init(&a->stopping, 0);
    if (configure(a, &conf) != 0) {
        goto fail;
    }
    a->server = server_start(a, &conf, err, sizeof(err));
    if (a->server == NULL) {
        api->set_error(self, "%s", err);
        goto fail;
    }
    api->log(self, MIDGE_LOG_NOTICE, "http-admin listening on %s port=%u tls=%s auth=%s",
             conf.listen, server_port(a->server), conf.certfile != NULL ? "yes" : "no",
             a->auth != NULL ? "basic" : "none");
    *state = a;
    return 0;
fail:
    basic_auth_free(a->auth);
    free(a);
    return -MIDGE_EINVAL;
}

MIDGE_EXPORT void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    struct admin *a = state;

    (void)self;
    if (a == NULL) {
        return;
    }
    /* Requests waiting for the broker give up now: the workers are gone. */
    atomic_store(&a->stopping, 1);
    server_stop(a->server);
    basic_auth_free(a->auth);
    free(a);
}
