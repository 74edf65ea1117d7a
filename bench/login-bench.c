/*
 * login-bench: MQTT logins with a user name and password, as fast as the
 * broker answers them, for the auth-passwd benchmark (bench/auth-passwd.sh).
 *
 *   login-bench -p PORT -u USER -P PASSWORD [-c PARALLEL] [-n LOGINS | -d SECONDS] [-V 4|5]
 *
 * PARALLEL connections are in progress at once; each does TCP connect,
 * CONNECT (clean session, keep alive 60, the given credentials), waits for
 * the CONNACK, then sends DISCONNECT (when accepted) and closes, and the slot
 * starts the next login. One epoll loop, one thread, non-blocking sockets.
 * Stops after LOGINS answers, or after SECONDS (then in-progress logins are
 * abandoned and not counted). Prints one line:
 *
 *   RESULT mode=login logins=N accepted=N refused=N errors=N seconds=S rate=R
 *          p50_ms=.. p99_ms=.. max_ms=.. rc=CODE:COUNT,...
 *
 * rate is answered logins (accepted or refused) per second. 127.0.0.1 only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAR 10000
#define MAX_SAMPLES 2000000

/* One connection slot. */
struct slot {
    int fd;
    int sent;          /* CONNECT written */
    double start;      /* time of connect() */
    uint8_t buf[16];
    size_t got;
};

static struct {
    int port, par, version;
    long limit;
    double duration;
    const char *user, *pass;
} opt = {0, 16, 4, 0, 0, NULL, NULL};

static uint8_t connect_pkt[70000];
static size_t connect_len;
static double *lat;
static long nlat;
static long counts[256];
static long errors;

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t
put_str(uint8_t *p, const char *s)
{
    size_t n = strlen(s);

    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, s, n);
    return n + 2;
}

/* CONNECT with an empty client id (the broker assigns one) and the credentials. */
static void
build_connect(void)
{
    uint8_t body[69000];
    size_t b = 0, rl, i = 0;

    b += put_str(body + b, "MQTT");
    body[b++] = (uint8_t)opt.version;
    body[b++] = 0xC2; /* user name, password, clean session */
    body[b++] = 0;
    body[b++] = 60;
    if (opt.version == 5) {
        body[b++] = 0; /* no properties */
    }
    b += put_str(body + b, "");
    b += put_str(body + b, opt.user);
    b += put_str(body + b, opt.pass);
    connect_pkt[i++] = 0x10;
    rl = b;
    do {
        uint8_t d = rl % 128;
        rl /= 128;
        connect_pkt[i++] = d | (rl > 0 ? 0x80 : 0);
    } while (rl > 0);
    memcpy(connect_pkt + i, body, b);
    connect_len = i + b;
}

static void
slot_close(int ep, struct slot *s)
{
    if (s->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
    }
}

static int
slot_open(int ep, struct slot *s)
{
    struct sockaddr_in a;
    struct epoll_event ev;
    int one = 1;

    memset(s, 0, sizeof(*s));
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        return -1;
    }
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)opt.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->start = now();
    if (connect(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    ev.events = EPOLLOUT | EPOLLIN;
    ev.data.ptr = s;
    return epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void
usage(void)
{
    fprintf(stderr, "usage: login-bench -p PORT -u USER -P PASSWORD [-c PARALLEL] "
                    "[-n LOGINS | -d SECONDS] [-V 4|5]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    struct slot *slots;
    struct epoll_event evs[256];
    long answered = 0;
    double t0, end, t;
    int ep, ch, i;

    while ((ch = getopt(argc, argv, "p:u:P:c:n:d:V:")) != -1) {
        switch (ch) {
        case 'p': opt.port = atoi(optarg); break;
        case 'u': opt.user = optarg; break;
        case 'P': opt.pass = optarg; break;
        case 'c': opt.par = atoi(optarg); break;
        case 'n': opt.limit = atol(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'V': opt.version = atoi(optarg) == 5 ? 5 : 4; break;
        default: usage();
        }
    }
    if (opt.port <= 0 || opt.user == NULL || opt.pass == NULL || opt.par < 1 ||
        opt.par > MAX_PAR || (opt.limit <= 0 && opt.duration <= 0) ||
        strlen(opt.pass) > 65535 || strlen(opt.user) > 1000) {
        usage();
    }
    build_connect();
    lat = malloc(sizeof(*lat) * MAX_SAMPLES);
    slots = calloc((size_t)opt.par, sizeof(*slots));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (lat == NULL || slots == NULL || ep < 0) {
        perror("login-bench");
        return 1;
    }
    t0 = now();
    end = opt.duration > 0 ? t0 + opt.duration : 1e300;
    for (i = 0; i < opt.par; i++) {
        if (slot_open(ep, &slots[i]) != 0) {
            errors++;
        }
    }
    while ((opt.limit <= 0 || answered < opt.limit) && (t = now()) < end) {
        int n = epoll_wait(ep, evs, 256, 100);

        for (i = 0; i < n; i++) {
            struct slot *s = evs[i].data.ptr;
            int done = 0;

            if (s->fd < 0) {
                continue;
            }
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
                errors++;
                done = 1;
            } else if (!s->sent && (evs[i].events & EPOLLOUT)) {
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};

                if (write(s->fd, connect_pkt, connect_len) != (ssize_t)connect_len) {
                    errors++;
                    done = 1;
                } else {
                    s->sent = 1;
                    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                }
            } else if (evs[i].events & EPOLLIN) {
                ssize_t r = read(s->fd, s->buf + s->got, sizeof(s->buf) - s->got);

                if (r <= 0) {
                    errors++;
                    done = 1;
                } else {
                    s->got += (size_t)r;
                    if (s->got >= 4) {
                        /* CONNACK: 0x20, len, flags, code */
                        int code = s->buf[3];

                        if (s->buf[0] != 0x20) {
                            errors++;
                        } else {
                            counts[code]++;
                            answered++;
                            if (nlat < MAX_SAMPLES) {
                                lat[nlat++] = now() - s->start;
                            }
                            if (code == 0) {
                                static const uint8_t v4[] = {0xE0, 0x00};
                                static const uint8_t v5[] = {0xE0, 0x01, 0x00};
                                ssize_t w = opt.version == 5 ? write(s->fd, v5, 3)
                                                             : write(s->fd, v4, 2);
                                (void)w;
                            }
                        }
                        done = 1;
                    }
                }
            }
            if (done) {
                slot_close(ep, s);
                if (slot_open(ep, s) != 0) {
                    errors++;
                }
            }
        }
    }
    t = now() - t0;
    qsort(lat, (size_t)nlat, sizeof(*lat), cmp_double);
    printf("RESULT mode=login logins=%ld accepted=%ld refused=%ld errors=%ld seconds=%.2f "
           "rate=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f rc=",
           answered, counts[0], answered - counts[0], errors, t, (double)answered / t,
           nlat ? lat[nlat / 2] * 1e3 : 0, nlat ? lat[(long)(nlat * 0.99)] * 1e3 : 0,
           nlat ? lat[nlat - 1] * 1e3 : 0);
    {
        const char *sep = "";

        for (i = 0; i < 256; i++) {
            if (counts[i] > 0) {
                printf("%s%d:%ld", sep, i, counts[i]);
                sep = ",";
            }
        }
    }
    printf("\n");
    for (i = 0; i < opt.par; i++) {
        slot_close(ep, &slots[i]);
    }
    free(slots);
    free(lat);
    close(ep);
    return 0;
}
