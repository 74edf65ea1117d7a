/*
 * The tables of the acl-json unit tests: rule files, questions with the
 * expected answer and deciding rule, and malformed files with their exact
 * error. The order of precedence and the covers relation are those of
 * issue 6 and docs/acl-json.md; $-topics follow [MQTT-4.7.2-1].
 */
#include <stddef.h>

#include "acl.h"
#include "test_acl_json.h"

#define PUB ACL_PUBLISH
#define SUB ACL_SUBSCRIBE
#define RECV ACL_RECEIVE
#define RET ACL_RETAIN
#define ALLOW 1
#define DENY 0

const char *const acl_test_files[F_COUNT] = {
    [F_ISSUE] =
        "{\n"
        " \"default\":   { \"publish\": \"deny\", \"subscribe\": \"deny\", \"receive\": \"allow\" },\n"
        " \"anonymous\": { \"rules\": [ { \"topic\": \"public/#\", \"allow\": [\"subscribe\", \"receive\"] } ] },\n"
        " \"groups\": {\n"
        "   \"sensors\": { \"rules\": [ { \"topic\": \"sensors/%u/#\", \"allow\": [\"publish\"] } ] }\n"
        " },\n"
        " \"users\": {\n"
        "   \"alice\": { \"groups\": [\"sensors\"],\n"
        "              \"rules\": [ { \"topic\": \"secret/#\", \"deny\": [\"subscribe\", \"receive\"] },\n"
        "                         { \"topic\": \"cmd/%c/#\", \"allow\": [\"subscribe\", \"receive\"] } ] }\n"
        " },\n"
        " \"clients\": { \"gateway-7\": { \"rules\": [ { \"topic\": \"#\", \"allow\": [\"publish\", \"subscribe\", \"receive\"] } ] } }\n"
        "}\n",
    [F_PRECEDENCE] =
        "{ \"default\": { \"publish\": \"allow\", \"subscribe\": \"allow\", \"receive\": \"allow\", \"retain\": \"deny\" },\n"
        "  \"anonymous\": { \"rules\": [ { \"topic\": \"a/#\", \"deny\": [\"publish\"] } ] },\n"
        "  \"groups\": {\n"
        "    \"g1\": { \"rules\": [ { \"topic\": \"g/#\", \"deny\": [\"publish\"] },\n"
        "                         { \"topic\": \"both/#\", \"deny\": [\"publish\"] } ] },\n"
        "    \"g2\": { \"rules\": [ { \"topic\": \"g/#\", \"allow\": [\"publish\"] },\n"
        "                         { \"topic\": \"g2only/#\", \"deny\": [\"publish\"] },\n"
        "                         { \"topic\": \"both/#\", \"allow\": [\"publish\"] } ] } },\n"
        "  \"users\": {\n"
        "    \"u\": { \"groups\": [\"g2\", \"g1\"],\n"
        "           \"rules\": [ { \"topic\": \"x/+\", \"deny\": [\"publish\"] },\n"
        "                      { \"topic\": \"x/#\", \"allow\": [\"publish\"] },\n"
        "                      { \"topic\": \"x/y\", \"allow\": [\"publish\"] },\n"
        "                      { \"topic\": \"r/#\", \"allow\": [\"retain\"] },\n"
        "                      { \"topic\": \"sub/#\", \"deny\": [\"receive\"] } ] },\n"
        "    \"v\": { \"groups\": [\"g1\", \"g2\"] },\n"
        "    \"w\": { } },\n"
        "  \"clients\": { \"c-deny\": { \"rules\": [ { \"topic\": \"x/#\", \"deny\": [\"publish\"] } ] },\n"
        "               \"c-other\": { \"rules\": [ { \"topic\": \"x/#\", \"deny\": [\"subscribe\"] } ] } } }\n",
    [F_COVERS] =
        "{ \"users\": { \"s\": { \"rules\": [\n"
        "    { \"topic\": \"a/#\", \"allow\": [\"subscribe\"] },\n"
        "    { \"topic\": \"b/+\", \"allow\": [\"subscribe\"] },\n"
        "    { \"topic\": \"c/+/d\", \"allow\": [\"subscribe\"] },\n"
        "    { \"topic\": \"e\", \"allow\": [\"subscribe\"] },\n"
        "    { \"topic\": \"#\", \"deny\": [\"subscribe\"] } ] } } }\n",
    [F_COVERS2] =
        "{ \"anonymous\": { \"rules\": [\n"
        "    { \"topic\": \"+/+\", \"allow\": [\"subscribe\"] },\n"
        "    { \"topic\": \"+/#\", \"allow\": [\"subscribe\"] } ] } }\n",
    [F_SUBST] =
        "{ \"default\": { \"publish\": \"deny\", \"subscribe\": \"deny\", \"receive\": \"deny\" },\n"
        "  \"anonymous\": { \"rules\": [\n"
        "    { \"topic\": \"anon/%c/#\", \"allow\": [\"publish\", \"subscribe\", \"receive\"] },\n"
        "    { \"topic\": \"anon2/%u/#\", \"allow\": [\"publish\"] } ] },\n"
        "  \"groups\": { \"t\": { \"rules\": [\n"
        "    { \"topic\": \"home/%u/#\", \"allow\": [\"publish\", \"subscribe\", \"receive\"] },\n"
        "    { \"topic\": \"dev/%c\", \"allow\": [\"publish\"] },\n"
        "    { \"topic\": \"pre-%u-post/x\", \"allow\": [\"publish\"] },\n"
        "    { \"topic\": \"both/%u/%c\", \"allow\": [\"publish\"] },\n"
        "    { \"topic\": \"pct/%%u\", \"allow\": [\"publish\"] },\n"
        "    { \"topic\": \"lock/%c/#\", \"deny\": [\"publish\"] },\n"
        "    { \"topic\": \"lock/#\", \"allow\": [\"publish\"] },\n"
        "    { \"topic\": \"%u/inbox\", \"allow\": [\"subscribe\"] } ] } },\n"
        "  \"users\": { \"u1\": { \"groups\": [\"t\"] }, \"+\": { \"groups\": [\"t\"] },\n"
        "             \"#\": { \"groups\": [\"t\"] }, \"a/b\": { \"groups\": [\"t\"] },\n"
        "             \"\": { \"groups\": [\"t\"] }, \"%u\": { \"groups\": [\"t\"] } } }\n",
    [F_DOLLAR] =
        "{ \"anonymous\": { \"rules\": [\n"
        "    { \"topic\": \"+/status\", \"allow\": [\"publish\", \"subscribe\"] },\n"
        "    { \"topic\": \"$SYS/broker/#\", \"allow\": [\"subscribe\"] },\n"
        "    { \"topic\": \"#\", \"allow\": [\"subscribe\", \"publish\"] },\n"
        "    { \"topic\": \"#\", \"deny\": [\"receive\"] } ] } }\n",
    [F_EMPTY] = "{}",
    [F_DEFAULTS] =
        "{ \"default\": { \"publish\": \"allow\", \"retain\": \"deny\", \"comment\": \"partial\" },\n"
        "  \"users\": { \"x\": { \"rules\": [] } } }\n",
};

const struct acl_case acl_cases[] = {
    /* ---- the issue's example ---- */
    {"issue: anonymous may subscribe public/#", F_ISSUE, "c1", NULL, SUB, "public/#", ALLOW, "anonymous.rules[0]"},
    {"issue: public/# covers public/a/+", F_ISSUE, "c1", NULL, SUB, "public/a/+", ALLOW, "anonymous.rules[0]"},
    {"issue: public/# covers public itself", F_ISSUE, "c1", NULL, SUB, "public", ALLOW, "anonymous.rules[0]"},
    {"issue: anonymous # is wider than public/#", F_ISSUE, "c1", NULL, SUB, "#", DENY, "default.subscribe"},
    {"issue: anonymous + is wider than public/#", F_ISSUE, "c1", NULL, SUB, "+", DENY, "default.subscribe"},
    {"issue: anonymous publish falls to the default", F_ISSUE, "c1", NULL, PUB, "public/x", DENY, "default.publish"},
    {"issue: receive defaults to allow", F_ISSUE, "c1", NULL, RECV, "anything/x", ALLOW, "default.receive"},
    {"issue: retain defaults to allow", F_ISSUE, "c1", NULL, RET, "anything/x", ALLOW, "default.retain"},
    {"issue: alice publishes under her own sensors/%u", F_ISSUE, "c1", "alice", PUB, "sensors/alice/temp", ALLOW, "groups.sensors.rules[0]"},
    {"issue: alice may not publish as bob", F_ISSUE, "c1", "alice", PUB, "sensors/bob/temp", DENY, "default.publish"},
    {"issue: sensors/%u/# matches sensors/alice", F_ISSUE, "c1", "alice", PUB, "sensors/alice", ALLOW, "groups.sensors.rules[0]"},
    {"issue: alice may not subscribe secret/#", F_ISSUE, "c1", "alice", SUB, "secret/#", DENY, "users.alice.rules[0]"},
    {"issue: alice does not receive secret/x", F_ISSUE, "c1", "alice", RECV, "secret/x", DENY, "users.alice.rules[0]"},
    {"issue: alice subscribes to her client's cmd/%c/#", F_ISSUE, "c1", "alice", SUB, "cmd/c1/#", ALLOW, "users.alice.rules[1]"},
    {"issue: cmd/%c/# is not another client's", F_ISSUE, "c1", "alice", SUB, "cmd/c2/#", DENY, "default.subscribe"},
    {"issue: cmd/%c/# does not cover cmd/+/#", F_ISSUE, "c1", "alice", SUB, "cmd/+/#", DENY, "default.subscribe"},
    {"issue: alice receives cmd for her client", F_ISSUE, "c1", "alice", RECV, "cmd/c1/reboot", ALLOW, "users.alice.rules[1]"},
    {"issue: a user is not anonymous (receive)", F_ISSUE, "c1", "alice", RECV, "public/x", ALLOW, "default.receive"},
    {"issue: a user is not anonymous (subscribe)", F_ISSUE, "c1", "alice", SUB, "public/#", DENY, "default.subscribe"},
    {"issue: gateway-7 publishes anywhere", F_ISSUE, "gateway-7", NULL, PUB, "a/b", ALLOW, "clients.gateway-7.rules[0]"},
    {"issue: gateway-7 subscribes #", F_ISSUE, "gateway-7", NULL, SUB, "#", ALLOW, "clients.gateway-7.rules[0]"},
    {"issue: the client entry comes before the user's", F_ISSUE, "gateway-7", "alice", SUB, "secret/#", ALLOW, "clients.gateway-7.rules[0]"},
    {"issue: the client entry does not name retain", F_ISSUE, "gateway-7", NULL, RET, "a/b", ALLOW, "default.retain"},
    {"issue: # does not match $SYS for publish", F_ISSUE, "gateway-7", NULL, PUB, "$SYS/x", DENY, "default.publish"},
    {"issue: # does not cover $SYS/#", F_ISSUE, "gateway-7", NULL, SUB, "$SYS/#", DENY, "default.subscribe"},
    {"issue: $SYS receive falls to the default", F_ISSUE, "gateway-7", NULL, RECV, "$SYS/broker/uptime", ALLOW, "default.receive"},
    {"issue: an unknown user gets only the defaults", F_ISSUE, "c1", "bob", PUB, "sensors/bob/t", DENY, "default.publish"},
    {"issue: an unknown user is not anonymous", F_ISSUE, "c1", "bob", SUB, "public/#", DENY, "default.subscribe"},
    {"issue: client ids are case sensitive", F_ISSUE, "Gateway-7", NULL, PUB, "a/b", DENY, "default.publish"},
    {"issue: usernames are case sensitive", F_ISSUE, "c1", "Alice", PUB, "sensors/Alice/t", DENY, "default.publish"},

    /* ---- order of precedence ---- */
    {"precedence: the first rule in file order decides", F_PRECEDENCE, "c", "u", PUB, "x/y", DENY, "users.u.rules[0]"},
    {"precedence: x/# decides where x/+ does not match", F_PRECEDENCE, "c", "u", PUB, "x/y/z", ALLOW, "users.u.rules[1]"},
    {"precedence: x/# matches x, x/+ does not", F_PRECEDENCE, "c", "u", PUB, "x", ALLOW, "users.u.rules[1]"},
    {"precedence: groups in the user's order (g2 first)", F_PRECEDENCE, "c", "u", PUB, "g/1", ALLOW, "groups.g2.rules[0]"},
    {"precedence: groups in the user's order (g1 first)", F_PRECEDENCE, "c", "v", PUB, "g/1", DENY, "groups.g1.rules[0]"},
    {"precedence: group order beats rule index", F_PRECEDENCE, "c", "u", PUB, "both/1", ALLOW, "groups.g2.rules[2]"},
    {"precedence: group order beats rule index (g1 first)", F_PRECEDENCE, "c", "v", PUB, "both/1", DENY, "groups.g1.rules[1]"},
    {"precedence: a later group decides when the first has no rule", F_PRECEDENCE, "c", "u", PUB, "g2only/1", DENY, "groups.g2.rules[1]"},
    {"precedence: the second group is searched", F_PRECEDENCE, "c", "v", PUB, "g2only/1", DENY, "groups.g2.rules[1]"},
    {"precedence: the client entry beats the user's", F_PRECEDENCE, "c-deny", "u", PUB, "x/y/z", DENY, "clients.c-deny.rules[0]"},
    {"precedence: the client entry beats anonymous", F_PRECEDENCE, "c-deny", NULL, PUB, "x/1", DENY, "clients.c-deny.rules[0]"},
    {"precedence: a client rule for another action does not decide", F_PRECEDENCE, "c-other", "u", PUB, "x/y/z", ALLOW, "users.u.rules[1]"},
    {"precedence: a client rule for this action decides", F_PRECEDENCE, "c-other", "u", SUB, "x/#", DENY, "clients.c-other.rules[0]"},
    {"precedence: retain has its own rules", F_PRECEDENCE, "c", "u", RET, "r/1", ALLOW, "users.u.rules[3]"},
    {"precedence: retain default can deny", F_PRECEDENCE, "c", "u", RET, "x/1", DENY, "default.retain"},
    {"precedence: a publish rule does not decide retain", F_PRECEDENCE, "c", "u", RET, "x/y/z", DENY, "default.retain"},
    {"precedence: anonymous rules apply without a username", F_PRECEDENCE, "c", NULL, PUB, "a/1", DENY, "anonymous.rules[0]"},
    {"precedence: anonymous falls to the default", F_PRECEDENCE, "c", NULL, PUB, "b", ALLOW, "default.publish"},
    {"precedence: anonymous rules do not apply to users", F_PRECEDENCE, "c", "u", PUB, "a/1", ALLOW, "default.publish"},
    {"precedence: receive deny rule", F_PRECEDENCE, "c", "u", RECV, "sub/x", DENY, "users.u.rules[4]"},
    {"precedence: a publish rule does not decide receive", F_PRECEDENCE, "c", "u", RECV, "x/y", ALLOW, "default.receive"},
    {"precedence: a user with an empty entry gets the defaults", F_PRECEDENCE, "c", "w", PUB, "a/1", ALLOW, "default.publish"},
    {"precedence: a user without groups", F_PRECEDENCE, "c", "w", RET, "r/1", DENY, "default.retain"},

    /* ---- subscribe: the pattern must cover the whole filter ---- */
    {"covers: a/# covers a/#", F_COVERS, "c", "s", SUB, "a/#", ALLOW, "users.s.rules[0]"},
    {"covers: a/# covers a/+/b", F_COVERS, "c", "s", SUB, "a/+/b", ALLOW, "users.s.rules[0]"},
    {"covers: a/# covers a", F_COVERS, "c", "s", SUB, "a", ALLOW, "users.s.rules[0]"},
    {"covers: a/# covers a/b/c/#", F_COVERS, "c", "s", SUB, "a/b/c/#", ALLOW, "users.s.rules[0]"},
    {"covers: a/# covers a/+", F_COVERS, "c", "s", SUB, "a/+", ALLOW, "users.s.rules[0]"},
    {"covers: # covers +", F_COVERS, "c", "s", SUB, "+", DENY, "users.s.rules[4]"},
    {"covers: # covers #", F_COVERS, "c", "s", SUB, "#", DENY, "users.s.rules[4]"},
    {"covers: b/+ covers b/x", F_COVERS, "c", "s", SUB, "b/x", ALLOW, "users.s.rules[1]"},
    {"covers: b/+ covers b/+", F_COVERS, "c", "s", SUB, "b/+", ALLOW, "users.s.rules[1]"},
    {"covers: b/+ does not cover b/#", F_COVERS, "c", "s", SUB, "b/#", DENY, "users.s.rules[4]"},
    {"covers: b/+ does not cover b", F_COVERS, "c", "s", SUB, "b", DENY, "users.s.rules[4]"},
    {"covers: b/+ does not cover b/x/y", F_COVERS, "c", "s", SUB, "b/x/y", DENY, "users.s.rules[4]"},
    {"covers: c/+/d covers c/x/d", F_COVERS, "c", "s", SUB, "c/x/d", ALLOW, "users.s.rules[2]"},
    {"covers: c/+/d covers c/+/d", F_COVERS, "c", "s", SUB, "c/+/d", ALLOW, "users.s.rules[2]"},
    {"covers: c/+/d does not cover c/#", F_COVERS, "c", "s", SUB, "c/#", DENY, "users.s.rules[4]"},
    {"covers: c/+/d does not cover c/x/+", F_COVERS, "c", "s", SUB, "c/x/+", DENY, "users.s.rules[4]"},
    {"covers: e covers e", F_COVERS, "c", "s", SUB, "e", ALLOW, "users.s.rules[3]"},
    {"covers: e does not cover e/#", F_COVERS, "c", "s", SUB, "e/#", DENY, "users.s.rules[4]"},
    {"covers: e does not cover +", F_COVERS, "c", "s", SUB, "+", DENY, "users.s.rules[4]"},
    {"covers: # covers +/x", F_COVERS, "c", "s", SUB, "+/x", DENY, "users.s.rules[4]"},
    {"covers: # does not cover $SYS/# [MQTT-4.7.2-1]", F_COVERS, "c", "s", SUB, "$SYS/#", DENY, "default.subscribe"},
    {"covers: # does not cover $SYS/x [MQTT-4.7.2-1]", F_COVERS, "c", "s", SUB, "$SYS/x", DENY, "default.subscribe"},
    {"covers: publish is matched, not covered", F_COVERS, "c", "s", PUB, "a/b", DENY, "default.publish"},
    {"covers: +/+ covers x/y", F_COVERS2, "c", NULL, SUB, "x/y", ALLOW, "anonymous.rules[0]"},
    {"covers: +/+ covers +/+", F_COVERS2, "c", NULL, SUB, "+/+", ALLOW, "anonymous.rules[0]"},
    {"covers: +/# covers +/#", F_COVERS2, "c", NULL, SUB, "+/#", ALLOW, "anonymous.rules[1]"},
    {"covers: +/# covers x/#", F_COVERS2, "c", NULL, SUB, "x/#", ALLOW, "anonymous.rules[1]"},
    {"covers: +/# covers x", F_COVERS2, "c", NULL, SUB, "x", ALLOW, "anonymous.rules[1]"},
    {"covers: +/# covers # (every topic has a first level)", F_COVERS2, "c", NULL, SUB, "#", ALLOW, "anonymous.rules[1]"},
    {"covers: x/# needs +/#, +/+ does not cover it", F_COVERS2, "c", NULL, SUB, "x/#", ALLOW, "anonymous.rules[1]"},
    {"covers: + does not cover $SYS [MQTT-4.7.2-1]", F_COVERS2, "c", NULL, SUB, "$SYS/x", DENY, "default.subscribe"},
    {"covers: +/# does not cover $SYS/# [MQTT-4.7.2-1]", F_COVERS2, "c", NULL, SUB, "$SYS/#", DENY, "default.subscribe"},

    /* ---- %u and %c ---- */
    {"subst: %u is the username", F_SUBST, "c1", "u1", PUB, "home/u1/a", ALLOW, "groups.t.rules[0]"},
    {"subst: %u is not another user", F_SUBST, "c1", "u1", PUB, "home/u2/a", DENY, "default.publish"},
    {"subst: home/%u/# matches home/u1", F_SUBST, "c1", "u1", PUB, "home/u1", ALLOW, "groups.t.rules[0]"},
    {"subst: home/%u/# covers home/u1/#", F_SUBST, "c1", "u1", SUB, "home/u1/#", ALLOW, "groups.t.rules[0]"},
    {"subst: %u does not cover +", F_SUBST, "c1", "u1", SUB, "home/+/#", DENY, "default.subscribe"},
    {"subst: home/%u/# does not cover home/#", F_SUBST, "c1", "u1", SUB, "home/#", DENY, "default.subscribe"},
    {"subst: %u receive", F_SUBST, "c1", "u1", RECV, "home/u1/x", ALLOW, "groups.t.rules[0]"},
    {"subst: %c is the client id", F_SUBST, "c1", "u1", PUB, "dev/c1", ALLOW, "groups.t.rules[1]"},
    {"subst: %c is not another client", F_SUBST, "c1", "u1", PUB, "dev/c2", DENY, "default.publish"},
    {"subst: %u inside a level", F_SUBST, "c1", "u1", PUB, "pre-u1-post/x", ALLOW, "groups.t.rules[2]"},
    {"subst: %u inside a level, other name", F_SUBST, "c1", "u1", PUB, "pre-u2-post/x", DENY, "default.publish"},
    {"subst: %u inside a level must fill it", F_SUBST, "c1", "u1", PUB, "pre-u1-postx/x", DENY, "default.publish"},
    {"subst: %u and %c in one pattern", F_SUBST, "c1", "u1", PUB, "both/u1/c1", ALLOW, "groups.t.rules[3]"},
    {"subst: %u and %c in their places only", F_SUBST, "c1", "u1", PUB, "both/c1/u1", DENY, "default.publish"},
    {"subst: %% is a literal percent sign", F_SUBST, "c1", "u1", PUB, "pct/%u", ALLOW, "groups.t.rules[4]"},
    {"subst: %%u is not the username", F_SUBST, "c1", "u1", PUB, "pct/u1", DENY, "default.publish"},
    {"subst: a %c deny rule before an allow", F_SUBST, "c1", "u1", PUB, "lock/c1/x", DENY, "groups.t.rules[5]"},
    {"subst: a %c deny rule for another client", F_SUBST, "c1", "u1", PUB, "lock/c2/x", ALLOW, "groups.t.rules[6]"},
    {"subst: %u at the first level", F_SUBST, "c1", "u1", SUB, "u1/inbox", ALLOW, "groups.t.rules[7]"},
    {"subst: a name that looks like a placeholder is literal", F_SUBST, "c1", "%u", PUB, "home/%u/a", ALLOW, "groups.t.rules[0]"},
    {"inject: username + does not match a level", F_SUBST, "c1", "+", PUB, "home/x/a", DENY, "default.publish"},
    {"inject: username + does not cover filter +", F_SUBST, "c1", "+", SUB, "home/+/#", DENY, "default.subscribe"},
    {"inject: username + does not match a literal +", F_SUBST, "c1", "+", SUB, "home/+", DENY, "default.subscribe"},
    {"inject: username # does not cover #", F_SUBST, "c1", "#", SUB, "home/#", DENY, "default.subscribe"},
    {"inject: username # does not match a level", F_SUBST, "c1", "#", PUB, "home/anything", DENY, "default.publish"},
    {"inject: username # at the first level", F_SUBST, "c1", "#", SUB, "#", DENY, "default.subscribe"},
    {"inject: username a/b does not span levels", F_SUBST, "c1", "a/b", PUB, "home/a/b/c", DENY, "default.publish"},
    {"inject: username a/b subscribe", F_SUBST, "c1", "a/b", SUB, "home/a/b/#", DENY, "default.subscribe"},
    {"inject: username a/b does not match a", F_SUBST, "c1", "a/b", PUB, "home/a", DENY, "default.publish"},
    {"inject: an empty username never substitutes", F_SUBST, "c1", "", PUB, "home//a", DENY, "default.publish"},
    {"inject: client id + never allows", F_SUBST, "+", "u1", PUB, "dev/x", DENY, "default.publish"},
    {"inject: client id # never allows", F_SUBST, "#", "u1", PUB, "dev/x", DENY, "default.publish"},
    {"inject: client id with / never allows", F_SUBST, "d/x", "u1", PUB, "dev/d/x", DENY, "default.publish"},
    {"inject: client id + hits a %c deny as '+'", F_SUBST, "c+", "u1", PUB, "lock/anything/x", DENY, "groups.t.rules[5]"},
    {"inject: client id with / hits a %c deny", F_SUBST, "a/b", "u1", PUB, "lock/a/b", DENY, "groups.t.rules[5]"},
    {"inject: client id # hits a %c deny", F_SUBST, "#", "u1", PUB, "lock/x", DENY, "groups.t.rules[5]"},
    {"inject: empty client id never allows", F_SUBST, "", "u1", PUB, "dev/", DENY, "default.publish"},
    {"inject: empty client id hits a %c deny", F_SUBST, "", "u1", PUB, "lock/z/1", DENY, "groups.t.rules[5]"},
    {"inject: anonymous client id + does not cover +", F_SUBST, "+", NULL, SUB, "anon/+/#", DENY, "default.subscribe"},
    {"inject: anonymous client id # does not cover #", F_SUBST, "#", NULL, SUB, "anon/#", DENY, "default.subscribe"},
    {"subst: anonymous %c", F_SUBST, "k1", NULL, SUB, "anon/k1/#", ALLOW, "anonymous.rules[0]"},
    {"subst: anonymous %c receive", F_SUBST, "k1", NULL, RECV, "anon/k1/x", ALLOW, "anonymous.rules[0]"},
    {"subst: anonymous %c, other client", F_SUBST, "k1", NULL, RECV, "anon/k2/x", DENY, "default.receive"},
    {"inject: anonymous client id k/1", F_SUBST, "k/1", NULL, RECV, "anon/k/1", DENY, "default.receive"},
    {"subst: %u never matches without a username", F_SUBST, "k1", NULL, PUB, "anon2/k1/x", DENY, "default.publish"},

    /* ---- $-topics [MQTT-4.7.2-1] ---- */
    {"dollar: +/status does not match $SYS/status", F_DOLLAR, "c", NULL, PUB, "$SYS/status", DENY, "default.publish"},
    {"dollar: +/status matches dev/status", F_DOLLAR, "c", NULL, PUB, "dev/status", ALLOW, "anonymous.rules[0]"},
    {"dollar: # does not match $foo", F_DOLLAR, "c", NULL, PUB, "$foo", DENY, "default.publish"},
    {"dollar: a $SYS pattern matches $SYS", F_DOLLAR, "c", NULL, SUB, "$SYS/broker/load", ALLOW, "anonymous.rules[1]"},
    {"dollar: $SYS/broker/# does not cover $SYS/#", F_DOLLAR, "c", NULL, SUB, "$SYS/#", DENY, "default.subscribe"},
    {"dollar: $SYS/broker/# covers itself", F_DOLLAR, "c", NULL, SUB, "$SYS/broker/#", ALLOW, "anonymous.rules[1]"},
    {"dollar: # covers #", F_DOLLAR, "c", NULL, SUB, "#", ALLOW, "anonymous.rules[2]"},
    {"dollar: a # receive deny spares $SYS", F_DOLLAR, "c", NULL, RECV, "$SYS/broker/uptime", ALLOW, "default.receive"},
    {"dollar: a # receive deny", F_DOLLAR, "c", NULL, RECV, "x", DENY, "anonymous.rules[3]"},
    {"dollar: +/status covers +/status", F_DOLLAR, "c", NULL, SUB, "+/status", ALLOW, "anonymous.rules[0]"},
    {"dollar: only the first level is special", F_DOLLAR, "c", NULL, PUB, "x/$y", ALLOW, "anonymous.rules[2]"},
    {"dollar: only the first level is special (subscribe)", F_DOLLAR, "c", NULL, SUB, "x/$y/#", ALLOW, "anonymous.rules[2]"},
    {"dollar: +/status does not cover $x/status", F_DOLLAR, "c", NULL, SUB, "$x/status", DENY, "default.subscribe"},

    /* ---- defaults ---- */
    {"defaults: publish is denied", F_EMPTY, "c", NULL, PUB, "a", DENY, "default.publish"},
    {"defaults: subscribe is denied", F_EMPTY, "c", NULL, SUB, "a", DENY, "default.subscribe"},
    {"defaults: receive is allowed", F_EMPTY, "c", NULL, RECV, "a", ALLOW, "default.receive"},
    {"defaults: retain is allowed", F_EMPTY, "c", NULL, RET, "a", ALLOW, "default.retain"},
    {"defaults: users get them too", F_EMPTY, "c", "u", PUB, "a", DENY, "default.publish"},
    {"defaults: a partial default sets publish", F_DEFAULTS, "c", NULL, PUB, "a", ALLOW, "default.publish"},
    {"defaults: a partial default sets retain", F_DEFAULTS, "c", NULL, RET, "a", DENY, "default.retain"},
    {"defaults: a partial default keeps subscribe", F_DEFAULTS, "c", NULL, SUB, "a", DENY, "default.subscribe"},
    {"defaults: a partial default keeps receive", F_DEFAULTS, "c", NULL, RECV, "a", ALLOW, "default.receive"},
    {"defaults: a user with an empty rule list", F_DEFAULTS, "c", "x", PUB, "a", ALLOW, "default.publish"},
};

const size_t acl_ncases = sizeof(acl_cases) / sizeof(acl_cases[0]);

#define RULE1(r) "{\"users\":{\"alice\":{\"rules\":[" r "]}}}"
#define AT_RULE0 "t.json: users.alice.rules[0]"

const struct acl_bad_case acl_bad_cases[] = {
    {"syntax: empty file", "", "t.json:1:0: '[' or '{' expected near end of file"},
    {"syntax: trailing comma", "{\"users\": {},\n}", "t.json:2:1: string or '}' expected near '}'"},
    {"syntax: unterminated string", "{\n  \"users\n}", "t.json:2:8: unexpected newline near '\"users'"},
    {"syntax: duplicate key", "{\"users\": {\"a\": {}, \"a\": {}}}", "t.json:1:23: duplicate object key near '\"a\"'"},
    {"syntax: garbage after the object", "{} x", "t.json:1:4: end of file expected near 'x'"},
    {"top level: an array", "[]", "t.json: the top level must be an object, not an array"},
    {"top level: a string", "\"x\"", "t.json:1:3: '[' or '{' expected near '\"x\"'"},
    {"top level: unknown key", "{\"user\": {}}", "t.json: user: unknown key (expected default, anonymous, groups, users, clients or comment)"},
    {"top level: comment must be a string", "{\"comment\": 1}", "t.json: comment: must be a string, not a number"},
    {"default: not an object", "{\"default\": \"deny\"}", "t.json: default: must be an object, not a string"},
    {"default: unknown action", "{\"default\": {\"pubish\": \"deny\"}}", "t.json: default.pubish: unknown action (publish, subscribe, receive or retain)"},
    {"default: neither allow nor deny", "{\"default\": {\"publish\": \"maybe\"}}", "t.json: default.publish: must be \"allow\" or \"deny\", not \"maybe\""},
    {"default: a boolean", "{\"default\": {\"receive\": true}}", "t.json: default.receive: must be \"allow\" or \"deny\", not a boolean"},
    {"section: users not an object", "{\"users\": []}", "t.json: users: must be an object, not an array"},
    {"section: groups not an object", "{\"groups\": 3}", "t.json: groups: must be an object, not a number"},
    {"entry: not an object", "{\"clients\": {\"gw\": []}}", "t.json: clients.gw: must be an object, not an array"},
    {"entry: unknown key", "{\"clients\": {\"gw\": {\"rule\": []}}}", "t.json: clients.gw.rule: unknown key (expected rules or comment)"},
    {"entry: groups only for users", "{\"groups\": {\"g\": {\"groups\": []}}}", "t.json: groups.g.groups: unknown key (expected rules or comment)"},
    {"entry: anonymous has no groups", "{\"anonymous\": {\"groups\": []}}", "t.json: anonymous.groups: unknown key (expected rules or comment)"},
    {"entry: user unknown key", "{\"users\": {\"bob\": {\"group\": []}}}", "t.json: users.bob.group: unknown key (expected rules, groups or comment)"},
    {"entry: rules is a string", "{\"users\":{\"alice\":{\"rules\":\"a\"}}}", "t.json: users.alice.rules: must be an array of rules, not a string"},
    {"entry: rules is an object", "{\"users\":{\"alice\":{\"rules\":{}}}}", "t.json: users.alice.rules: must be an array of rules, not an object"},
    {"rule: not an object", RULE1("\"a/#\""), "t.json: users.alice.rules[0]: must be a rule object, not a string"},
    {"rule: missing topic", RULE1("{\"allow\":[\"publish\"]}"), AT_RULE0 ": missing \"topic\""},
    {"rule: allow and deny", RULE1("{\"topic\":\"a\",\"allow\":[\"publish\"],\"deny\":[\"receive\"]}"), AT_RULE0 ": needs exactly one of \"allow\" and \"deny\""},
    {"rule: neither allow nor deny", RULE1("{\"topic\":\"a\"}"), AT_RULE0 ": needs exactly one of \"allow\" and \"deny\""},
    {"rule: unknown key", RULE1("{\"topic\":\"a\",\"alow\":[\"publish\"]}"), AT_RULE0 ".alow: unknown key (expected topic, allow, deny or comment)"},
    {"rule: topic not a string", RULE1("{\"topic\":[\"a\"],\"allow\":[\"publish\"]}"), AT_RULE0 ".topic: must be a string, not an array"},
    {"rule: empty topic", RULE1("{\"topic\":\"\",\"allow\":[\"publish\"]}"), AT_RULE0 ".topic: empty topic"},
    {"rule: # not last", RULE1("{\"topic\":\"a/#/b\",\"allow\":[\"publish\"]}"), AT_RULE0 ".topic: \"a/#/b\" is not a valid topic filter ('+' and '#' fill a whole level, '#' comes last)"},
    {"rule: + inside a level", RULE1("{\"topic\":\"a+\",\"allow\":[\"publish\"]}"), AT_RULE0 ".topic: \"a+\" is not a valid topic filter ('+' and '#' fill a whole level, '#' comes last)"},
    {"rule: placeholder next to +", RULE1("{\"topic\":\"a/%u+\",\"allow\":[\"publish\"]}"), AT_RULE0 ".topic: \"a/%u+\" is not a valid topic filter ('+' and '#' fill a whole level, '#' comes last)"},
    {"rule: unknown placeholder", RULE1("{\"topic\":\"a/%x\",\"allow\":[\"publish\"]}"), AT_RULE0 ".topic: unknown placeholder in \"a/%x\" at offset 2 (use %u, %c, or %% for a literal %)"},
    {"rule: % at the end", RULE1("{\"topic\":\"a/%\",\"allow\":[\"publish\"]}"), AT_RULE0 ".topic: unknown placeholder in \"a/%\" at offset 2 (use %u, %c, or %% for a literal %)"},
    {"rule: $share", RULE1("{\"topic\":\"$share/g/a\",\"allow\":[\"subscribe\"]}"), AT_RULE0 ".topic: \"$share/g/a\": rules name the filter inside a shared subscription, not $share/..."},
    {"rule: allow not an array", RULE1("{\"topic\":\"a\",\"allow\":\"publish\"}"), AT_RULE0 ".allow: must be an array of actions, not a string"},
    {"rule: empty allow", RULE1("{\"topic\":\"a\",\"allow\":[]}"), AT_RULE0 ".allow: empty list of actions"},
    {"rule: action not a string", RULE1("{\"topic\":\"a\",\"deny\":[1]}"), AT_RULE0 ".deny[0]: must be an action name, not a number"},
    {"rule: duplicate action", RULE1("{\"topic\":\"a\",\"deny\":[\"receive\",\"receive\"]}"), AT_RULE0 ".deny[1]: action \"receive\" listed twice"},
    {"rule: unknown action in the third rule", RULE1("{\"topic\":\"a\",\"allow\":[\"publish\"]},{\"topic\":\"b\",\"allow\":[\"publish\"]},{\"topic\":\"c\",\"allow\":[\"publsh\"]}"), "t.json: users.alice.rules[2].allow[0]: unknown action \"publsh\" (publish, subscribe, receive or retain)"},
    {"rule: will is not an action", RULE1("{\"topic\":\"a\",\"allow\":[\"will\"]}"), AT_RULE0 ".allow[0]: unknown action \"will\" (publish, subscribe, receive or retain)"},
    {"rule: comment must be a string", RULE1("{\"topic\":\"a\",\"allow\":[\"publish\"],\"comment\":{}}"), AT_RULE0 ".comment: must be a string, not an object"},
    {"groups: unknown group", "{\"users\":{\"alice\":{\"groups\":[\"sensors\"]}}}", "t.json: users.alice.groups[0]: no group \"sensors\" in \"groups\""},
    {"groups: listed twice", "{\"groups\":{\"g\":{}},\"users\":{\"alice\":{\"groups\":[\"g\",\"g\"]}}}", "t.json: users.alice.groups[1]: group \"g\" listed twice"},
    {"groups: not an array", "{\"groups\":{\"g\":{}},\"users\":{\"alice\":{\"groups\":\"g\"}}}", "t.json: users.alice.groups: must be an array of group names, not a string"},
    {"groups: name not a string", "{\"users\":{\"alice\":{\"groups\":[null]}}}", "t.json: users.alice.groups[0]: must be a group name, not null"},
    {"path: a name with a dot is quoted", "{\"users\":{\"a.b\":{\"rules\":[{\"topic\":\"\",\"allow\":[\"publish\"]}]}}}", "t.json: users[\"a.b\"].rules[0].topic: empty topic"},
    {"path: anonymous", "{\"anonymous\":{\"rules\":[{\"topic\":\"a\",\"deny\":[\"publish\",\"x\"]}]}}", "t.json: anonymous.rules[0].deny[1]: unknown action \"x\" (publish, subscribe, receive or retain)"},
    {"path: clients", "{\"clients\":{\"gw-1\":{\"rules\":[{\"topic\":\"a/b#\",\"allow\":[\"publish\"]}]}}}", "t.json: clients.gw-1.rules[0].topic: \"a/b#\" is not a valid topic filter ('+' and '#' fill a whole level, '#' comes last)"},
};

const size_t acl_nbad_cases = sizeof(acl_bad_cases) / sizeof(acl_bad_cases[0]);
