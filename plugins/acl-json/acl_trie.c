/*
 * The compiled form of one entry's rules: a topic trie.
 *
 * Every pattern is a path of levels from the root. A node keeps, per
 * action, the index of the first rule ending there that names the action
 * (and the first such deny rule, see below), so a check walks only the
 * nodes on the topic's path: one literal child per level (found in a hash
 * table of all literal edges of the trie, keyed by parent and text), the
 * `+` child, the `#` child, and the few levels holding %u / %c. The cost
 * grows with the topic's levels and the wildcards that match, never with the
 * number of rules.
 *
 * %u / %c are matched literally: the level "%u" matches one topic level
 * that is exactly the username. A name that is absent, empty or holds '+',
 * '#' or '/' can never match a level, so it can never widen access: allow
 * rules with that placeholder never apply, and deny rules with it apply as
 * if the level were '+' (the walk continues "deny only" below it).
 */
#include <stdlib.h>
#include <string.h>

#include "acl.h"

/*
 * One trie node. Lives in its trie's arena, with the text of its level right
 * after it (literal children), so that finding a child touches the edge slot
 * and one node, and the nodes of one rule sit next to each other.
 */
struct acl_node {
    const struct acl_node *parent; /* literal children: for the edge table key */
    const char *level;             /* literal children: the level text (unescaped) */
    struct acl_node *plus;         /* the '+' child */
    struct acl_node *hash;         /* the '#' child */
    struct acl_tmpl *tmpls;        /* children whose level holds %u / %c (in the arena) */
    uint32_t ntmpls, tmpls_cap;
    uint32_t level_len;
    int32_t first[ACL_NACTIONS];      /* first rule ending here naming the action, or -1 */
    int32_t first_deny[ACL_NACTIONS]; /* the same among deny rules */
};

/* A child whose level is a template such as "%u" or "dev-%c". */
struct acl_tmpl {
    const char *text; /* the level as written ("%%" is a literal '%'), in the arena */
    size_t len;
    unsigned ph;      /* ACL_PH_* it uses */
    struct acl_node *child;
};

/* One slot of the literal edge table: the edge's hash and the child node. */
struct acl_edge {
    uint64_t hash;
    struct acl_node *node; /* NULL: free slot */
};

/* A block of the trie's arena. */
struct acl_chunk {
    struct acl_chunk *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

/*
 * The trie of one entry. Owns the arena (every node, level text and
 * template array) and the literal edge table.
 */
struct acl_trie {
    struct acl_node *root;
    struct acl_chunk *chunks; /* the arena, newest first */
    size_t nnodes;
    struct acl_edge *edges;   /* open addressing: literal children by (parent, level) */
    size_t edges_mask;        /* slots - 1 (a power of two minus one) */
    size_t nedges;
};

/* Walk state of one check. */
struct walk {
    const struct acl_trie *t;
    const struct acl_subject *s;
    int action;
    long best;
};

#define CHUNK_SIZE 65536

/* Zeroed memory from the trie's arena, 16-byte aligned; NULL when out of memory. */
static void *
arena_alloc(struct acl_trie *t, size_t size)
{
    struct acl_chunk *c = t->chunks;
    void *p;

    size = (size + 15) & ~(size_t)15;
    if (c == NULL || c->cap - c->used < size) {
        size_t cap = size > CHUNK_SIZE ? size : CHUNK_SIZE;
        if ((c = malloc(sizeof(*c) + cap)) == NULL) {
            return NULL;
        }
        c->next = t->chunks;
        c->used = 0;
        c->cap = cap;
        t->chunks = c;
    }
    p = c->data + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

/*
 * Hash of a literal edge: the level's bytes, eight at a time (a check hashes
 * every level of the topic at least once, so this is on the hot path), mixed
 * with the parent node's address.
 */
static uint64_t
edge_hash(const struct acl_node *parent, const char *level, size_t len)
{
    uint64_t h = (uint64_t)(uintptr_t)parent * 0x9E3779B97F4A7C15ull ^ len;
    uint64_t w;
    size_t i;

    while (len >= 8) {
        memcpy(&w, level, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        level += 8;
        len -= 8;
    }
    if (len > 0) {
        w = 0;
        for (i = 0; i < len; i++) {
            w |= (uint64_t)(unsigned char)level[i] << (8 * i);
        }
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    }
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 32);
}

static struct acl_node *
edge_find(const struct acl_trie *t, const struct acl_node *parent, const char *level, size_t len)
{
    uint64_t h;
    size_t i;

    if (t->edges == NULL) {
        return NULL;
    }
    h = edge_hash(parent, level, len);
    for (i = h & t->edges_mask;; i = (i + 1) & t->edges_mask) {
        const struct acl_edge *e = &t->edges[i];
        if (e->node == NULL) {
            return NULL;
        }
        if (e->hash == h && e->node->parent == parent && e->node->level_len == len &&
            memcmp(e->node->level, level, len) == 0) {
            return e->node;
        }
    }
}

static void
edge_put(struct acl_edge *edges, size_t mask, uint64_t h, struct acl_node *n)
{
    size_t i;

    for (i = h & mask; edges[i].node != NULL; i = (i + 1) & mask) {
    }
    edges[i].hash = h;
    edges[i].node = n;
}

static int
edge_grow(struct acl_trie *t)
{
    size_t slots = t->edges ? (t->edges_mask + 1) * 2 : 64;
    struct acl_edge *e = calloc(slots, sizeof(*e));
    size_t i;

    if (e == NULL) {
        return -1;
    }
    for (i = 0; t->edges != NULL && i <= t->edges_mask; i++) {
        if (t->edges[i].node != NULL) {
            edge_put(e, slots - 1, t->edges[i].hash, t->edges[i].node);
        }
    }
    free(t->edges);
    t->edges = e;
    t->edges_mask = slots - 1;
    return 0;
}

/* A node, with `text_len` bytes for its level text after it. */
static struct acl_node *
node_new(struct acl_trie *t, size_t text_len)
{
    struct acl_node *n = arena_alloc(t, sizeof(*n) + text_len);
    int a;

    if (n == NULL) {
        return NULL;
    }
    for (a = 0; a < ACL_NACTIONS; a++) {
        n->first[a] = n->first_deny[a] = -1;
    }
    t->nnodes++;
    return n;
}

/* Placeholders used in a level; "%%" is a literal '%'. */
static unsigned
level_placeholders(const char *p, size_t len)
{
    unsigned ph = 0;
    size_t i;

    for (i = 0; i + 1 < len; i++) {
        if (p[i] == '%') {
            ph |= p[i + 1] == 'u' ? ACL_PH_USER : p[i + 1] == 'c' ? ACL_PH_CLIENT : 0;
            i++;
        }
    }
    return ph;
}

/* Copies a literal level, "%%" -> "%", into dst; returns the new length. */
static size_t
level_unescape(char *dst, const char *p, size_t len)
{
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        dst[o++] = p[i];
        if (p[i] == '%' && i + 1 < len && p[i + 1] == '%') {
            i++;
        }
    }
    return o;
}

static struct acl_node *
tmpl_child(struct acl_trie *t, struct acl_node *n, const char *level, size_t len, unsigned ph)
{
    struct acl_node *c;
    struct acl_tmpl *v;
    char *text;
    size_t i;

    for (i = 0; i < n->ntmpls; i++) {
        if (n->tmpls[i].len == len && memcmp(n->tmpls[i].text, level, len) == 0) {
            return n->tmpls[i].child;
        }
    }
    if (n->ntmpls == n->tmpls_cap) {
        uint32_t cap = n->tmpls_cap ? n->tmpls_cap * 2 : 2;
        if ((v = arena_alloc(t, cap * sizeof(*v))) == NULL) {
            return NULL;
        }
        if (n->ntmpls > 0) {
            memcpy(v, n->tmpls, n->ntmpls * sizeof(*v)); /* the old array stays in the arena */
        }
        n->tmpls = v;
        n->tmpls_cap = cap;
    }
    if ((text = arena_alloc(t, len + 1)) == NULL || (c = node_new(t, 0)) == NULL) {
        return NULL;
    }
    memcpy(text, level, len);
    v = &n->tmpls[n->ntmpls++];
    v->text = text;
    v->len = len;
    v->ph = ph;
    v->child = c;
    return c;
}

/* The child of n for one pattern level, created when missing. */
static struct acl_node *
child_get(struct acl_trie *t, struct acl_node *n, const char *level, size_t len)
{
    struct acl_node **slot = NULL;
    struct acl_node *c;
    char buf[256];
    char *text = buf;
    unsigned ph;
    uint64_t h;

    if (len == 1 && level[0] == '+') {
        slot = &n->plus;
    } else if (len == 1 && level[0] == '#') {
        slot = &n->hash;
    }
    if (slot != NULL) {
        if (*slot == NULL) {
            *slot = node_new(t, 0);
        }
        return *slot;
    }
    if ((ph = level_placeholders(level, len)) != 0) {
        return tmpl_child(t, n, level, len, ph);
    }
    if (len > sizeof(buf) && (text = malloc(len)) == NULL) {
        return NULL;
    }
    len = level_unescape(text, level, len);
    c = edge_find(t, n, text, len);
    if (c == NULL && (t->edges == NULL || (t->nedges + 1) * 2 > t->edges_mask + 1) &&
        edge_grow(t) < 0) {
        goto out;
    }
    if (c == NULL && (c = node_new(t, len + 1)) != NULL) {
        char *own = (char *)(c + 1);
        memcpy(own, text, len);
        c->parent = n;
        c->level = own;
        c->level_len = (uint32_t)len;
        h = edge_hash(n, own, len);
        edge_put(t->edges, t->edges_mask, h, c);
        t->nedges++;
    }
out:
    if (text != buf) {
        free(text);
    }
    return c;
}

/* Builds the trie of entry e; see acl.h. */
int
acl_trie_build(struct acl_entry *e)
{
    struct acl_trie *t = calloc(1, sizeof(*t));
    size_t i;

    if (t == NULL) {
        return -1;
    }
    e->trie = t;
    if ((t->root = node_new(t, 0)) == NULL) {
        return -1;
    }
    for (i = 0; i < e->nrules; i++) {
        const struct acl_rule *r = &e->rules[i];
        struct acl_node *n = t->root;
        const char *p = r->pattern;
        int a;

        for (;;) {
            const char *slash = strchr(p, '/');
            size_t len = slash ? (size_t)(slash - p) : strlen(p);
            if ((n = child_get(t, n, p, len)) == NULL) {
                return -1;
            }
            if (slash == NULL) {
                break;
            }
            p = slash + 1;
        }
        for (a = 0; a < ACL_NACTIONS; a++) {
            if (!(r->actions & (1u << a))) {
                continue;
            }
            if (n->first[a] < 0) {
                n->first[a] = (int32_t)i;
            }
            if (!r->allow && n->first_deny[a] < 0) {
                n->first_deny[a] = (int32_t)i;
            }
        }
    }
    return 0;
}

/* Frees a trie and everything it owns. NULL is ignored. */
void
acl_trie_free(struct acl_trie *t)
{
    struct acl_chunk *c;

    if (t == NULL) {
        return;
    }
    while ((c = t->chunks) != NULL) {
        t->chunks = c->next;
        free(c);
    }
    free(t->edges);
    free(t);
}

/* 1 when template level tp (with the subject's names put in) equals lv exactly. */
static int
tmpl_equal(const struct acl_tmpl *tp, const struct acl_subject *s, const char *lv, size_t llen)
{
    size_t i = 0, j = 0;

    while (i < tp->len) {
        const char *v = NULL;
        size_t vl = 0;
        if (tp->text[i] == '%' && i + 1 < tp->len) {
            char k = tp->text[i + 1];
            i += 2;
            if (k == 'u') {
                v = s->username, vl = s->user_len;
            } else if (k == 'c') {
                v = s->client_id, vl = s->client_len;
            } else {
                v = "%", vl = 1;
            }
        } else {
            v = &tp->text[i++], vl = 1;
        }
        if (llen - j < vl || memcmp(lv + j, v, vl) != 0) {
            return 0;
        }
        j += vl;
    }
    return j == llen;
}

static void
consider(struct walk *w, const struct acl_node *n, int deny_only)
{
    long i = deny_only ? n->first_deny[w->action] : n->first[w->action];

    if (i >= 0 && (w->best < 0 || i < w->best)) {
        w->best = i;
    }
}

/*
 * Topic names: p is the rest of the topic from the current level on, NULL
 * when every level was consumed. `top`: p is the first level, where '+'
 * and '#' never match a level starting with '$' [MQTT-4.7.2-1].
 */
static void
match_name(struct walk *w, const struct acl_node *n, const char *p, int top, int deny_only)
{
    const char *slash;
    const char *next;
    const struct acl_node *c;
    size_t len, i;
    int wild = !(top && p != NULL && p[0] == '$');

    if (n->hash != NULL && wild) {
        consider(w, n->hash, deny_only); /* "a/#" matches "a" and everything below it */
    }
    if (p == NULL) {
        consider(w, n, deny_only);
        return;
    }
    slash = strchr(p, '/');
    len = slash ? (size_t)(slash - p) : strlen(p);
    next = slash ? slash + 1 : NULL;
    if (n->plus != NULL && wild) {
        match_name(w, n->plus, next, 0, deny_only);
    }
    if ((c = edge_find(w->t, n, p, len)) != NULL) {
        match_name(w, c, next, 0, deny_only);
    }
    for (i = 0; i < n->ntmpls; i++) {
        const struct acl_tmpl *tp = &n->tmpls[i];
        if (tp->ph & w->s->bad) {
            match_name(w, tp->child, next, 0, 1); /* as '+', deny rules only */
        } else if (tmpl_equal(tp, w->s, p, len)) {
            match_name(w, tp->child, next, 0, deny_only);
        }
    }
}

/*
 * Topic filters (SUBSCRIBE): a rule applies when its pattern covers the
 * whole filter, i.e. every topic the filter matches, the pattern matches.
 * Pattern '#' covers any rest; '+' covers a literal level or '+'; a literal
 * or %u level covers only the same literal level. At the first level a
 * pattern wildcard does not cover a '$' level, and a filter wildcard there
 * excludes '$' topics just as the pattern's does.
 */
static void
cover_filter(struct walk *w, const struct acl_node *n, const char *p, int top, int deny_only)
{
    const char *slash;
    const char *next;
    const struct acl_node *c;
    size_t len, i;
    int fwild;
    int wild = !(top && p != NULL && p[0] == '$');

    if (n->hash != NULL && wild) {
        consider(w, n->hash, deny_only);
    }
    if (p == NULL) {
        consider(w, n, deny_only);
        return;
    }
    slash = strchr(p, '/');
    len = slash ? (size_t)(slash - p) : strlen(p);
    next = slash ? slash + 1 : NULL;
    if (len == 1 && p[0] == '#') {
        /*
         * A pattern '#' covers a filter '#' (considered above). At the first
         * level so does "+/#": a topic has at least one level, '+' takes it
         * and '#' the rest, and both sides leave out '$' topics.
         */
        if (top && n->plus != NULL && n->plus->hash != NULL) {
            consider(w, n->plus->hash, deny_only);
        }
        for (i = 0; top && i < n->ntmpls; i++) {
            if ((n->tmpls[i].ph & w->s->bad) && n->tmpls[i].child->hash != NULL) {
                consider(w, n->tmpls[i].child->hash, 1);
            }
        }
        return;
    }
    fwild = len == 1 && p[0] == '+';
    if (n->plus != NULL && wild) {
        cover_filter(w, n->plus, next, 0, deny_only);
    }
    if (!fwild && (c = edge_find(w->t, n, p, len)) != NULL) {
        cover_filter(w, c, next, 0, deny_only);
    }
    for (i = 0; i < n->ntmpls; i++) {
        const struct acl_tmpl *tp = &n->tmpls[i];
        if (tp->ph & w->s->bad) {
            cover_filter(w, tp->child, next, 0, 1);
        } else if (!fwild && tmpl_equal(tp, w->s, p, len)) {
            cover_filter(w, tp->child, next, 0, deny_only);
        }
    }
}

/* The first rule of the trie deciding the question; see acl.h. */
long
acl_trie_first(const struct acl_trie *t, const struct acl_subject *s, int action,
               const char *topic)
{
    struct walk w = {t, s, action, -1};

    if (t == NULL || t->nnodes <= 1) {
        return -1;
    }
    if (action == ACL_SUBSCRIBE) {
        cover_filter(&w, t->root, topic, 1, 0);
    } else {
        match_name(&w, t->root, topic, 1, 0);
    }
    return w.best;
}

/* Valid topic name: non-empty, no '+' or '#' [MQTT-4.7.3-1], [MQTT-4.7.1-1]. */
int
acl_topic_name_valid(const char *s, size_t len)
{
    return len > 0 && len <= 65535 && memchr(s, '+', len) == NULL && memchr(s, '#', len) == NULL &&
           memchr(s, '\0', len) == NULL;
}

/* Valid filter: '+' and '#' alone in their level, '#' last [MQTT-4.7.1-2], [MQTT-4.7.1-3]. */
int
acl_topic_filter_valid(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > 65535 || memchr(s, '\0', len) != NULL) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        int start = i == 0 || s[i - 1] == '/';
        int end = i + 1 == len || s[i + 1] == '/';
        if ((s[i] == '+' || s[i] == '#') && !(start && end)) {
            return 0;
        }
        if (s[i] == '#' && i + 1 != len) {
            return 0;
        }
    }
    return 1;
}
