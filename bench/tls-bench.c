/*
 * tls-bench: TLS load for an MQTT broker on 127.0.0.1 (issue 9 benchmarks).
 *
 *   handshake  T threads each loop: TCP connect, full TLS handshake (no
 *              session resumption), CONNECT, CONNACK, close. Prints
 *              connections per second.
 *   qos0       one subscriber and one publisher over TLS; the publisher writes
 *              batches of 64 pre-encoded QoS 0 PUBLISH packets as fast as TLS
 *              lets it for D seconds; prints the messages per second the
 *              subscriber received in that window (and how many were sent).
 *
 * Blocking sockets, one connection per thread: the client is simple and the
 * same for every broker measured. MQTT 3.1.1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static int port = 8883;
static const char *cafile;
static int threads = 2;
static double seconds = 5.0;
static size_t payload = 16;
static SSL_CTX *ctx;
static atomic_ulong handshakes;
static atomic_ulong failures;
static atomic_int stop;

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
tcp_connect(void)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* CONNECT, MQTT 3.1.1, clean session, keep alive 60. Returns its length. */
static size_t
connect_packet(uint8_t *b, const char *id)
{
    size_t idl = strlen(id);
    size_t n = 0;

    b[n++] = 0x10;
    b[n++] = (uint8_t)(10 + 2 + idl);
    memcpy(b + n, "\x00\x04MQTT\x04\x02\x00\x3c", 10);
    n += 10;
    b[n++] = (uint8_t)(idl >> 8);
    b[n++] = (uint8_t)idl;
    memcpy(b + n, id, idl);
    return n + idl;
}

static int
read_full(SSL *s, uint8_t *b, size_t len)
{
    size_t got = 0;

    while (got < len) {
        size_t n = 0;
        if (SSL_read_ex(s, b + got, len - got, &n) != 1) {
            return -1;
        }
        got += n;
    }
    return 0;
}

/* A connected, MQTT-connected TLS client; NULL on failure. */
static SSL *
mqtt_tls_connect(const char *id, int *fdp)
{
    uint8_t b[128];
    size_t n;
    int fd = tcp_connect();
    SSL *s;

    if (fd < 0) {
        return NULL;
    }
    s = SSL_new(ctx);
    SSL_set_fd(s, fd);
    n = connect_packet(b, id);
    if (SSL_connect(s) != 1 || SSL_write(s, b, (int)n) != (int)n || read_full(s, b, 4) != 0 ||
        b[0] != 0x20 || b[3] != 0) {
        ERR_clear_error();
        SSL_free(s);
        close(fd);
        return NULL;
    }
    *fdp = fd;
    return s;
}

static void *
handshake_thread(void *arg)
{
    char id[64];
    unsigned long i = 0;

    while (!atomic_load(&stop)) {
        int fd = -1;
        SSL *s;
        snprintf(id, sizeof(id), "hs-%lu-%lu", (unsigned long)(uintptr_t)arg, i++);
        s = mqtt_tls_connect(id, &fd);
        if (s == NULL) {
            atomic_fetch_add(&failures, 1);
            continue;
        }
        atomic_fetch_add(&handshakes, 1);
        SSL_shutdown(s);
        SSL_free(s);
        close(fd);
    }
    return NULL;
}

static atomic_ulong received;
static atomic_ulong sent;
static double t_end;

static void *
sub_thread(void *arg)
{
    SSL *s = arg;
    static uint8_t buf[256 * 1024];
    size_t have = 0;

    for (;;) {
        size_t n = 0;
        size_t off = 0;
        if (SSL_read_ex(s, buf + have, sizeof(buf) - have, &n) != 1) {
            break;
        }
        have += n;
        /* Count whole packets; keep a partial one. */
        while (have - off >= 2) {
            uint32_t rem = 0;
            unsigned mul = 1;
            size_t p = off + 1;
            int ok = 0;
            while (p < have) {
                rem += (uint32_t)(buf[p] & 0x7f) * mul;
                mul *= 128;
                if ((buf[p++] & 0x80) == 0) {
                    ok = 1;
                    break;
                }
            }
            if (!ok || have - p < rem) {
                break;
            }
            if ((buf[off] >> 4) == 3 && now() <= t_end) {
                atomic_fetch_add(&received, 1);
            }
            off = p + rem;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        if (atomic_load(&stop) == 2) {
            break;
        }
    }
    return NULL;
}

static int
run_qos0(void)
{
    int sfd = -1;
    int pfd = -1;
    SSL *sub = mqtt_tls_connect("tb-sub", &sfd);
    SSL *pub = mqtt_tls_connect("tb-pub", &pfd);
    uint8_t sb[64] = { 0x82, 0, 0, 1, 0, 7, 'b', 'e', 'n', 'c', 'h', '/', 't', 0 };
    uint8_t *batch;
    size_t one;
    size_t blen;
    size_t i;
    pthread_t th;
    double t0;

    if (sub == NULL || pub == NULL) {
        fprintf(stderr, "tls-bench: cannot connect over TLS to port %d\n", port);
        return 1;
    }
    sb[1] = 12;
    if (SSL_write(sub, sb, 14) != 14 || read_full(sub, sb, 5) != 0 || sb[0] != 0x90) {
        fprintf(stderr, "tls-bench: subscribe failed\n");
        return 1;
    }
    /* PUBLISH QoS 0 "bench/t": 2 + 7 + payload; remaining length up to 2 bytes. */
    one = 1 + (2 + 7 + payload < 128 ? 1 : 2) + 2 + 7 + payload;
    blen = 64 * one;
    batch = calloc(1, blen);
    for (i = 0; i < 64; i++) {
        uint8_t *b = batch + i * one;
        size_t rl = 2 + 7 + payload;
        size_t n = 0;
        b[n++] = 0x30;
        if (rl < 128) {
            b[n++] = (uint8_t)rl;
        } else {
            b[n++] = (uint8_t)(0x80 | (rl & 0x7f));
            b[n++] = (uint8_t)(rl >> 7);
        }
        memcpy(b + n, "\x00\x07" "bench/t", 9);
    }
    pthread_create(&th, NULL, sub_thread, sub);
    t0 = now();
    t_end = t0 + seconds;
    while (now() < t_end) {
        if (SSL_write(pub, batch, (int)blen) != (int)blen) {
            fprintf(stderr, "tls-bench: publisher write failed\n");
            break;
        }
        atomic_fetch_add(&sent, 64);
    }
    /* Let the subscriber count what was delivered in the window, then stop it. */
    usleep(500 * 1000);
    atomic_store(&stop, 2);
    shutdown(sfd, SHUT_RDWR);
    pthread_join(th, NULL);
    printf("qos0 payload=%zu seconds=%.1f sent=%lu received=%lu received_per_s=%.0f\n", payload,
           seconds, (unsigned long)atomic_load(&sent), (unsigned long)atomic_load(&received),
           (double)atomic_load(&received) / seconds);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *mode = "handshake";
    int opt;

    while ((opt = getopt(argc, argv, "p:c:m:t:d:s:")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'c':
            cafile = optarg;
            break;
        case 'm':
            mode = optarg;
            break;
        case 't':
            threads = atoi(optarg);
            break;
        case 'd':
            seconds = atof(optarg);
            break;
        case 's':
            payload = (size_t)atol(optarg);
            break;
        default:
            fprintf(stderr, "usage: tls-bench -p PORT -c CAFILE [-m handshake|qos0] [-t THREADS] "
                            "[-d SECONDS] [-s PAYLOAD]\n");
            return 2;
        }
    }
    if (payload > 16000) {
        payload = 16000;
    }
    signal(SIGPIPE, SIG_IGN); /* a connection the broker closes must not kill the tool */
    ctx = SSL_CTX_new(TLS_client_method());
    if (cafile != NULL) {
        SSL_CTX_load_verify_locations(ctx, cafile, NULL);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    /* Full handshakes every time: no session cache. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (strcmp(mode, "handshake") == 0) {
        pthread_t th[64];
        double t0 = now();
        int i;
        if (threads < 1 || threads > 64) {
            threads = 2;
        }
        for (i = 0; i < threads; i++) {
            pthread_create(&th[i], NULL, handshake_thread, (void *)(uintptr_t)i);
        }
        usleep((useconds_t)(seconds * 1e6));
        atomic_store(&stop, 1);
        for (i = 0; i < threads; i++) {
            pthread_join(th[i], NULL);
        }
        printf("handshake threads=%d seconds=%.1f connections=%lu failures=%lu per_s=%.0f\n",
               threads, now() - t0, (unsigned long)atomic_load(&handshakes),
               (unsigned long)atomic_load(&failures),
               (double)atomic_load(&handshakes) / (now() - t0));
        return 0;
    }
    if (strcmp(mode, "qos0") == 0) {
        return run_qos0();
    }
    fprintf(stderr, "tls-bench: unknown mode '%s'\n", mode);
    return 2;
}
