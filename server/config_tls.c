/*
 * TLS and WebSocket listener words (issue 9): file checks at parse time and
 * the rules that combine several words (certfile needs keyfile, ...), so a
 * wrong configuration stops with "FILE:LINE: what is wrong" before anything
 * is opened. Loading the files into OpenSSL happens in tls.c when the
 * listener opens; this file does not link OpenSSL (the config unit tests
 * don't either).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_internal.h"

/* Field that directive d writes (a char * for these words): the latest listener's, or global. */
static char **
str_field(struct parser *p, const struct directive *d)
{
    if (d->scope == SCOPE_GLOBAL) {
        return (char **)((char *)p->cfg + d->off);
    }
    return (char **)((char *)p->last + d->off);
}

/*
 * certfile, keyfile, cafile, crlfile, dhparamfile, psk_file: a readable file; capath: a readable
 * directory. The whole rest of the line is the path (spaces allowed).
 */
int
conf_set_tls_path(struct parser *p, const struct directive *d, char *args)
{
    char **f = str_field(p, d);
    char *copy;

    if (args[0] == '\0') {
        return conf_error(p, "%s: missing value", d->name);
    }
    if (strcmp(d->name, "capath") == 0) {
        DIR *dir = opendir(args);
        if (dir == NULL) {
            return conf_error(p, "%s: cannot open directory '%s': %s", d->name, args,
                              strerror(errno));
        }
        closedir(dir);
    } else {
        int fd = open(args, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            return conf_error(p, "%s: cannot read '%s': %s", d->name, args, strerror(errno));
        }
        close(fd);
    }
    copy = strdup(args);
    if (copy == NULL) {
        return conf_error(p, "%s: out of memory", d->name);
    }
    free(*f);
    *f = copy;
    return 0;
}

/* tls_version: the lowest version accepted. mosquitto's spelling; TLS 1.1 and older are refused. */
int
conf_set_tls_version(struct parser *p, const struct directive *d, char *args)
{
    char *w;

    if (conf_one_word(p, d, args, &w) < 0) {
        return -1;
    }
    if (strcmp(w, "tlsv1.2") == 0) {
        p->last->tls_version = 12;
    } else if (strcmp(w, "tlsv1.3") == 0) {
        p->last->tls_version = 13;
    } else if (strcmp(w, "tlsv1.1") == 0 || strcmp(w, "tlsv1") == 0) {
        return conf_error(p, "tls_version: %s is not supported (insecure); use tlsv1.2 or tlsv1.3",
                          w);
    } else {
        return conf_error(p, "tls_version: expected tlsv1.2 or tlsv1.3, got '%s'", w);
    }
    return 0;
}

/*
 * websockets_path, websockets_origin: one or more words; repeated lines add
 * to the list. Stored space-separated (ws.c splits them again).
 */
int
conf_set_word_list(struct parser *p, const struct directive *d, char *args)
{
    char **f = str_field(p, d);
    char *words[64];
    int n = conf_split(args, words, 64);
    size_t len = *f != NULL ? strlen(*f) : 0;
    char *s;
    int i;

    if (n == 0) {
        return conf_error(p, "%s: missing value", d->name);
    }
    if (n > 64) {
        return conf_error(p, "%s: too many values (64 per line)", d->name);
    }
    for (i = 0; i < n; i++) {
        if (strcmp(d->name, "websockets_path") == 0 && words[i][0] != '/') {
            return conf_error(p, "websockets_path: '%s' must start with '/'", words[i]);
        }
        len += strlen(words[i]) + 1;
    }
    s = realloc(*f, len + 1);
    if (s == NULL) {
        return conf_error(p, "%s: out of memory", d->name);
    }
    if (*f == NULL) {
        s[0] = '\0';
    }
    *f = s;
    for (i = 0; i < n; i++) {
        if (s[0] != '\0') {
            strcat(s, " ");
        }
        strcat(s, words[i]);
    }
    return 0;
}

/* Writes "FILE:LINE: listener PORT: message" for listener l into p->err. */
static int
listener_error(struct parser *p, const struct listener_conf *l, const char *msg)
{
    snprintf(p->err, p->errlen, "%s:%d: listener %u%s%s: %s", l->file, l->line, l->port,
             l->bind_address ? " " : "", l->bind_address ? l->bind_address : "", msg);
    return -1;
}

/* The rules between words, checked once the whole file is read. Returns 0 or -1. */
int
conf_tls_finish(struct parser *p)
{
    struct listener_conf *l;

    for (l = p->cfg->listeners; l != NULL; l = l->next) {
        int tls = l->certfile != NULL || l->psk_hint != NULL;

        if (l->certfile != NULL && l->keyfile == NULL) {
            return listener_error(p, l, "certfile needs keyfile");
        }
        if (l->keyfile != NULL && l->certfile == NULL) {
            return listener_error(p, l, "keyfile needs certfile");
        }
        if (!tls && (l->cafile || l->capath || l->crlfile || l->ciphers || l->ciphers_tls13 ||
                     l->dhparamfile ||
                     l->require_certificate || l->use_identity_as_username ||
                     l->use_subject_as_username || l->tls_version != 12)) {
            return listener_error(p, l, "TLS options need certfile and keyfile (or psk_hint)");
        }
        if (l->require_certificate && l->cafile == NULL && l->capath == NULL) {
            return listener_error(p, l, "require_certificate needs cafile or capath");
        }
        if (l->crlfile != NULL && l->cafile == NULL && l->capath == NULL) {
            return listener_error(p, l, "crlfile needs cafile or capath");
        }
        /* With PSK the identity of the key is the username (as mosquitto). */
        if (l->use_identity_as_username && !l->require_certificate && l->psk_hint == NULL) {
            return listener_error(p, l, "use_identity_as_username needs require_certificate "
                                        "true or psk_hint");
        }
        if (l->use_subject_as_username && !l->require_certificate) {
            return listener_error(p, l, "use_subject_as_username needs require_certificate true");
        }
        if (l->psk_hint != NULL) {
            if (p->cfg->psk_file == NULL) {
                return listener_error(p, l, "psk_hint needs psk_file");
            }
            free(l->psk_file);
            if ((l->psk_file = strdup(p->cfg->psk_file)) == NULL) {
                return listener_error(p, l, "out of memory");
            }
        }
        if (l->use_identity_as_username && l->use_subject_as_username) {
            return listener_error(p, l, "use_identity_as_username and use_subject_as_username "
                                        "exclude each other");
        }
        if ((l->ws_paths || l->ws_origins) && l->protocol != LISTENER_WEBSOCKETS) {
            return listener_error(p, l, "websockets_path and websockets_origin need "
                                        "protocol websockets");
        }
    }
    return 0;
}

/* Frees the listener's TLS and WebSocket strings. */
void
conf_tls_free(struct listener_conf *l)
{
    free(l->certfile);
    free(l->keyfile);
    free(l->cafile);
    free(l->capath);
    free(l->crlfile);
    free(l->ciphers);
    free(l->ciphers_tls13);
    free(l->dhparamfile);
    free(l->psk_hint);
    free(l->psk_file);
    free(l->ws_paths);
    free(l->ws_origins);
}
