/*
 * The state of tests/plugins/harness_probe.c, a plugin that uses every ABI
 * 1.0 addition, so the harness suites (tests/unit/test_harness_*.c) can
 * drive it through the fake broker and look at what it saw (white box,
 * through midge_test_state()). Not a plugin to copy: it does many unrelated
 * things to exercise the harness.
 */
#ifndef HARNESS_PROBE_H
#define HARNESS_PROBE_H

#include <pthread.h>
#include <stdint.h>

#include <midge/plugin.h>

/* Per-client data (api->client_data_set), freed by probe_client_free. */
struct probe_client {
    struct probe *pr;
    int connects;
};

/* Owned by the instance: allocated in init, freed in cleanup. */
struct probe {
    midge_plugin *self;
    const struct midge_api *api;

    /* Options read in init. */
    char password[64];      /* plugin_opt_password: what the blocking check accepts */
    char filter[128];       /* plugin_opt_subscribe: subscribed to in init */
    char tick_filter[128];  /* set by the test: tick subscribes to it */

    /* Metrics made in init. */
    midge_metric *auth_total;   /* counter */
    midge_metric *clients;      /* gauge */
    midge_metric *check_secs;   /* histogram */

    /* auth: client extras copied during the hook. */
    char listener[64];
    char peer_ip[64];
    int peer_port;
    char props[256];        /* "k=v;k=v;" of the CONNECT user properties */
    int tls_rc;
    char tls_subject[128];
    int tls_verified;
    int blocking_rc;        /* what run_blocking answered in the last auth */
    pthread_t hook_thread;
    pthread_t work_thread;  /* where the last blocking check ran */
    pthread_t done_thread;  /* where its done ran */
    int client_frees;       /* probe_client_free calls */
    int connects_seen;      /* struct probe_client.connects in client_connected */

    /* tick: clients by id. */
    char find_id[64];       /* set by the test: tick looks it up */
    char kick_id[64];       /* set by the test: tick disconnects it */
    int found;              /* callbacks: -1 none yet, 0 NULL info, 1 info */
    char found_user[64];
    char found_address[64];
    int found_connected;
    uint32_t found_queued;

    /* Timers and fd watchers. */
    midge_timer *timer;     /* every 10 s from init */
    int timer_fired;
    midge_timer *once;      /* one-shot started by the test through probe_once() */
    int once_fired;
    int pipe_r;
    int pipe_w;
    midge_watch *watch;
    int watch_reads;
    char watch_buf[64];

    /* Messages. */
    midge_message_edit *last_edit;
    const midge_message *kept;   /* a reference taken in message_in on keep/... */
    int bad_edit_rc;             /* edit_topic("a/+") in message_in */
    char first_prop[64];         /* "k=v" of the first user property seen in message_in */
    int out_count;
    char out_topic[128];
    int sub_msgs;
    char sub_topic[128];
    midge_subscription *sub;
    midge_subscription *tick_sub;

    /* Events. */
    char subscribed[128];
    int subscribed_qos;
    char unsubscribed[128];
    int sessions_created;
    int sessions_ended;
    char will_topic[128];
    char will_payload[64];

    /* Enhanced auth. */
    midge_ticket *ea_ticket;     /* the PENDING step of method "ASYNC" */
    int ea_data_rc;              /* what auth_data_set answered in the last step */
    uint32_t ea_step;
    int ea_reauth;
    char ea_password[64];

    /* Persistence. */
    int persist_events;
    int persist_last_type;
    uint64_t persist_last_seq;
    const midge_message *persist_msg; /* referenced from the last event that had one */
    int restore_fail;            /* set by the test: restore refuses to start */
    int restore_rc[9];           /* what each restore_* call answered, in order */
    uint64_t restored_msg_id;

    /* Internal session "bridge-1" (probe_open_session). */
    midge_session *session;
    int session_present;
    int session_opened;          /* opened callbacks */
    int session_sub_rc;
    int session_pub_rc;
    int deliveries;
    uint32_t last_id;
    int last_dup;
    int last_qos;
    char last_topic[128];
    int auto_ack;                /* set by the test: ack every delivery at once */
};

/* Starts the one-shot timer `once` (as a hook would). */
void probe_once(struct probe *pr, double after);

/* Asks for the internal session "bridge-1" (window 2, expiry 60). */
int probe_open_session(struct probe *pr);

/* Declares everything persisted so far durable. */
void probe_flush(struct probe *pr);

#endif
