/*
 * supsim.c — the supplier simulator's main: options, start, wait for SIGTERM or
 * SIGINT, stop cleanly. See README.md for what it speaks and how to steer it.
 */
#include "supsim.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char usage[] = "usage: supsim [--port N] [--port-file PATH] [--seed N]\n"
                            "              [--gateway-app-key K] [--gateway-app-secret S]\n"
                            "              [--rewards-api-key K] [--rewards-webhook-secret S]\n"
                            "              [--complete-ms N] [--threads N] [--max-connections N]\n"
                            "              [--balance YUAN]\n";

/* Parses a non-negative integer option; -1 when malformed. */
static long long parse_num(const char *v, const char *name)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || *end || !*v || n < 0) {
        fprintf(stderr, "supsim: --%s: not a non-negative integer: %s\n", name, v);
        return -1;
    }
    return n;
}

static int parse_args(int argc, char **argv, sim_config *c)
{
    static const struct option opts[] = {
        {"port", required_argument, 0, 'p'},
        {"port-file", required_argument, 0, 'f'},
        {"seed", required_argument, 0, 's'},
        {"gateway-app-key", required_argument, 0, 'k'},
        {"gateway-app-secret", required_argument, 0, 'K'},
        {"rewards-api-key", required_argument, 0, 'r'},
        {"rewards-webhook-secret", required_argument, 0, 'R'},
        {"complete-ms", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 't'},
        {"max-connections", required_argument, 0, 'm'},
        {"balance", required_argument, 0, 'b'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int ch, idx;
    long long n = 0;
    while ((ch = getopt_long(argc, argv, "", opts, &idx)) != -1) {
        const char *name = ch == '?' || ch == 'h' ? "" : opts[idx].name;
        if (strchr("psctmb", ch) && (n = parse_num(optarg, name)) < 0)
            return -1;
        switch (ch) {
        case 'p':
            if (n > 65535)
                return fprintf(stderr, "supsim: --port: out of range\n"), -1;
            c->port = (unsigned)n;
            break;
        case 'f':
            c->port_file = optarg;
            break;
        case 's':
            c->seed = (uint64_t)n;
            break;
        case 'k':
            c->gw_key = optarg;
            break;
        case 'K':
            c->gw_secret = optarg;
            break;
        case 'r':
            c->rw_key = optarg;
            break;
        case 'R':
            c->rw_whsec = optarg;
            break;
        case 'c':
            c->complete_ms = (long)n;
            break;
        case 't':
            c->threads = n > 64 ? 64 : (int)n;
            break;
        case 'm':
            if (n < 1 || n > 1000000)
                return fprintf(stderr, "supsim: --max-connections: 1..1000000\n"), -1;
            c->max_connections = (unsigned)n;
            break;
        case 'b': /* whole yuan: a load run of 100,000 recharges needs more than the default */
            if (n < 1 || n > 1000000000000LL)
                return fprintf(stderr, "supsim: --balance: 1..1000000000000 (yuan)\n"), -1;
            c->balance_fen = n * 100;
            break;
        default:
            fputs(usage, ch == 'h' ? stdout : stderr);
            return ch == 'h' ? 1 : -1;
        }
    }
    if (optind < argc)
        return fprintf(stderr, "supsim: unexpected argument: %s\n%s", argv[optind], usage), -1;
    return 0;
}

/* Writes the port atomically, so a reader never sees a partial number. */
static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int bad = fprintf(f, "%u\n", port) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Every request held open is a descriptor: take the soft RLIMIT_NOFILE up to the
 * hard one (no privilege needed) and say so when it is still below the
 * connection limit, since accept() then fails with EMFILE before the limit. */
static void raise_nofile(unsigned max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl)) {
            rl.rlim_cur = was;
            fprintf(stderr, "supsim: cannot raise the descriptor limit: %s\n", strerror(errno));
        }
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max_connections)
        fprintf(stderr, "supsim: warning: %llu descriptors for --max-connections %u\n",
                (unsigned long long)rl.rlim_cur, max_connections);
}

int main(int argc, char **argv)
{
    sim_config cfg = {
        .seed = 1,
        .gw_key = "gw-app",
        .gw_secret = "gw-secret",
        .rw_key = "rw-key",
        .rw_whsec = "rw-whsec",
        .threads = 2,
        .max_connections = 20000,
    };
    int rc = parse_args(argc, argv, &cfg);
    if (rc)
        return rc < 0 ? 2 : 0;

    /* every thread created from here on inherits the mask; main takes the signals */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    sim s;
    unsigned port = 0;
    sim_http *h = NULL;
    int status = 1;
    if (sim_init(&s, &cfg)) {
        fprintf(stderr, "supsim: out of memory\n");
        goto out_curl;
    }
    if (sim_notifier_start(&s)) {
        fprintf(stderr, "supsim: cannot start the notify threads\n");
        goto out_sim;
    }
    raise_nofile(cfg.max_connections);
    if (!(h = sim_http_start(&s, cfg.port, &port))) {
        fprintf(stderr, "supsim: cannot listen on 127.0.0.1:%u\n", cfg.port);
        goto out_notifier;
    }
    if (cfg.port_file && write_port_file(cfg.port_file, port)) {
        fprintf(stderr, "supsim: cannot write the port file %s: %s\n", cfg.port_file,
                strerror(errno));
        goto out_http;
    }
    fprintf(stderr, "supsim: listening on 127.0.0.1:%u (seed %llu)\n", port,
            (unsigned long long)cfg.seed);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "supsim: signal %d, stopping\n", sig);
    status = 0;
out_http:
    atomic_store(&s.stopping, 1);
    sim_http_stop(h);
out_notifier:
    atomic_store(&s.stopping, 1);
    sim_notifier_stop(&s);
out_sim:
    sim_free(&s);
out_curl:
    curl_global_cleanup();
    return status;
}
