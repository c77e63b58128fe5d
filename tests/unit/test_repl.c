/*
 * test_repl.c — replication's pieces that need no NATS (issue 19,
 * docs/replication.md): the `replication:` section of the configuration, and
 * the store's one seam (ph_store_opts.repl_hook): every batch's stream
 * sequence in meta "repl_seq" in its own transaction, and a batch the hook
 * refuses is not committed, every command of it failing with the hook's
 * error. The NATS side is tests/e2e/test_repl.c.
 */
#include <stdatomic.h>
#include <string.h>

#include "config/config.h"
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

static int note(const char *node)
{
    char fields[64];
    snprintf(fields, sizeof fields, "{\"node\":\"%s\",\"after_seq\":0}", node);
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
