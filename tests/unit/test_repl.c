/*
 * test_repl.c — replication's pieces that need no NATS (issue 19,
 * docs/replication.md): the `replication:` section of the configuration, and
 * the store's one seam (ph_store_opts.repl_hook): every batch's stream
 * sequence in meta "repl_seq" in its own transaction, and a batch the hook
 * refuses is not committed, every command of it failing with the hook's
 * error. The NATS side is tests/e2e/test_repl.c.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "config/config.h"
#include "repl/repl.h"
#include "store/cmd_codec.h"
#include "store/store.h"
#include "store_fixture.h"

#define BASE "data_dir: var/data\nmaster_key_file: var/master.key\n"

/* ---- the configuration ---------------------------------------------------- */

static void load_err(const char *yaml, const char *want)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &err), PH_EINVAL,
                 "loaded: %s", yaml);
    cr_assert_str_eq(err.msg, want);
}

Test(repl_config, off_by_default_with_its_defaults)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(BASE, strlen(BASE), "t.yaml", &cfg, &err), PH_OK, "%s",
                 err.msg);
    cr_assert_eq(cfg->repl_enabled, 0);
    cr_assert_str_eq(cfg->repl_stream, "PERKHUB");
    cr_assert_str_eq(cfg->repl_subject, "perkhub.batches");
    cr_assert_str_eq(cfg->repl_lease_bucket, "perkhub_lease");
    cr_assert_eq(cfg->repl_lease_ttl_ms, 3000);
    cr_assert_eq(cfg->repl_replicas, 3);
    ph_config_free(cfg);
    const char *y = BASE "replication:\n  enabled: true\n  node_id: n1\n"
                         "  urls: [nats://127.0.0.1:4222, \"nats://127.0.0.1:4223\"]\n"
                         "  lease_ttl_ms: 2000\n  advertise_url: http://10.0.0.1:8080\n";
    cr_assert_eq(ph_config_load_string(y, strlen(y), "t.yaml", &cfg, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(cfg->repl_enabled, 1);
    cr_assert_str_eq(cfg->repl_node_id, "n1");
    cr_assert_eq(cfg->nrepl_urls, 2);
    cr_assert_str_eq(cfg->repl_urls[1], "nats://127.0.0.1:4223");
    cr_assert_eq(cfg->repl_lease_ttl_ms, 2000);
    ph_config_free(cfg);
}

Test(repl_config, errors_name_the_line_and_the_field)
{
    load_err(BASE "replication:\n  enabled: true\n  urls: [nats://a:1]\n",
             "t.yaml:4:3: replication: expected node_id when replication is enabled");
    load_err(BASE "replication:\n  enabled: true\n  node_id: n1\n"
                  "  urls: [nats://a:1]\n",
             "t.yaml:4:3: replication: expected advertise_url when replication is enabled");
    load_err(BASE "replication:\n  enabled: true\n  node_id: n1\n"
                  "  urls: [nats://a:1, http://b:2]\n  advertise_url: http://x\n",
             "t.yaml:6:22: replication.urls[1]: expected a nats:// URL");
    load_err(BASE "replication:\n  enabled: true\n  node_id: n1\n  urls: [nats://a:1]\n"
                  "  advertise_url: http://x\n  stream: a.b\n",
             "t.yaml:8:11: replication.stream: expected letters, digits and -_ only, got \"a.b\"");
    load_err(BASE "replication:\n  lease_ttl_ms: 10\n",
             "t.yaml:4:17: replication.lease_ttl_ms: expected an integer 500..600000, got \"10\"");
    load_err(BASE "replication:\n  enabeld: true\n",
             "t.yaml:4:3: replication: unknown key \"enabeld\", did you mean \"enabled\"?");
}

/* ---- the store's seam ------------------------------------------------------- */

typedef struct fake_stream {
    atomic_int refuse;
    atomic_int skip; /* stream messages before the batch's last: parts, or parts never completed */
    uint64_t prevs[8];
    atomic_int n;
} fake_stream;

static fake_stream FS;

static int fake_hook(void *arg, const ph_cmd *batch, uint64_t prev, uint64_t *seq, ph_err *err)
{
    fake_stream *f = arg;
    cr_assert(batch);
    int i = atomic_fetch_add(&f->n, 1);
    if (i < 8)
        f->prevs[i] = prev;
    if (atomic_load(&f->refuse))
        return ph_err_set(err, PH_EUNAVAIL, "replication: not stored: the fake stream said no");
    *seq = prev + 1 + (uint64_t)atomic_load(&f->skip);
    return PH_OK;
}

/* An epoch marker after stream sequence `after`. */
static int marker(const char *node, uint64_t after)
{
    char fields[96];
    snprintf(fields, sizeof fields, "{\"node\":\"%s\",\"after_seq\":%llu}", node,
             (unsigned long long)after);
    ph_cmd c = {.type = PH_CMD_NOTE_EVENT, .now = 1700000000000};
    c.in.note.name = "repl.leader";
    c.in.note.fields = fields;
    int rc = ph_store_exec(g_s, &c);
    if (rc == PH_EUNAVAIL)
        cr_assert(strstr(c.err.msg, "replication: not stored: the fake stream said no"), "%s",
                  c.err.msg);
    ph_cmd_clear(&c);
    return rc;
}

/* An epoch marker after what the store holds, as a new leader's. */
static int note(const char *node)
{
    return marker(node, ph_store_repl_seq(g_s));
}

TestSuite(repl_store, .init = fixture_setup, .fini = fixture_teardown);

static void open_hooked(void)
{
    memset(&FS, 0, sizeof FS);
    ph_store_opts o = {.dir = g_dir, .repl_hook = fake_hook, .repl_arg = &FS};
    ph_err err = {0};
    cr_assert_eq(ph_store_open(&o, &g_s, &err), PH_OK, "%s", err.msg);
}

Test(repl_store, every_batch_records_its_sequence_in_its_transaction)
{
    open_hooked();
    cr_assert_eq(ph_store_repl_seq(g_s), 0);
    cr_assert_eq(note("a"), PH_OK);
    cr_assert_eq(note("b"), PH_OK);
    cr_assert_eq(atomic_load(&FS.n), 2);
    cr_assert_eq(FS.prevs[0], 0);
    cr_assert_eq(FS.prevs[1], 1);
    cr_assert_eq(ph_store_repl_seq(g_s), 2);
    uint64_t events = ph_store_event_last(g_s);
    /* refused by the stream: nothing of the batch is committed, not even its sequence */
    atomic_store(&FS.refuse, 1);
    cr_assert_eq(note("c"), PH_EUNAVAIL);
    cr_assert_eq(ph_store_repl_seq(g_s), 2);
    cr_assert_eq(ph_store_event_last(g_s), events, "a refused batch left an event");
    /* and the next one takes the sequence the refused one did not */
    atomic_store(&FS.refuse, 0);
    cr_assert_eq(note("d"), PH_OK);
    cr_assert_eq(FS.prevs[3], 2);
    cr_assert_eq(ph_store_repl_seq(g_s), 3);
    cr_assert_eq(ph_store_event_last(g_s), events + 1);
    assert_check();
}

Test(repl_store, a_single_node_store_has_no_sequence)
{
    g_s = open_at(g_dir, 0);
    cr_assert_eq(note("a"), PH_OK);
    cr_assert_eq(ph_store_repl_seq(g_s), 0);
}

Test(repl_store, a_batch_in_parts_records_the_sequence_of_its_last_part)
{
    open_hooked();
    cr_assert_eq(note("a"), PH_OK);
    cr_assert_eq(ph_store_repl_seq(g_s), 1);
    /* the next batch ends 3 messages on (parts, or parts never completed before it) */
    atomic_store(&FS.skip, 2);
    cr_assert_eq(note("b"), PH_OK);
    cr_assert_eq(FS.prevs[1], 1);
    cr_assert_eq(ph_store_repl_seq(g_s), 4);
    atomic_store(&FS.skip, 0);
    cr_assert_eq(note("c"), PH_OK);
    cr_assert_eq(FS.prevs[2], 4);
    cr_assert_eq(ph_store_repl_seq(g_s), 5);
    assert_check();
}

/* ---- the parts of a large batch (repl.h, ph_repl_parts_feed) ------------------------- */

#include "repl/repl.h"

typedef struct fed {
    int rc;
    unsigned dropped;
    char whole[64];
} fed;

static fed feed(ph_repl_parts *p, uint64_t seq, const char *part, const char *data)
{
    fed f = {0};
    const uint8_t *out = NULL;
    size_t n = 0;
    f.rc = ph_repl_parts_feed(p, seq, part, data, strlen(data), &out, &n, &f.dropped);
    if (f.rc == PH_REPL_PARTS_WHOLE) {
        cr_assert(n < sizeof f.whole);
        memcpy(f.whole, out, n);
    }
    return f;
}

Test(repl_parts, parts_in_order_make_the_batch_at_the_last)
{
    ph_repl_parts p = {0};
    fed f = feed(&p, 7, NULL, "one");
    cr_assert_eq(f.rc, PH_REPL_PARTS_WHOLE);
    cr_assert_str_eq(f.whole, "one");
    cr_assert_eq(feed(&p, 8, "1/3", "ab").rc, PH_REPL_PARTS_HELD);
    cr_assert_eq(feed(&p, 9, "2/3", "cd").rc, PH_REPL_PARTS_HELD);
    f = feed(&p, 10, "3/3", "ef");
    cr_assert_eq(f.rc, PH_REPL_PARTS_WHOLE);
    cr_assert_str_eq(f.whole, "abcdef");
    cr_assert_eq(f.dropped, 0);
    /* and the next batch starts afresh */
    f = feed(&p, 11, "1/2", "x");
    cr_assert_eq(f.rc, PH_REPL_PARTS_HELD);
    f = feed(&p, 12, "2/2", "y");
    cr_assert_str_eq(f.whole, "xy");
    ph_repl_parts_clear(&p);
}

/* A leader that died (or lost its lease) between two parts: the next
 * message is another leader's (its epoch marker, or a new batch's first part)
 * and the held parts are ignored; every node reads the same messages, so
 * every node ignores the same ones. */
Test(repl_parts, parts_never_completed_are_ignored)
{
    ph_repl_parts p = {0};
    cr_assert_eq(feed(&p, 1, "1/3", "ab").rc, PH_REPL_PARTS_HELD);
    cr_assert_eq(feed(&p, 2, "2/3", "cd").rc, PH_REPL_PARTS_HELD);
    fed f = feed(&p, 3, NULL, "marker");
    cr_assert_eq(f.rc, PH_REPL_PARTS_WHOLE);
    cr_assert_str_eq(f.whole, "marker");
    cr_assert_eq(f.dropped, 2);
    /* a new first part drops the held ones too */
    cr_assert_eq(feed(&p, 4, "1/2", "q").rc, PH_REPL_PARTS_HELD);
    f = feed(&p, 5, "1/2", "r");
    cr_assert_eq(f.rc, PH_REPL_PARTS_HELD);
    cr_assert_eq(f.dropped, 1);
    f = feed(&p, 6, "2/2", "s");
    cr_assert_str_eq(f.whole, "rs");
    /* a part whose earlier parts were never read, or of another count: ignored */
    f = feed(&p, 7, "2/2", "t");
    cr_assert_eq(f.rc, PH_REPL_PARTS_HELD);
    cr_assert_eq(f.dropped, 1);
    cr_assert_eq(feed(&p, 8, "1/3", "u").rc, PH_REPL_PARTS_HELD);
    f = feed(&p, 9, "2/2", "v");
    cr_assert_eq(f.rc, PH_REPL_PARTS_HELD);
    cr_assert_eq(f.dropped, 2);
    /* not the next sequence: not a continuation */
    cr_assert_eq(feed(&p, 10, "1/2", "w").rc, PH_REPL_PARTS_HELD);
    f = feed(&p, 12, "2/2", "x");
    cr_assert_eq(f.rc, PH_REPL_PARTS_HELD);
    cr_assert_eq(f.dropped, 2);
    ph_repl_parts_clear(&p);
}

Test(repl_parts, a_malformed_part_header_is_refused)
{
    ph_repl_parts p = {0};
    const char *bad[] = {"", "1", "1/1", "0/2", "3/2", "a/2", "1/2x", "-1/2", "1/-2", " 1/2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(feed(&p, 1, bad[i], "z").rc, PH_EINVAL, "accepted \"%s\"", bad[i]);
    ph_repl_parts_clear(&p);
}

/* ---- --check-store invariants 36 and 37 (docs/store.md, "Invariants") ---------------- */

/* Three markers through the fake stream: repl_seq 3, the last marker after 2. */
static void three_markers(void)
{
    open_hooked();
    for (int i = 0; i < 3; i++)
        cr_assert_eq(note("a"), PH_OK);
    cr_assert_eq(ph_store_repl_seq(g_s), 3);
    assert_check();
}

/* meta repl_seq set to value[0..len) (len 0: deleted), then the check's error. */
static void set_repl_seq(const void *value, size_t len, ph_err *err)
{
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "meta", 0);
    MDB_val k = {8, "repl_seq"}, v = {len, (void *)value};
    if (len)
        cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    else
        cr_assert_eq(mdb_del(txn, dbi, &k, NULL), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_store_stats st;
    cr_assert_neq(ph_store_check(g_s, &st, err), PH_OK, "the check passed");
}

Test(repl_store, invariant_36_repl_seq_missing_under_markers)
{
    three_markers();
    ph_err err = {0};
    set_repl_seq(NULL, 0, &err);
    cr_assert_str_eq(err.msg, "meta: no repl_seq, but 3 repl.leader markers among the events");
}

Test(repl_store, invariant_36_repl_seq_malformed)
{
    three_markers();
    ph_err err = {0};
    uint64_t zero = 0;
    set_repl_seq(&zero, sizeof zero, &err);
    cr_assert_str_eq(err.msg,
                     "meta: repl_seq is not a stream sequence (8 bytes, value 0 or malformed)");
    set_repl_seq("abc", 3, &err);
    cr_assert_str_eq(err.msg,
                     "meta: repl_seq is not a stream sequence (3 bytes, value 0 or malformed)");
}

Test(repl_store, invariant_36_a_single_node_store_has_no_repl_seq)
{
    g_s = open_at(g_dir, 0);
    assert_check();
    ph_err err = {0};
    uint64_t seq = 5;
    set_repl_seq(&seq, sizeof seq, &err);
    cr_assert_str_eq(err.msg, "meta: repl_seq 5, but no repl.leader marker among the events");
}

Test(repl_store, invariant_37_repl_seq_behind_the_last_marker)
{
    three_markers();
    ph_err err = {0};
    uint64_t seq = 2;
    set_repl_seq(&seq, sizeof seq, &err);
    cr_assert_str_eq(err.msg, "meta: repl_seq 2 is not past the last repl.leader marker's "
                              "after_seq 2 (event 3)");
}

Test(repl_store, invariant_37_markers_follow_one_another)
{
    open_hooked();
    cr_assert_eq(marker("a", 0), PH_OK);
    cr_assert_eq(marker("b", 1), PH_OK);
    assert_check();
    cr_assert_eq(marker("c", 1), PH_OK); /* a marker that did not follow the one before */
    ph_err err = {0};
    ph_store_stats st;
    cr_assert_neq(ph_store_check(g_s, &st, &err), PH_OK, "the check passed");
    cr_assert_str_eq(err.msg, "events: the repl.leader marker of event 3 follows stream sequence "
                              "1, not after the one of event 2 (1)");
}

/* ---- a NATS URL's credentials --------------------------------------------- */

/* NATS URLs may carry a user and password or a token (nats://user:pass@host,
 * nats://token@host): what a node says of its servers (the 503 of every
 * write while NATS is away, the start's refusal, the log) names the host
 * only (docs/design.md rule 3). Port 1 on loopback refuses at once: the
 * replicator starts not online, as without NATS. */
Test(repl_secrets, a_nats_url_password_or_token_is_never_said)
{
    const char *y = BASE "replication:\n  enabled: true\n  node_id: n1\n"
                         "  urls: [\"nats://alice:S3cretPass@127.0.0.1:1\", "
                         "\"nats://T0kenT0ken@127.0.0.1:2\"]\n"
                         "  advertise_url: http://10.0.0.1:8080\n  lease_ttl_ms: 2000\n";
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(y, strlen(y), "t.yaml", &cfg, &err), PH_OK, "%s", err.msg);
    FILE *logf = tmpfile();
    cr_assert(logf);
    ph_logger lg = {.level = PH_LOG_DEBUG, .fd = fileno(logf)};
    ph_repl_opts o = {.cfg = cfg, .log = &lg};
    ph_repl *r = NULL;
    cr_assert_eq(ph_repl_create(&o, &r, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_repl_online(r), 0);
    char said[3][1024];
    cr_assert_eq(ph_repl_needs_nats(r, &err), PH_EUNAVAIL);
    snprintf(said[0], sizeof said[0], "%s", err.msg);
    ph_cmd c = {.type = PH_CMD_NOTE_EVENT};
    uint64_t seq = 0;
    memset(&err, 0, sizeof err);
    cr_assert_eq(ph_repl_hook(r, &c, 0, &seq, &err), PH_EUNAVAIL);
    snprintf(said[1], sizeof said[1], "%s", err.msg);
    fflush(logf);
    rewind(logf);
    size_t n = fread(said[2], 1, sizeof said[2] - 1, logf);
    said[2][n] = 0;
    for (int i = 0; i < 3; i++) {
        cr_assert(strstr(said[i], "127.0.0.1:1"), "the server is named: %s", said[i]);
        cr_assert_null(strstr(said[i], "S3cretPass"), "a password said: %s", said[i]);
        cr_assert_null(strstr(said[i], "alice"), "a user said: %s", said[i]);
        cr_assert_null(strstr(said[i], "T0kenT0ken"), "a token said: %s", said[i]);
    }
    ph_repl_free(r);
    fclose(logf);
    ph_config_free(cfg);
}

/* ---- a stream's batch is a writer batch of its own -------------------------- */

/* The replicator applies a stream batch as one list (ph_cmd_batch_apply ->
 * ph_store_exec_list), and the hook passes it only when the writer's batch is
 * exactly that list. Writes submitted meanwhile on the node (a standby's
 * clients, refused there) must not join it: merged, the hook refuses the
 * whole batch, and a standby under a steady flow of such writes never applies
 * the stream. The hook here records each writer batch; the first one waits
 * until the queue holds: one write, a list of two, another write. */

typedef struct seen_batches {
    atomic_int gate; /* 1: the first batch may go on */
    atomic_int n;
    const ph_cmd *head[16];
    size_t len[16];
} seen_batches;

static seen_batches SB;

static int seeing_hook(void *arg, const ph_cmd *batch, uint64_t prev, uint64_t *seq, ph_err *err)
{
    (void)err;
    seen_batches *b = arg;
    int i = atomic_fetch_add(&b->n, 1);
    size_t len = 0;
    for (const ph_cmd *c = batch; c; c = c->next)
        len++;
    if (i < 16) {
        b->head[i] = batch;
        b->len[i] = len;
    }
    while (i == 0 && !atomic_load(&b->gate))
        sched_yield(); /* the test fills the queue meanwhile */
    *seq = prev + 1;
    return PH_OK;
}

static void *exec_first(void *arg)
{
    ph_cmd *c = arg;
    ph_store_exec(g_s, c);
    return NULL;
}

static atomic_int g_done;

static void count_done(ph_cmd *c)
{
    (void)c;
    atomic_fetch_add(&g_done, 1);
}

static void note_cmd(ph_cmd *c, const char *name)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_NOTE_EVENT;
    c->now = 1700000000000;
    c->in.note.name = name;
    c->in.note.fields = "{}";
}

Test(repl_store, a_list_is_a_writer_batch_of_its_own)
{
    memset(&SB, 0, sizeof SB);
    atomic_store(&g_done, 0);
    ph_store_opts o = {.dir = g_dir, .repl_hook = seeing_hook, .repl_arg = &SB};
    ph_err err = {0};
    cr_assert_eq(ph_store_open(&o, &g_s, &err), PH_OK, "%s", err.msg);
    ph_cmd first, before, list[2], after;
    note_cmd(&first, "repl.leader");
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, exec_first, &first), 0);
    while (atomic_load(&SB.n) < 1)
        sched_yield(); /* the writer holds the first batch in the hook */
    note_cmd(&before, "repl.leader");
    note_cmd(&list[0], "repl.leader");
    note_cmd(&list[1], "repl.leader");
    note_cmd(&after, "repl.leader");
    before.done = list[0].done = list[1].done = after.done = count_done;
    list[0].next = &list[1];
    cr_assert_eq(ph_store_submit(g_s, &before), PH_OK);
    cr_assert_eq(ph_store_submit_list(g_s, &list[0]), PH_OK);
    cr_assert_eq(ph_store_submit(g_s, &after), PH_OK);
    atomic_store(&SB.gate, 1);
    pthread_join(t, NULL);
    while (atomic_load(&g_done) < 4)
        sched_yield();
    cr_assert_eq(first.rc, PH_OK);
    int found = 0;
    for (int i = 0; i < atomic_load(&SB.n) && i < 16; i++) {
        if (SB.head[i] == &list[0])
            found = (int)SB.len[i];
        cr_assert(SB.head[i] != &before || SB.len[i] == 1,
                  "the write before the list took %zu commands with it", SB.len[i] - 1);
    }
    cr_assert_eq(found, 2, "the list was not a batch of its own (batches seen: %d)",
                 atomic_load(&SB.n));
    for (int i = 0; i < 2; i++)
        ph_cmd_clear(&list[i]);
    ph_cmd_clear(&before);
    ph_cmd_clear(&after);
    ph_cmd_clear(&first);
}
