/*
 * bench/plugin_cpu.c — what the rewards plugin's work on one recharge costs, old
 * and new builds of the plugin side by side in one process: the order request
 * built, the supplier's answer parsed and its webhook verified (the three calls
 * bench/supplier_io.sh's recharges make), through the test kit's host table,
 * which is the core's (allocator, HMAC). Rounds alternate the two .so files, so
 * a shared box's moment falls on both; CPU is this thread's (CLOCK_THREAD_CPUTIME_ID).
 *
 *   plugin_cpu OLD.so NEW.so [ROUNDS] [ITERATIONS] [OPS]
 *
 * OPS: which calls, a sum of 1 (build), 2 (parse), 4 (verify); 7 by default.
 *
 * Prints per round µs per recharge of each, then the medians and new/old.
 * Run by bench/plugin_cpu.sh. Exit 0, or 1 when a call fails.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <perkhub/plugin.h>
#include <perkhub/testkit.h>

#define WH_SECRET "bench-whsec"
#define T_SIGNED  1795558511

static const char reply[] =
    "{\"order_id\":\"R00000002\",\"external_ref_id\":\"bench-000001\",\"utid\":\"U20001\","
    "\"quantity\":1,\"status\":\"completed\",\"reason\":null,\"amount_charged\":4900,"
    "\"created_at\":\"2026-11-24T22:15:11Z\"}";
static const char hook[] =
    "{\"event\":\"order.completed\",\"order\":{\"order_id\":\"R00000002\",\"external_ref_id\":"
    "\"bench-000001\",\"utid\":\"U20001\",\"quantity\":1,\"status\":\"completed\",\"reason\":null,"
    "\"amount_charged\":4900,\"created_at\":\"2026-11-24T22:15:11Z\"}}";

struct side {
    const char *path;
    phtk *tk;
    char sig[160];
};

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int open_side(struct side *s)
{
    void *h = dlopen(s->path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "plugin_cpu: %s: %s\n", s->path, dlerror());
        return -1;
    }
    perkhub_plugin_entry_fn entry = (perkhub_plugin_entry_fn)dlsym(h, "perkhub_plugin_entry");
    static const char *const kv[] = {"base_url", "http://127.0.0.1:9100", "api_key",
                                     "rw-key",   "webhook_secret",        WH_SECRET,
                                     NULL};
    char err[256] = "";
    s->tk = entry ? phtk_open(entry(), kv, err, sizeof err) : NULL;
    if (!s->tk) {
        fprintf(stderr, "plugin_cpu: %s: %s\n", s->path, err);
        return -1;
    }
    phtk_set_now(s->tk, (int64_t)T_SIGNED * 1000);
    char text[1024];
    int n = snprintf(text, sizeof text, "%d.%s", T_SIGNED, hook);
    unsigned char mac[32];
    HMAC(EVP_sha256(), WH_SECRET, sizeof WH_SECRET - 1, (unsigned char *)text, (size_t)n, mac,
         NULL);
    int k = snprintf(s->sig, sizeof s->sig, "X-Rewards-Signature: t=%d,v1=", T_SIGNED);
    for (int i = 0; i < 32; i++)
        k += snprintf(s->sig + k, sizeof s->sig - (size_t)k, "%02x", mac[i]);
    return 0;
}

/* One recharge's plugin calls; 0, or -1 when one fails. */
static unsigned ops = 7; /* 1 build, 2 parse, 4 verify */

static int one(struct side *s)
{
    struct perkhub_op op = {.kind = PERKHUB_OP_RECHARGE,
                            .order_ref = "bench-000001",
                            .product_id = "U20001",
                            .quantity = 1,
                            .account = "13800000001",
                            .unit_price = 4900,
                            .callback_url = "http://127.0.0.1:8080/v1/callbacks/rw1"};
    struct perkhub_request req;
    struct perkhub_result res;
    int rc, ok = 1;
    if (ops & 1) {
        rc = phtk_build(s->tk, &op, &req);
        phtk_request_clear(s->tk, &req);
        ok = rc == PERKHUB_OK;
    }
    if (ops & 2) {
        rc = phtk_parse(s->tk, &op, 201, reply, sizeof reply - 1, &res);
        ok = ok && rc == PERKHUB_OK && res.state == PERKHUB_STATE_SUCCEEDED;
        phtk_result_clear(s->tk, &res);
    }
    if (!(ops & 4))
        return ok ? 0 : -1;
    const char *headers[] = {"Content-Type: application/json", s->sig};
    struct perkhub_callback cb = {
        .headers = headers, .nheaders = 2, .body = hook, .body_len = sizeof hook - 1};
    rc = phtk_verify(s->tk, &cb, &res);
    ok = ok && rc == PERKHUB_OK && res.state == PERKHUB_STATE_SUCCEEDED;
    phtk_result_clear(s->tk, &res);
    return ok ? 0 : -1;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: plugin_cpu OLD.so NEW.so [ROUNDS] [ITERATIONS] [OPS]\n");
        return 1;
    }
    struct side sides[2] = {{.path = argv[1]}, {.path = argv[2]}};
    int rounds = argc > 3 ? atoi(argv[3]) : 9, iters = argc > 4 ? atoi(argv[4]) : 20000;
    ops = argc > 5 ? (unsigned)atoi(argv[5]) & 7 : 7;
    if (rounds < 1 || rounds > 99 || iters < 1 || open_side(&sides[0]) || open_side(&sides[1]))
        return 1;
    double us[2][99];
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 2; k++) {
            struct side *s = &sides[(r + k) % 2]; /* old-new, new-old, ... */
            for (int i = 0; i < iters / 10; i++)  /* warm */
                if (one(s))
                    return 1;
            double t0 = cpu_us();
            for (int i = 0; i < iters; i++)
                if (one(s)) {
                    fprintf(stderr, "plugin_cpu: %s: a call failed\n", s->path);
                    return 1;
                }
            us[(r + k) % 2][r] = (cpu_us() - t0) / iters;
        }
    for (int r = 0; r < rounds; r++)
        printf("round %d: old %.2f us, new %.2f us per recharge\n", r + 1, us[0][r], us[1][r]);
    qsort(us[0], (size_t)rounds, sizeof(double), cmp);
    qsort(us[1], (size_t)rounds, sizeof(double), cmp);
    double mo = us[0][rounds / 2], mn = us[1][rounds / 2];
    printf("median: old %.2f us, new %.2f us per recharge (calls %s%s%s); new/old %.3f\n", mo, mn,
           ops & 1 ? "build " : "", ops & 2 ? "parse " : "", ops & 4 ? "verify" : "", mn / mo);
    phtk_close(sides[0].tk);
    phtk_close(sides[1].tk);
    return 0;
}
