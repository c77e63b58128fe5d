/*
 * bench/sio_client_proto.c — what one supplier exchange costs the client side:
 * libcurl 7.88 driven as the I/O engine drives it (multi handle, socket action
 * on epoll, easy handles reset and reused, the engine's options and callbacks)
 * against a bare HTTP/1.1 client on the same epoll loop (one send per request,
 * the reply read until its Content-Length), both keeping their connections.
 * Information for issue 18 point 4 ("measure the alternative"), not a
 * verdict: bench/README.md, "The recharge path's CPU".
 *
 *   sio_client_proto curl|raw PORT CONNS SECONDS
 *
 * Sends POST /rewards/v1/orders (the rewards plugin's order, a fresh
 * external_ref_id each time) to supsim on 127.0.0.1:PORT over CONNS
 * connections, each with one request outstanding, for SECONDS; prints one JSON
 * line: exchanges, the process's CPU (user + system) per exchange in us.
 * Every reply must be HTTP 201 with a body, or the run fails.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const account = "13800138000";
static long seq;
static long done_n;
static int port;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int body_of(char *buf, size_t cap)
{
    return snprintf(buf, cap,
                    "{\"external_ref_id\":\"proto-%d-%ld\",\"utid\":\"U20001\",\"quantity\":1,"
                    "\"max_unit_cost\":4900,\"recipient\":{\"account\":\"%s\"}}",
                    (int)getpid(), ++seq, account);
}

static void fail(const char *what)
{
    fprintf(stderr, "sio_client_proto: %s\n", what);
    exit(1);
}

/* ---- the bare client ------------------------------------------------------------ */

typedef struct raw_conn {
    int fd;
    char in[8192];
    size_t len;
} raw_conn;

static void raw_send(raw_conn *c)
{
    char body[512], req[1024];
    int bl = body_of(body, sizeof body);
    int n = snprintf(req, sizeof req,
                     "POST /rewards/v1/orders HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Accept: */*\r\nAuthorization: Bearer rw-key\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     port, bl, body);
    if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        fail("send");
    c->len = 0;
}

/* 1 when c holds a whole reply (checked and consumed), 0 when more is needed. */
static int raw_reply(raw_conn *c)
{
    c->in[c->len] = '\0';
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end)
        return 0;
    size_t hl = (size_t)(end - c->in) + 4, cl = 0;
    int have = 0;
    for (char *l = strstr(c->in, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
        if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
            cl = strtoul(l + 17, NULL, 10), have = 1;
    if (!have)
        fail("reply without Content-Length");
    if (c->len < hl + cl)
        return 0;
    if (strncmp(c->in, "HTTP/1.1 201", 12) != 0 || cl == 0)
        fail("reply not 201 with a body");
    return 1;
}

static void run_raw(int nconn, double secs)
{
    int ep = epoll_create1(0);
    raw_conn *cs = calloc((size_t)nconn, sizeof *cs);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(0x7f000001)};
    for (int i = 0; i < nconn; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
            fail("connect");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    double t_end = now_s() + secs, c0 = cpu_s();
    for (int i = 0; i < nconn; i++)
        raw_send(&cs[i]);
    struct epoll_event evs[256];
    while (now_s() < t_end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            raw_conn *c = evs[i].data.ptr;
            ssize_t r = recv(c->fd, c->in + c->len, sizeof c->in - 1 - c->len, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                fail("connection closed");
            }
            c->len += (size_t)r;
            if (raw_reply(c)) {
                done_n++;
                raw_send(c);
            }
        }
    }
    double cpu = cpu_s() - c0;
    printf("{\"client\":\"raw\",\"conns\":%d,\"exchanges\":%ld,\"cpu_us_per_exchange\":%.2f}\n",
           nconn, done_n, done_n ? cpu * 1e6 / (double)done_n : 0.0);
}

/* ---- libcurl as the engine drives it --------------------------------------------- */

typedef struct cx {
    CURL *e;
    char body[512];
    char *reply;
    size_t rlen, rcap;
    char *hbuf;
    size_t hlen, hcap;
    struct curl_slist hdr[4];
} cx;

static int ep_c;
static long curl_due_ms = -1;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    cx *x = ud;
    size_t len = size * n;
    if (x->rlen + len + 1 > x->rcap) {
        x->rcap = (x->rlen + len + 1) * 2;
        x->reply = realloc(x->reply, x->rcap);
    }
    memcpy(x->reply + x->rlen, p, len);
    x->rlen += len;
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    cx *x = ud;
    size_t len = size * n;
    if (x->hlen + len + 1 > x->hcap) {
        x->hcap = (x->hlen + len + 1) * 2;
        x->hbuf = realloc(x->hbuf, x->hcap);
    }
    memcpy(x->hbuf + x->hlen, p, len);
    x->hlen += len;
    x->hbuf[x->hlen++] = '\0';
    return len;
}

static int on_prereq(void *ud, char *ip, char *lip, int p, int lp)
{
    (void)ud, (void)ip, (void)lip, (void)p, (void)lp;
    return CURL_PREREQFUNC_OK;
}

static void cx_start(CURLM *m, cx *x, char *url)
{
    if (!x->e)
        x->e = curl_easy_init();
    int bl = body_of(x->body, sizeof x->body);
    x->rlen = x->hlen = 0;
    CURL *e = x->e;
    x->hdr[0].data = "Authorization: Bearer rw-key";
    x->hdr[1].data = "Content-Type: application/json";
    x->hdr[2].data = "Expect:";
    x->hdr[0].next = &x->hdr[1];
    x->hdr[1].next = &x->hdr[2];
    x->hdr[2].next = NULL;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 1024L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)x);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, (void *)x);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bl);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdr);
    if (curl_multi_add_handle(m, e) != CURLM_OK)
        fail("curl_multi_add_handle");
}

static int c_on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *sockp)
{
    (void)e, (void)ud;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(ep_c, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) |
                                       (what & CURL_POLL_OUT ? EPOLLOUT : 0u),
                             .data.fd = s};
    if (epoll_ctl(ep_c, sockp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) != 0)
        epoll_ctl(ep_c, errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    if (!sockp)
        curl_multi_assign(ud, s, (void *)1);
    return 0;
}

static long mono_ms(void)
{
    return (long)(now_s() * 1000);
}

static int c_on_timer(CURLM *m, long ms, void *ud)
{
    (void)m, (void)ud;
    curl_due_ms = ms < 0 ? -1 : mono_ms() + ms;
    return 0;
}

static void c_read(CURLM *m, char *url)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        cx *x;
        long status = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        if (msg->data.result != CURLE_OK || status != 201 || x->rlen == 0)
            fail("curl exchange not 201 with a body");
        done_n++;
        curl_multi_remove_handle(m, x->e);
        curl_easy_reset(x->e);
        cx_start(m, x, url);
    }
}

static void run_curl(int nconn, double secs)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/rewards/v1/orders", port);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    ep_c = epoll_create1(0);
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, c_on_socket);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, (void *)m);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, c_on_timer);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)nconn * 2);
    cx *xs = calloc((size_t)nconn, sizeof *xs);
    int running = 0;
    /* connections made before the measured window, as the raw client's */
    for (int i = 0; i < nconn; i++)
        cx_start(m, &xs[i], url);
    double warm_end = now_s() + 1.0, t_end = warm_end + secs, c0 = 0;
    long d0 = 0;
    struct epoll_event evs[256];
    for (;;) {
        double t = now_s();
        if (c0 == 0 && t >= warm_end)
            c0 = cpu_s(), d0 = done_n;
        if (t >= t_end)
            break;
        long wait = curl_due_ms < 0 ? 100 : curl_due_ms - mono_ms();
        int n = epoll_wait(ep_c, evs, 256, wait < 0 ? 0 : (int)wait);
        for (int i = 0; i < n; i++) {
            int bits = (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP) ? CURL_CSELECT_IN : 0) |
                       (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP) ? CURL_CSELECT_OUT : 0);
            curl_multi_socket_action(m, evs[i].data.fd, bits, &running);
            c_read(m, url);
        }
        if (curl_due_ms >= 0 && mono_ms() >= curl_due_ms) {
            curl_due_ms = -1;
            curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
            c_read(m, url);
        }
    }
    double cpu = cpu_s() - c0;
    long n = done_n - d0;
    printf("{\"client\":\"curl\",\"conns\":%d,\"exchanges\":%ld,\"cpu_us_per_exchange\":%.2f}\n",
           nconn, n, n ? cpu * 1e6 / (double)n : 0.0);
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[1], "curl") && strcmp(argv[1], "raw")))
        fail("usage: sio_client_proto curl|raw PORT CONNS SECONDS");
    port = atoi(argv[2]);
    int conns = atoi(argv[3]);
    double secs = atof(argv[4]);
    if (port <= 0 || conns <= 0 || conns > 4096 || secs <= 0)
        fail("bad arguments");
    if (!strcmp(argv[1], "raw"))
        run_raw(conns, secs);
    else
        run_curl(conns, secs);
    return 0;
}
