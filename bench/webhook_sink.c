/*
 * webhook_sink.c — the receiving end of bench/webhooks.sh: answers every POST
 * 204 at once and writes one line per delivery, "<receive ms> <webhook-id>
 * <body>", to stdout, a line at a time. It does not verify
 * signatures (tests/e2e/test_webhook_receivers.py runs the docs' verifying
 * receivers): the bench measures perkhubd, not the receiver.
 *
 *   webhook_sink PORT_FILE > deliveries.txt      (binds an ephemeral loopback port)
 *
 * Build: cc -O2 -o webhook_sink bench/webhook_sink.c -lmicrohttpd -lpthread
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct body {
    char *p;
    size_t n;
} body;

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **state)
{
    (void)cls, (void)url, (void)version, (void)method;
    body *b = *state;
    if (!b) {
        *state = calloc(1, sizeof(body));
        return *state ? MHD_YES : MHD_NO;
    }
    if (*size) {
        char *p = realloc(b->p, b->n + *size + 1);
        if (!p)
            return MHD_NO;
        b->p = p;
        memcpy(b->p + b->n, data, *size);
        b->p[b->n += *size] = '\0';
        *size = 0;
        return MHD_YES;
    }
    const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
    long long t = now_ms();
    pthread_mutex_lock(&out_mu);
    printf("%lld %s %s\n", t, id ? id : "-", b->p ? b->p : "{}");
    pthread_mutex_unlock(&out_mu);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc = MHD_queue_response(c, 204, r);
    MHD_destroy_response(r);
    return rc;
}

static void done(void *cls, struct MHD_Connection *c, void **state,
                 enum MHD_RequestTerminationCode t)
{
    (void)cls, (void)c, (void)t;
    body *b = *state;
    if (b) {
        free(b->p);
        free(b);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: webhook_sink PORT_FILE\n");
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* MHD's threads inherit the mask */
    /* a line each: the bench reads each round's lines as soon as the round drained */
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, answer,
                         NULL, MHD_OPTION_NOTIFY_COMPLETED, done, NULL, MHD_OPTION_THREAD_POOL_SIZE,
                         2, MHD_OPTION_CONNECTION_LIMIT, 2000, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&sa, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "webhook_sink: cannot listen\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    FILE *pf = fopen(argv[1], "w");
    if (!pf || !info || fprintf(pf, "%u\n", info->port) < 0 || fclose(pf)) {
        fprintf(stderr, "webhook_sink: cannot write %s\n", argv[1]);
        return 1;
    }
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    fflush(stdout);
    return 0;
}
