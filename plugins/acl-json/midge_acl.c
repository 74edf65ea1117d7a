/*
 * midge_acl: asks an acl-json rule file the broker's questions from the
 * command line, with the same loader and evaluator as the plugin, so an
 * admin can see which rule decides and why.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"

#define EXIT_ALLOW 0
#define EXIT_DENY 1
#define EXIT_USAGE 2
#define EXIT_BADFILE 3

static const char usage_text[] =
    "NAME\n"
    "    midge_acl - check an acl-json rule file and ask it access questions\n"
    "\n"
    "SYNOPSIS\n"
    "    midge_acl FILE [--user USER] [--client ID] --action ACTION --topic TOPIC\n"
    "    midge_acl --check FILE\n"
    "    midge_acl --help | --version\n"
    "\n"
    "DESCRIPTION\n"
    "    Loads FILE exactly as the acl-json plugin of the midge broker does\n"
    "    (plugin acl-json, plugin_opt_acl_file FILE) and answers one question:\n"
    "    may the client with client id ID and username USER do ACTION on TOPIC?\n"
    "    It prints \"allow\" or \"deny\" and the rule that decided: the entry,\n"
    "    the rule's index in that entry and its topic pattern, e.g.\n"
    "\n"
    "        deny users.alice.rules[0] pattern \"secret/#\"\n"
    "        allow default.receive\n"
    "\n"
    "    Entries are searched in this order: the \"clients\" entry of ID; then,\n"
    "    with --user, the \"users\" entry of USER and each of its groups in the\n"
    "    order listed, or without --user the \"anonymous\" entry. Within an\n"
    "    entry the first rule whose topic matches and whose list names ACTION\n"
    "    decides; when none does, the \"default\" object does.\n"
    "\n"
    "    With --check, only loads FILE and reports the first error with its\n"
    "    place: FILE:LINE:COLUMN for JSON syntax, the JSON path (such as\n"
    "    users.alice.rules[2].allow[0]) for content. docs/acl-json.md describes\n"
    "    the format.\n"
    "\n"
    "OPTIONS\n"
    "    --user USER, -u USER\n"
    "        The client's username. Omit it for a client that sent none\n"
    "        (anonymous).\n"
    "    --client ID, -c ID\n"
    "        The client id (default: empty, which matches no \"clients\" entry\n"
    "        and no %c).\n"
    "    --action ACTION, -a ACTION\n"
    "        publish, subscribe (TOPIC is then a topic filter, which a rule must\n"
    "        cover entirely), receive (a message on TOPIC delivered to the\n"
    "        client), retain (the client sets a retained message on TOPIC) or\n"
    "        will (checked as publish, as the broker does at CONNECT).\n"
    "    --topic TOPIC, -t TOPIC\n"
    "        The topic name, or the topic filter for subscribe ($share/GROUP/\n"
    "        is removed first, as in the broker).\n"
    "    --check FILE\n"
    "        Validate FILE; print \"FILE: ok\" with its counts, or the error.\n"
    "    --help, -h\n"
    "        This text.\n"
    "    --version\n"
    "        The version.\n"
    "\n"
    "EXIT STATUS\n"
    "    0  allowed (or, with --check, the file is valid)\n"
    "    1  denied\n"
    "    2  usage error (unknown option, missing argument, invalid topic)\n"
    "    3  FILE cannot be read or is not a valid rule file\n"
    "\n"
    "EXAMPLES\n"
    "    midge_acl --check /etc/midge/acl.json\n"
    "    midge_acl /etc/midge/acl.json --user alice --client c1 \\\n"
    "        --action subscribe --topic 'secret/#'\n"
    "    midge_acl acl.json --client gateway-7 --action publish --topic a/b\n";

static int
usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "midge_acl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: midge_acl FILE [--user U] [--client C] --action A --topic T\n"
                    "       midge_acl --check FILE\n"
                    "Try 'midge_acl --help' for more.\n");
    return EXIT_USAGE;
}

static int
check_file(const char *file)
{
    char err[1024];
    struct acl_ruleset *rs = acl_load_file(file, err, sizeof(err));

    if (rs == NULL) {
        fprintf(stderr, "%s\n", err);
        return EXIT_BADFILE;
    }
    printf("%s: ok (%zu entries, %zu rules)\n", file, acl_ruleset_entries(rs),
           acl_ruleset_rules(rs));
    acl_ruleset_free(rs);
    return EXIT_ALLOW;
}

/* The value after option argv[*i]; NULL (after an error message) when missing. */
static const char *
value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        usage_error("option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int
main(int argc, char **argv)
{
    const char *file = NULL, *user = NULL, *client = "", *action_s = NULL, *topic = NULL;
    const char *check = NULL;
    struct acl_ruleset *rs;
    struct acl_decision d;
    char err[1024];
    char place[512];
    int action, i, allow;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return EXIT_ALLOW;
        } else if (strcmp(a, "--version") == 0) {
            printf("midge_acl (midge acl-json) 1.0\n");
            return EXIT_ALLOW;
        } else if (strcmp(a, "--check") == 0) {
            dst = &check;
        } else if (strcmp(a, "--user") == 0 || strcmp(a, "-u") == 0) {
            dst = &user;
        } else if (strcmp(a, "--client") == 0 || strcmp(a, "-c") == 0) {
            dst = &client;
        } else if (strcmp(a, "--action") == 0 || strcmp(a, "-a") == 0) {
            dst = &action_s;
        } else if (strcmp(a, "--topic") == 0 || strcmp(a, "-t") == 0) {
            dst = &topic;
        } else if (a[0] == '-' && a[1] != 0) {
            return usage_error("unknown option %s", a);
        } else if (file == NULL) {
            file = a;
            continue;
        } else {
            return usage_error("unexpected argument %s", a);
        }
        if ((*dst = value(argc, argv, &i)) == NULL) {
            return EXIT_USAGE;
        }
    }
    if (check != NULL) {
        if (file != NULL || action_s != NULL || topic != NULL) {
            return usage_error("%s", "--check takes only the file");
        }
        return check_file(check);
    }
    if (file == NULL) {
        return usage_error("%s", "no rule file given");
    }
    if (action_s == NULL || topic == NULL) {
        return usage_error("%s", "--action and --topic are required");
    }
    if (strcmp(action_s, "will") == 0) {
        action = ACL_PUBLISH;
    } else if ((action = acl_action_parse(action_s)) < 0) {
        return usage_error("unknown action %s (publish, subscribe, receive, retain or will)",
                           action_s);
    }
    if (action == ACL_SUBSCRIBE) {
        const char *slash;
        if (strncmp(topic, "$share/", 7) == 0 && (slash = strchr(topic + 7, '/')) != NULL) {
            topic = slash + 1;
        }
        if (!acl_topic_filter_valid(topic, strlen(topic))) {
            return usage_error("\"%s\" is not a valid topic filter", topic);
        }
    } else if (!acl_topic_name_valid(topic, strlen(topic))) {
        return usage_error("\"%s\" is not a valid topic name (no + or #)", topic);
    }
    if ((rs = acl_load_file(file, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s\n", err);
        return EXIT_BADFILE;
    }
    allow = acl_check(rs, client, user, action, topic, &d);
    acl_decision_place(&d, action, place, sizeof(place));
    if (d.rule != NULL) {
        printf("%s %s pattern \"%s\"\n", allow ? "allow" : "deny", place, d.rule->pattern);
    } else {
        printf("%s %s\n", allow ? "allow" : "deny", place);
    }
    acl_ruleset_free(rs);
    return allow ? EXIT_ALLOW : EXIT_DENY;
}
