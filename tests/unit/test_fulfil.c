/*
 * test_fulfil.c — fulfil's state machine without a network: the real store (a
 * fresh LMDB environment per test, store_fixture.h), real suppliers (two
 * sandbox instances, sb1 before sb2), and a fake I/O engine given through
 * ph_fulfil_opts.io. The test thread plays the I/O thread: it takes each
 * exchange fulfil submits, checks what it is (an order, never sent twice; a
 * query; which supplier) and answers it by calling the job's done callback,
 * as the engine would.
 *
 * The fulfil_callbacks suite puts two cb_echo fixture suppliers in the sandbox
 * instances' place and hands verified callbacks to ph_fulfil_callback, to see
 * which exchanges a callback makes fulfil submit, and when.
 *
 * Waits are on conditions (a semaphore posted by ph_fulfil_wait, a condition
 * variable for submitted jobs), with generous deadlines.
 */
#include "store_fixture.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "supply/fulfil.h"
#include "supply/plugin_ops.h"
#include "supply/suppliers.h"

#define ACCOUNT  "13800000001"
#define DEADLINE 20000 /* ms: generous, the machine may be loaded */
#define MAX_JOBS 16

/* ---- the fake I/O engine ----------------------------------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ph_sio_job *jobs[MAX_JOBS];
    size_t n;
    unsigned submitted;
    ph_sio_job *out[MAX_JOBS]; /* submitted and not answered yet */
    size_t nout;
    unsigned overlaps; /* submissions of a job still out: not queued again */
} io = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, {0}, 0, 0};

static int fake_submit(void *ctx, ph_sio_job *job)
{
    (void)ctx;
    pthread_mutex_lock(&io.mu);
    /* an attempt has one job: submitting it again while it is out means a
     * second exchange for the attempt while the first is on the wire */
    for (size_t i = 0; i < io.nout; i++)
        if (io.out[i] == job) {
            io.overlaps++;
            pthread_cond_signal(&io.cv);
            pthread_mutex_unlock(&io.mu);
            return PH_OK;
        }
    int rc = io.n < MAX_JOBS && io.nout < MAX_JOBS ? PH_OK : PH_ENOMEM;
    if (rc == PH_OK) {
        io.out[io.nout++] = job;
        ph_op_result_init(&job->res);
        io.jobs[io.n++] = job;
        io.submitted++;
        pthread_cond_signal(&io.cv);
    }
    pthread_mutex_unlock(&io.mu);
    return rc;
}

static int fake_allow(void *ctx, const char *supplier_id)
{
    (void)ctx, (void)supplier_id;
    return 1;
}

/* The next exchange fulfil submitted (FIFO), or NULL when none came within
 * ms. */
static ph_sio_job *take_job_within(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&io.mu);
    int rc = 0;
    while (!io.n && !io.overlaps && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&io.cv, &io.mu, &ts);
    ph_sio_job *job = NULL;
    if (io.n) {
        job = io.jobs[0];
        memmove(io.jobs, io.jobs + 1, --io.n * sizeof io.jobs[0]);
    }
    pthread_mutex_unlock(&io.mu);
    return job;
}

/* Did fulfil submit an attempt's job again while it was out? */
static void expect_no_overlap(void)
{
    pthread_mutex_lock(&io.mu);
    unsigned overlaps = io.overlaps;
    pthread_mutex_unlock(&io.mu);
    cr_assert_eq(overlaps, 0,
                 "fulfil started a second exchange for an attempt whose exchange was "
                 "on the wire");
}

/* The next exchange fulfil submitted (FIFO). */
static ph_sio_job *take_job(void)
{
    ph_sio_job *job = take_job_within(DEADLINE);
    expect_no_overlap();
    cr_assert_not_null(job, "fulfil submitted no exchange within %d ms", DEADLINE);
    return job;
}

static unsigned jobs_submitted(void)
{
    pthread_mutex_lock(&io.mu);
    unsigned n = io.submitted;
    pthread_mutex_unlock(&io.mu);
    return n;
}

static size_t jobs_waiting(void)
{
    pthread_mutex_lock(&io.mu);
    size_t n = io.n;
    pthread_mutex_unlock(&io.mu);
    return n;
}

/* Ends an exchange as the engine would: outcome, and for a parsed reply the
 * order state the supplier reported (strings from the supplier's allocator,
 * since ph_sio_job_clear frees them with it). */
static void answer(ph_sio_job *job, int outcome, int parsed, int state, const char *soid)
{
    job->outcome = outcome;
    job->sent = outcome != PERKHUB_DEFINITE_FAILURE || parsed;
    job->parsed = parsed;
    job->http_status = parsed ? 200 : 0;
    snprintf(job->detail, sizeof job->detail, "%s", parsed ? "http 200" : "timeout after sending");
    if (parsed) {
        job->res.state = state;
        if (soid) {
            const struct perkhub_host *h = ph_supplier_host(job->sup);
            job->res.supplier_order_id = h->mem_alloc(h, strlen(soid) + 1);
            cr_assert_not_null(job->res.supplier_order_id);
            memcpy(job->res.supplier_order_id, soid, strlen(soid) + 1);
        }
    }
    pthread_mutex_lock(&io.mu);
    for (size_t i = 0; i < io.nout; i++)
        if (io.out[i] == job)
            io.out[i] = io.out[--io.nout];
    pthread_mutex_unlock(&io.mu);
    job->done(job);
}

static const char *job_supplier(const ph_sio_job *job)
{
    return ph_supplier_id(job->sup);
}

/* ---- the world: config, keys, store, suppliers, fulfil ------------------------- */

static ph_config *g_cfg;
static ph_keyring *g_keys;
static ph_suppliers *g_sups;
static ph_fulfil *g_f;
static ph_logger g_log;

static const ph_config *cfg_acquire(void *ctx, void **ref)
{
    (void)ctx;
    *ref = NULL;
    return g_cfg;
}

static void cfg_release(void *ref)
{
    (void)ref;
}

/* The world's suppliers: two sandbox instances, sb1 before sb2; or, with
 * callbacks, two instances of the cb_echo fixture plugin, cb1 before cb2,
 * which take callbacks the test can make up and are first queried ten minutes
 * after an answer (query_max_delay_ms lets that stand), so a query sooner than
 * that can only be a callback's. */
static void load_config(int callbacks)
{
    const char *plugins = getenv(callbacks ? "PH_FIXTURE_PLUGIN_DIR" : "PH_PLUGIN_DIR");
    cr_assert_not_null(plugins, "PH_PLUGIN_DIR or PH_FIXTURE_PLUGIN_DIR is not set (run through "
                                "ctest)");
    const char *plugin = callbacks ? "cb_echo" : "sandbox", *s1 = callbacks ? "cb1" : "sb1",
               *s2 = callbacks ? "cb2" : "sb2";
    const char *extra = callbacks ? "    query_max_delay_ms: 3600000\n" : "";
    char yaml[2048];
    int n = snprintf(yaml, sizeof yaml,
                     "data_dir: %s\n"
                     "master_key_file: %s/master.key\n"
                     "master_key_create: true\n"
                     "plugin_dir: %s\n"
                     "suppliers:\n"
                     "  - id: %s\n    plugin: %s\n    priority: 20\n%s"
                     "  - id: %s\n    plugin: %s\n    priority: 10\n%s"
                     "products:\n"
                     "  - sku: " TOPUP "\n"
                     "    name: Phone top-up 30\n"
                     "    brand: carrier\n"
                     "    category: mobile\n"
                     "    delivery: recharge\n"
                     "    face_value: \"30.00\"\n"
                     "    offers:\n"
                     "      - supplier: %s\n        supplier_sku: topup.30\n"
                     "        cost: \"29.40\"\n"
                     "      - supplier: %s\n        supplier_sku: topup.30\n"
                     "        cost: \"29.40\"\n",
                     g_dir, g_base, plugins, s1, plugin, extra, s2, plugin, extra, s1, s2);
    cr_assert_lt(n, (int)sizeof yaml);
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(yaml, (size_t)n, "test_fulfil.yaml", &g_cfg, &err), PH_OK,
                 "%s", err.msg);
}

/* The replication gate (ph_fulfil_opts.may_send): open unless a test closes
 * it; how many times fulfil asked. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    unsigned asked;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1, 0};

static int gate_may_send(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate.mu);
    int open = gate.open;
    gate.asked++;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    return open;
}

static void start_fulfil(void)
{
    ph_err err = {0};
    ph_fulfil_opts o = {.store = g_s,
                        .io = {NULL, fake_submit, fake_allow},
                        .suppliers = g_sups,
                        .keys = g_keys,
                        .log = &g_log,
                        .cfg = {NULL, cfg_acquire, cfg_release},
                        .callback_base = "http://127.0.0.1:1",
                        .may_send = gate_may_send};
    cr_assert_eq(ph_fulfil_create(&o, &g_f, &err), PH_OK, "%s", err.msg);
}

/* The daemon's shutdown order, with the fake engine holding nothing. */
static void stop_fulfil(void)
{
    ph_fulfil_stop(g_f);
    ph_fulfil_flush(g_f);
    ph_store_close(g_s);
    g_s = NULL;
    ph_fulfil_destroy(g_f);
    g_f = NULL;
}

static void setup_world(int callbacks)
{
    fixture_setup();
    g_log.fd = 2;
    ph_log_set_level(&g_log, PH_LOG_WARN);
    io.n = 0;
    io.submitted = 0;
    io.nout = 0;
    io.overlaps = 0;
    gate.open = 1;
    gate.asked = 0;
    load_config(callbacks);
    ph_err err = {0};
    char key[128];
    snprintf(key, sizeof key, "%s/master.key", g_base);
    cr_assert_eq(ph_keyring_load(key, 1, &g_keys, &err), PH_OK, "%s", err.msg);
    g_s = open_at(g_dir, 0);
    const char *products[] = {P_TOPUP};
    cr_assert_eq(put_products(products, 1, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_suppliers_create(&g_log, &g_sups, &err), PH_OK);
    cr_assert_eq(ph_suppliers_apply(g_sups, g_cfg, &err), PH_OK, "%s", err.msg);
    start_fulfil();
}

static void setup(void)
{
    setup_world(0);
}

static void setup_callbacks(void)
{
    setup_world(1);
}

static void teardown(void)
{
    if (g_f)
        stop_fulfil();
    ph_suppliers_destroy(g_sups);
    g_sups = NULL;
    ph_keyring_free(g_keys);
    g_keys = NULL;
    ph_config_free(g_cfg);
    g_cfg = NULL;
    fixture_teardown();
}

TestSuite(fulfil, .init = setup, .fini = teardown);

/* ---- orders --------------------------------------------------------------------- */

/* Stores a new recharge order routed as fulfil routes it (attempt 1 SENDING);
 * with begin, hands it to fulfil as the HTTP handler does. Returns its id. */
static uint64_t place(const char *coid, int begin)
{
    const ph_product_conf *p = ph_config_product(g_cfg, TOPUP);
    cr_assert_not_null(p);
    ph_attempt_target t = {0};
    cr_assert_eq(ph_fulfil_route(g_f, g_cfg, p, &t), PH_OK, "no route");
    uint8_t sealed[64 + PH_SEAL_OVERHEAD];
    uint32_t sealed_len = 0;
    char masked[32];
    cr_assert_eq(ph_fulfil_seal_account(g_f, ACCOUNT, sealed, &sealed_len, masked), PH_OK);
    ph_cmd c = {.type = PH_CMD_SUPPLY_CREATE, .now = ph_now_ms()};
    c.in.supply.client = "mall";
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = TOPUP;
    c.in.supply.quantity = 1;
    fingerprint(coid, 1, c.in.supply.fingerprint);
    c.in.supply.delivery = PH_DELIVERY_RECHARGE;
    c.in.supply.account_sealed = sealed;
    c.in.supply.account_sealed_len = sealed_len;
    c.in.supply.account_masked = masked;
    c.in.supply.first = t;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_not_null(c.order);
    uint64_t id = c.order->id;
    cr_assert_eq(c.order->nattempts, 1);
    cr_assert_eq(c.order->attempts[0].state, PH_ATTEMPT_SENDING);
    ph_err err = {0};
    if (begin)
        cr_assert_eq(ph_fulfil_begin(g_f, c.order, ACCOUNT, &err), PH_OK, "%s", err.msg);
    ph_cmd_clear(&c);
    return id;
}

static void post_sem(void *arg)
{
    sem_post(arg);
}

/* Waits (ph_fulfil_wait) until order id is final; returns it as stored. */
static ph_order *wait_final(uint64_t id)
{
    sem_t sem;
    sem_init(&sem, 0, 0);
    cr_assert_eq(ph_fulfil_wait(g_f, id, ph_now_ms() + DEADLINE, post_sem, &sem), PH_OK);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += DEADLINE / 1000 + 5;
    int rc;
    while ((rc = sem_timedwait(&sem, &ts)) != 0 && errno == EINTR)
        ;
    sem_destroy(&sem);
    cr_assert_eq(rc, 0, "the wait for order %llu never ended", (unsigned long long)id);
    ph_order *o = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_get(g_s, id, 0, &o, &err), PH_OK, "%s", err.msg);
    return o;
}

static ph_order *stored(uint64_t id)
{
    ph_order *o = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_get(g_s, id, 0, &o, &err), PH_OK, "%s", err.msg);
    return o;
}

/* ---- tests ------------------------------------------------------------------------- */

Test(fulfil, begin_exchange_ok_succeeds)
{
    uint64_t id = place("ok-1", 1);
    ph_sio_job *j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_RECHARGE);
    cr_assert_str_eq(job_supplier(j), "sb1", "routed by priority");
    cr_assert_str_eq(j->op.account, ACCOUNT, "the plaintext account reaches the supplier request");
    cr_assert_not_null(strstr(j->op.callback_url, "/v1/callbacks/sb1"));
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, "SUP-1");

    ph_order *o = wait_final(id);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(o->nattempts, 1);
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_SUCCEEDED);
    cr_assert_str_eq(o->attempts[0].supplier_order_id, "SUP-1");
    ph_order_free(o);
    cr_assert_eq(ph_fulfil_active(g_f), 0, "the track outlived its final order");
    cr_assert_eq(jobs_waiting(), 0);
    cr_assert_eq(jobs_submitted(), 1, "one exchange in all");
}

/* Replication (issue 19): a node that is not sure it leads holds every
 * exchange back, asking again later, and sends once it leads again. */
Test(fulfil, a_node_that_may_not_send_holds_the_exchange_back)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = 0;
    pthread_mutex_unlock(&gate.mu);
    uint64_t id = place("gate-1", 1);
    pthread_mutex_lock(&gate.mu);
    while (gate.asked < 2) /* asked, held back, and asked again */
        pthread_cond_wait(&gate.cv, &gate.mu);
    pthread_mutex_unlock(&gate.mu);
    cr_assert_eq(jobs_submitted(), 0, "an exchange left while the node may not send");
    pthread_mutex_lock(&gate.mu);
    gate.open = 1;
    pthread_mutex_unlock(&gate.mu);
    ph_sio_job *j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_RECHARGE);
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, "SUP-G");
    ph_order *o = wait_final(id);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    ph_order_free(o);
    cr_assert_eq(jobs_submitted(), 1, "one exchange in all");
}

Test(fulfil, ambiguous_becomes_unknown_and_a_query_settles_it)
{
    uint64_t id = place("amb-1", 1);
    ph_sio_job *j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_RECHARGE);
    answer(j, PERKHUB_AMBIGUOUS, 0, 0, NULL);

    /* the next exchange is a query, never the recharge again (rule 2); it is
     * submitted only once the UNKNOWN state is durable */
    j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_ORDER_QUERY, "the order was sent again");
    cr_assert_eq(j->op.order_kind, PERKHUB_OP_RECHARGE);
    cr_assert_str_eq(job_supplier(j), "sb1", "an ambiguous order went to another supplier");
    ph_order *o = stored(id);
    cr_assert_eq(o->state, PH_ORDER_UNKNOWN);
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_UNKNOWN);
    ph_order_free(o);

    /* still processing at the supplier: another query later */
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_PROCESSING, NULL);
    j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_ORDER_QUERY);
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, "SUP-2");

    o = wait_final(id);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(o->nattempts, 1, "an ambiguous attempt failed over");
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_SUCCEEDED);
    ph_order_free(o);
    cr_assert_eq(jobs_submitted(), 3);
}

Test(fulfil, definite_failure_fails_over_to_the_next_offer)
{
    uint64_t id = place("fo-1", 1);
    ph_sio_job *j = take_job();
    cr_assert_str_eq(job_supplier(j), "sb1");
    answer(j, PERKHUB_DEFINITE_FAILURE, 1, PERKHUB_STATE_FAILED, NULL);

    j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_RECHARGE);
    cr_assert_str_eq(job_supplier(j), "sb2", "no fail-over to the next offer");
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, "SUP-3");

    ph_order *o = wait_final(id);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(o->nattempts, 2);
    cr_assert_str_eq(o->attempts[0].supplier, "sb1");
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_FAILED);
    cr_assert_str_eq(o->attempts[1].supplier, "sb2");
    cr_assert_eq(o->attempts[1].state, PH_ATTEMPT_SUCCEEDED);
    ph_order_free(o);
    cr_assert_eq(jobs_submitted(), 2);
}

Test(fulfil, both_offers_refuse_and_the_order_fails)
{
    uint64_t id = place("fo-2", 1);
    answer(take_job(), PERKHUB_DEFINITE_FAILURE, 1, PERKHUB_STATE_FAILED, NULL);
    ph_sio_job *j = take_job();
    cr_assert_str_eq(job_supplier(j), "sb2");
    answer(j, PERKHUB_DEFINITE_FAILURE, 1, PERKHUB_STATE_FAILED, NULL);

    ph_order *o = wait_final(id);
    cr_assert_eq(o->state, PH_ORDER_FAILED);
    cr_assert_eq(o->nattempts, 2, "a supplier was tried twice");
    ph_order_free(o);
    cr_assert_eq(jobs_waiting(), 0);
}

/* A crash after the order was stored SENDING, before anything was known of the
 * request: the restart records it UNKNOWN and queries it, never resends. */
Test(fulfil, restart_resumes_sending_as_unknown_then_queries)
{
    uint64_t id = place("rs-1", 0); /* stored, never begun: the process died */
    stop_fulfil();
    g_s = open_at(g_dir, 0); /* the restart */
    start_fulfil();
    ph_err err = {0};
    cr_assert_eq(ph_fulfil_resume(g_f, &err), PH_OK, "%s", err.msg);

    ph_sio_job *j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_ORDER_QUERY, "a SENDING attempt was sent again");
    cr_assert_str_eq(j->op.account, ACCOUNT, "the account was not unsealed for the query");
    ph_order *o = stored(id);
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_UNKNOWN);
    cr_assert_str_eq(o->attempts[0].reason, "interrupted_while_sending");
    ph_order_free(o);
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, "SUP-4");

    o = wait_final(id);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(o->nattempts, 1);
    ph_order_free(o);
    cr_assert_eq(jobs_submitted(), 1);
}

/* A wait posted right after begin, on the same thread, sees the order in
 * flight (it is not answered before the order is final). */
Test(fulfil, wait_after_begin_waits_for_the_outcome)
{
    uint64_t id = place("w-1", 1);
    sem_t sem;
    sem_init(&sem, 0, 0);
    cr_assert_eq(ph_fulfil_wait(g_f, id, ph_now_ms() + DEADLINE, post_sem, &sem), PH_OK);
    ph_sio_job *j = take_job(); /* fulfil has handled begin and the wait by now */
    ph_fulfil_flush(g_f);
    cr_assert_eq(sem_trywait(&sem), -1, "the waiter fired before the order was final");
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += DEADLINE / 1000;
    int rc;
    while ((rc = sem_timedwait(&sem, &ts)) != 0 && errno == EINTR)
        ;
    cr_assert_eq(rc, 0, "the waiter never fired");
    sem_destroy(&sem);
}

/* A whole round of late re-queries fulfil cannot even start (their orders are
 * gone) at the head of the `late` schedule must not starve the entry behind
 * them: it is queried within seconds. Before stuck entries waited out a
 * backoff (supply/late_defer.h), every round read the same 32 and looked
 * again a minute later, so the healthy one was never queried. */
Test(fulfil, stuck_late_entries_do_not_starve_the_one_behind)
{
    uint64_t id = place("late-ok", 0);
    ph_cmd a = {.type = PH_CMD_ATTEMPT, .now = ph_now_ms()};
    a.in.attempt.order_id = id;
    a.in.attempt.no = 1;
    a.in.attempt.state = PH_ATTEMPT_FAILED;
    a.in.attempt.step = -1;
    a.in.attempt.charged = -1;
    a.in.attempt.next_check_at = -1;
    a.in.attempt.reason = "not_found_at_supplier";
    a.in.attempt.late_check_at = a.now; /* due at once */
    cr_assert_eq(ph_store_exec(g_s, &a), PH_OK, "%s", a.err.msg);
    ph_cmd_clear(&a);

    /* 40 entries due long before it, naming orders that do not exist */
    stop_fulfil();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi late = raw_dbi(txn, "late", 0);
    for (uint64_t k = 0; k < 40; k++) {
        uint8_t key[20] = {0};
        uint64_t due = 1000 + k, bogus = 900000 + k;
        for (int b = 0; b < 8; b++) {
            key[7 - b] = (uint8_t)(due >> (8 * b));
            key[15 - b] = (uint8_t)(bogus >> (8 * b));
        }
        key[19] = 1;
        MDB_val kv = {sizeof key, key}, vv = {0, ""};
        cr_assert_eq(mdb_put(txn, late, &kv, &vv, 0), 0);
    }
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    start_fulfil();

    ph_sio_job *j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_ORDER_QUERY);
    char ref[64];
    snprintf(ref, sizeof ref, "%s-%llu-1", ph_store_uid(g_s), (unsigned long long)id);
    cr_assert_str_eq(j->op.order_ref, ref, "the late re-query of another attempt");
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_NOT_FOUND, NULL);
    /* its word stored, its entry goes: the 40 stuck ones stay */
    int64_t until = ph_now_ms() + DEADLINE;
    ph_late_check due[64];
    int64_t next;
    size_t n;
    while ((n = ph_store_late_due(g_s, ph_now_ms(), due, 64, &next)) != 40 && ph_now_ms() < until)
        usleep(10000);
    cr_assert_eq(n, 40, "the healthy entry was not removed (%zu entries)", n);
}

/* ---- callbacks ------------------------------------------------------------------ */

/* The callback tests run against two cb_echo suppliers (load_config): a
 * callback is a hint, and these say what fulfil does with one through the
 * exchanges it submits. Each query a callback causes comes long before the
 * attempt's own next query (ten minutes), so only the callback explains it. */

#define QUIET 500 /* ms with no exchange that show fulfil submitted none */

TestSuite(fulfil_callbacks, .init = setup_callbacks, .fini = teardown);

/* A callback from supplier for attempt no of order id claiming `state`
 * (cb_echo's state=: "processing", "failed", NULL for succeeded), handed over
 * as the HTTP handler does; cb_echo believes it and it matches, so it is
 * acknowledged. */
static void call_back_claim(const char *supplier, uint64_t id, uint32_t no, const char *state)
{
    char body[160];
    snprintf(body, sizeof body, "ref=%s-%llu-%u%s%s", ph_store_uid(g_s), (unsigned long long)id, no,
             state ? "&state=" : "", state ? state : "");
    struct perkhub_callback cb = {.method = "POST",
                                  .query = "",
                                  .content_type = "application/x-www-form-urlencoded",
                                  .body = body,
                                  .body_len = strlen(body)};
    ph_callback_reply out = {0};
    cr_assert_eq(ph_fulfil_callback(g_f, supplier, &cb, &out), PH_OK);
    cr_assert_eq(out.status, 200, "%s %s: %u %s %s", supplier, body, out.status, out.error,
                 out.message);
    cr_assert_str_eq(out.error, "", "%s %s refused: %s", supplier, body, out.message);
    cr_assert(out.body && !strcmp(out.body, "success"), "%s %s: reply '%s'", supplier, body,
              out.body ? out.body : "(none)");
    free(out.body);
}

/* The same, claiming the order succeeded. */
static void call_back(const char *supplier, uint64_t id, uint32_t no)
{
    call_back_claim(supplier, id, no, NULL);
}

/* Attempt no of order id as stored (a copy). */
static ph_attempt attempt_of(uint64_t id, uint32_t no)
{
    ph_order *o = stored(id);
    ph_attempt a = {0};
    for (size_t i = 0; i < o->nattempts; i++)
        if (o->attempts[i].no == no)
            a = o->attempts[i];
    ph_order_free(o);
    cr_assert_eq(a.no, no, "order %llu has no attempt %u", (unsigned long long)id, no);
    return a;
}

/* Waits until attempt no of order id is stored in state with `checks` order
 * queries answered (the command of the answer just given is durable); returns
 * when its next query is due. */
static int64_t wait_stored(uint64_t id, uint32_t no, int state, uint32_t checks)
{
    int64_t end = ph_now_ms() + DEADLINE;
    for (;;) {
        ph_attempt a = attempt_of(id, no);
        if (a.state == state && a.checks >= checks)
            return a.next_check_at;
        cr_assert_lt(ph_now_ms(), end, "attempt %u of order %llu is %s, not %s, after %d ms", no,
                     (unsigned long long)id, ph_attempt_state_name(a.state),
                     ph_attempt_state_name(state), DEADLINE);
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
}

/* Fulfil submits nothing: every event so far is handled (flush) and no
 * exchange comes in a quiet spell after. */
static void expect_no_exchange(const char *what)
{
    ph_fulfil_flush(g_f);
    ph_sio_job *j = take_job_within(QUIET);
    expect_no_overlap();
    cr_assert_null(j, "%s (%s at %s)", what,
                   j && j->op.kind == PERKHUB_OP_ORDER_QUERY ? "a query" : "an order",
                   j ? job_supplier(j) : "");
}

/* The order goes to cb1, which answers "processing": attempt 1 waits for its
 * next query, ten minutes away. Returns the order's id. */
static uint64_t place_processing(const char *coid, const char *soid)
{
    uint64_t id = place(coid, 1);
    ph_sio_job *j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_RECHARGE);
    cr_assert_str_eq(job_supplier(j), "cb1");
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_PROCESSING, soid);
    int64_t due = wait_stored(id, 1, PH_ATTEMPT_PROCESSING, 0);
    cr_assert_gt(due - ph_now_ms(), 60000, "the next query is not minutes away");
    expect_no_exchange("an attempt answered processing was queried before its time");
    return id;
}

/* A verified callback for an attempt waiting for its next query makes fulfil
 * query it at once, and moves nothing itself: the order stays processing until
 * the query's answer settles it. */
Test(fulfil_callbacks, a_callback_queries_a_waiting_attempt_at_once)
{
    uint64_t id = place_processing("cb-1", "SUP-1");
    int64_t due = attempt_of(id, 1).next_check_at;
    uint64_t before = last_event();

    call_back("cb1", id, 1);
    ph_sio_job *j = take_job();
    cr_assert_lt(ph_now_ms(), due, "the query came at its time, not the callback's");
    cr_assert_eq(j->op.kind, PERKHUB_OP_ORDER_QUERY, "a callback sent the order again");
    cr_assert_eq(j->op.order_kind, PERKHUB_OP_RECHARGE);
    cr_assert_str_eq(job_supplier(j), "cb1");
    cr_assert_str_eq(j->op.supplier_order_id, "SUP-1");

    /* the callback said "succeeded" (cb_echo's claim); the store does not know */
    cr_assert_eq(last_event(), before, "the callback changed the store");
    ph_order *o = stored(id);
    cr_assert_eq(o->state, PH_ORDER_PROCESSING, "the callback moved the order");
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_PROCESSING, "the callback moved the attempt");
    ph_order_free(o);
    expect_no_exchange("one callback brought more than one query");

    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, "SUP-1");
    o = wait_final(id);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(o->nattempts, 1);
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_SUCCEEDED);
    ph_order_free(o);
    cr_assert_eq(jobs_submitted(), 2, "the order request and one query");
}

/* The callback's confirming query, once the order's own answer is stored (the
 * attempt processing, its scheduled query over a minute away, so only the
 * callback explains this one): it carries the supplier's order id, and its
 * success settles the order, after the order request and this one query. */
static void confirming_query_settles(uint64_t id, const char *supplier_order_id)
{
    ph_sio_job *j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_ORDER_QUERY, "a callback sent the order again");
    cr_assert_str_eq(j->op.supplier_order_id, supplier_order_id,
                     "the query went before the answer was in");
    ph_attempt a = attempt_of(id, 1);
    cr_assert_eq(a.state, PH_ATTEMPT_PROCESSING, "the query went before the answer was stored");
    cr_assert_gt(a.next_check_at - ph_now_ms(), 60000, "the query came at its time");

    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, NULL);
    ph_order *o = wait_final(id);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    ph_order_free(o);
    cr_assert_eq(jobs_submitted(), 2, "the order request and one query");
}

/* A callback that comes while the order request is on the wire starts no second
 * exchange: its query follows once the exchange ended and what it learned is
 * stored (the supplier's order id is in the query). */
Test(fulfil_callbacks, a_callback_during_an_exchange_queries_after_it)
{
    uint64_t id = place("cb-2", 1);
    ph_sio_job *j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_RECHARGE);
    call_back("cb1", id, 1);
    expect_no_exchange("a callback started an exchange while the order request was on the wire");

    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_PROCESSING, "SUP-2");
    confirming_query_settles(id, "SUP-2");
}

/* The same while the exchange's answer is being stored: the writer is held
 * behind a command of the test, so fulfil's command waits, and the callback's
 * query comes only once that command is durable. */
Test(fulfil_callbacks, a_callback_while_the_answer_is_stored_queries_after_it)
{
    uint64_t id = place("cb-3", 1);
    ph_sio_job *j = take_job();

    static const char *products[] = {P_TOPUP};
    static held_cmd hold;
    memset(&hold, 0, sizeof hold);
    hold.c = (ph_cmd){.type = PH_CMD_PUT_PRODUCTS, .now = NOW};
    hold.c.in.products.json = products;
    hold.c.in.products.n = 1;
    sem_t gate;
    sem_init(&gate, 0, 0);
    ph_writer_stats w;
    ph_store_writer_stats(g_s, &w);
    uint64_t commits = w.commits;
    submit_held(&hold, &gate);
    int64_t end = ph_now_ms() + DEADLINE;
    do { /* committed: the writer now sits in the command's done, at the gate */
        cr_assert_lt(ph_now_ms(), end, "the writer never took the test's command");
        sched_yield();
        ph_store_writer_stats(g_s, &w);
    } while (w.commits == commits);

    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_PROCESSING, "SUP-3");
    ph_fulfil_flush(g_f); /* fulfil has handed the answer's command to the writer */
    call_back("cb1", id, 1);
    ph_fulfil_flush(g_f);
    ph_sio_job *early = take_job_within(QUIET);
    pthread_mutex_lock(&io.mu);
    unsigned twice = io.overlaps;
    pthread_mutex_unlock(&io.mu);
    int held_state = attempt_of(id, 1).state;
    /* the writer goes on whatever happened, or the teardown would wait for it */
    sem_post(&gate);
    sem_wait(&hold.done);
    cr_assert(!early && !twice, "a callback started an exchange while the answer was being stored");
    cr_assert_eq(held_state, PH_ATTEMPT_SENDING, "the writer was not held");
    cr_assert_eq(hold.c.rc, PH_OK, "%s", hold.c.err.msg);
    ph_cmd_clear(&hold.c);
    sem_destroy(&hold.done);
    sem_destroy(&gate);
    confirming_query_settles(id, "SUP-3");
}

/* Duplicates (issue 10, defect 10: 500 replays of one signed notify made 211
 * queries). While a confirming query is on the wire, N more callbacks with
 * the same claim start nothing, and none follows once it is answered: that
 * claim is confirmed, and the attempt's own queries go on. A burst of them
 * while the attempt waits starts nothing either. A new claim is confirmed by
 * one query: at once while the attempt waits; right after the query on the
 * wire when it comes meanwhile (that query may have left before the change),
 * however many claims came. */
Test(fulfil_callbacks, duplicate_callbacks_bring_one_query_per_claim)
{
    enum { N = 20 };
    uint64_t id = place_processing("cb-4", "SUP-4");
    call_back("cb1", id, 1);
    ph_sio_job *q = take_job();
    cr_assert_eq(q->op.kind, PERKHUB_OP_ORDER_QUERY);
    for (int i = 0; i < N; i++)
        call_back("cb1", id, 1);
    expect_no_exchange(
        "a duplicate started an exchange while the confirming query was on the wire");
    answer(q, PERKHUB_OK, 1, PERKHUB_STATE_PROCESSING, NULL);
    int64_t due = wait_stored(id, 1, PH_ATTEMPT_PROCESSING, 1);
    cr_assert_gt(due - ph_now_ms(), 60000, "the next query is not minutes away");
    expect_no_exchange("duplicates of a confirmed claim brought a query after it");

    /* a burst while the attempt waits (a supplier's retries, a replay) */
    for (int i = 0; i < N; i++)
        call_back("cb1", id, 1);
    expect_no_exchange("a burst of a confirmed claim brought a query");
    cr_assert_eq(jobs_submitted(), 2, "the order request and one query");

    /* a new claim: one query at once; two more claims while it is on the wire
     * (repeated N times): one query after it */
    call_back_claim("cb1", id, 1, "processing");
    q = take_job();
    cr_assert_eq(q->op.kind, PERKHUB_OP_ORDER_QUERY);
    for (int i = 0; i < N; i++) {
        call_back_claim("cb1", id, 1, "processing");
        call_back_claim("cb1", id, 1, "failed");
    }
    expect_no_exchange("a callback started an exchange while the confirming query was on the wire");
    answer(q, PERKHUB_OK, 1, PERKHUB_STATE_PROCESSING, NULL);
    q = take_job();
    cr_assert_eq(q->op.kind, PERKHUB_OP_ORDER_QUERY);
    wait_stored(id, 1, PH_ATTEMPT_PROCESSING, 2);
    answer(q, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, NULL);
    ph_order *o = wait_final(id);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    ph_order_free(o);
    expect_no_exchange("a query after the order was final");
    cr_assert_eq(jobs_submitted(), 4, "the order request and one query per claim");
}

/* A callback for a final attempt starts no exchange: not for a failed attempt
 * while the order goes on with the next supplier, not once the order is
 * final. Both are acknowledged (the supplier stops retrying); one that
 * contradicts the attempt is kept as a discrepancy, once, and changes nothing
 * else. */
Test(fulfil_callbacks, a_callback_for_a_final_attempt_starts_no_exchange)
{
    uint64_t id = place("cb-5", 1);
    ph_sio_job *j = take_job();
    cr_assert_str_eq(job_supplier(j), "cb1");
    answer(j, PERKHUB_DEFINITE_FAILURE, 1, PERKHUB_STATE_FAILED, NULL);
    j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_RECHARGE);
    cr_assert_str_eq(job_supplier(j), "cb2", "no fail-over to the next offer");
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_PROCESSING, "SUP-5");
    wait_stored(id, 2, PH_ATTEMPT_PROCESSING, 0);
    expect_no_exchange("an attempt answered processing was queried before its time");
    cr_assert_eq(attempt_of(id, 1).state, PH_ATTEMPT_FAILED);

    /* a signed success about the failed attempt contradicts it (issue 11,
     * Found 1): kept as one discrepancy, and still no exchange */
    uint64_t before = last_event();
    call_back("cb1", id, 1);
    expect_no_exchange("a callback for a failed attempt started an exchange");
    cr_assert_eq(last_event(), before + 1, "the contradiction is one order.discrepancy");
    cr_assert_eq(ph_store_discrep_open(g_s), 1);
    cr_assert_eq(attempt_of(id, 1).state, PH_ATTEMPT_FAILED,
                 "a final attempt never moves by itself");

    call_back("cb2", id, 2);
    j = take_job();
    cr_assert_eq(j->op.kind, PERKHUB_OP_ORDER_QUERY);
    cr_assert_str_eq(job_supplier(j), "cb2");
    answer(j, PERKHUB_OK, 1, PERKHUB_STATE_SUCCEEDED, NULL);
    ph_order *o = wait_final(id);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    ph_order_free(o);

    before = last_event();
    call_back("cb2", id, 2);
    call_back("cb1", id, 1);
    expect_no_exchange("a callback for a final order started an exchange");
    cr_assert_eq(last_event(), before, "the callback changed the store (the same word twice)");
    cr_assert_eq(ph_store_discrep_open(g_s), 1);
    cr_assert_eq(jobs_submitted(), 3, "two order requests and one query");
}
