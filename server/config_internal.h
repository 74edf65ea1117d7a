/*
 * Private to the configuration parser (config.c, config_lex.c,
 * config_plugin.c): parse state, the directive table's types, and shared
 * helpers. Not for the rest of the broker, which uses config.h.
 */
#ifndef MIDGE_CONFIG_INTERNAL_H
#define MIDGE_CONFIG_INTERNAL_H

#include <stddef.h>

#include "config.h"

enum dir_scope {
    SCOPE_GLOBAL,
    SCOPE_LISTENER,
};

/* How a generic setter stores its value: the C type of the field at `off`. */
enum field_kind {
    FK_NONE,
    FK_INT,
    FK_UINT,
    FK_LONG,
    FK_LLONG,
    FK_U16,
    FK_U32,
    FK_STR,
};

/* Parse state for one config_load(). The config it fills is owned by the caller of parse. */
struct parser {
    struct config *cfg;
    struct listener_conf *last; /* most recent listener: target of listener words */
    const char *file;           /* file being read, for messages */
    int line;
    int depth;                  /* 0: main file, 1: a file from include_dir */
    int log_dest_set;           /* a log_dest line replaced the default */
    int log_type_set;           /* a log_type line replaced the default */
    struct plugin_conf *last_plugin; /* target of plugin_opt_ and plugin_ settings */
    char *err;
    size_t errlen;
};

/* One choice of a word-valued directive such as `protocol`. */
struct word_value {
    const char *word;
    int value;
};

static const struct word_value protocol_words[] = {
    { "mqtt", LISTENER_MQTT },
    { "websockets", LISTENER_WEBSOCKETS },
    { NULL, 0 },
};

static const struct word_value socket_domain_words[] = {
    { "ipv4", 4 },
    { "ipv6", 6 },
    { NULL, 0 },
};

struct directive;
typedef int (*dir_setter)(struct parser *p, const struct directive *d, char *args);

struct directive {
    const char *name;
    dir_setter set;
    enum dir_scope scope;
    int reloadable;     /* SIGHUP can change it without a restart */
    enum field_kind kind;
    size_t off;         /* in struct config or struct listener_conf, by scope */
    long long min, max; /* for integers */
    const char *def;    /* the default, as docs/configuration.md states it */
    const char *help;
    const struct word_value *words; /* set_word's choices, ending with a NULL word */
};

/* config_lex.c: words and values. Errors are "FILE:LINE: message" in p->err; return -1. */
int conf_error(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int conf_is_space(char c);
char *conf_trim(char *s);
int conf_split(char *args, char **words, int max);
int conf_one_word(struct parser *p, const struct directive *d, char *args, char **word);
int conf_parse_bool(struct parser *p, const char *name, const char *w, int *out);
int conf_parse_ll(struct parser *p, const char *name, const char *w, long long min, long long max,
                  long long *out);
size_t conf_edit_distance(const char *a, const char *b);

/* config_plugin.c: plugin, listener_plugin, plugin_opt_KEY and the plugin_ settings. */
int conf_set_plugin(struct parser *p, const struct directive *d, char *args);
int conf_set_plugin_opt(struct parser *p, const char *key, char *args);
int conf_set_plugin_setting(struct parser *p, const struct directive *d, char *args);
void conf_plugin_free(struct plugin_conf *pc);
int conf_same_plugins(const struct plugin_conf *a, const struct plugin_conf *b);

/* config_tls.c: TLS and WebSocket listener words (issue 9). */
int conf_set_tls_path(struct parser *p, const struct directive *d, char *args);
int conf_set_tls_version(struct parser *p, const struct directive *d, char *args);
int conf_set_word_list(struct parser *p, const struct directive *d, char *args);
int conf_tls_finish(struct parser *p);
void conf_tls_free(struct listener_conf *l);

#endif
