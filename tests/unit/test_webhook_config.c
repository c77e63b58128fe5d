/*
 * test_webhook_config.c — clients[].webhooks and webhooks: (config.c), and
 * what only the delivery module checks (notify.h, ph_notify_check): every
 * refusal names file:line:column and never quotes a secret or a URL.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "notify/notify.h"

static const char *head = "data_dir: /tmp/x\nmaster_key_file: /tmp/k\n"
                          "clients:\n"
                          "  - name: mall\n"
                          "    token_sha256: "
                          "0000000000000000000000000000000000000000000000000000000000000001\n"
                          "    scopes: [fulfill]\n"
                          "    webhooks:\n";

static int load(const char *hooks, const char *tail, ph_config **cfg, ph_err *err)
{
    char yaml[4096];
    snprintf(yaml, sizeof yaml, "%s%s%s", head, hooks, tail ? tail : "");
    return ph_config_load_string(yaml, strlen(yaml), "wh.yaml", cfg, err);
}

Test(webhook_config, endpoints_and_settings_parse_with_defaults)
{
    setenv("PH_TEST_WH_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(load("      - id: hook1\n        url: https://mall.example/hook\n"
                      "        secrets: [env:PH_TEST_WH_SECRET, env:PH_TEST_WH_SECRET]\n"
                      "        events: [\"order.*\", stock.low]\n",
                      NULL, &cfg, &err),
                 PH_OK, "%s", err.msg);
    const ph_webhook_conf *w = &cfg->clients[0].webhooks[0];
    cr_assert_str_eq(w->id, "hook1");
    cr_assert_eq(w->nsecrets, 2);
    cr_assert_eq(w->nevents, 2);
    cr_assert_eq(w->enabled, 1);
    cr_assert_eq(w->event_mark[1].line, 11);
    cr_assert_eq(cfg->webhook_retry_for_s, 259200);
    cr_assert_eq(cfg->webhook_timeout_ms, 5000);
    cr_assert_eq(cfg->webhook_max_in_flight, 32);
    cr_assert_eq(cfg->webhook_peak_rate, 1000, "deliveries wait for orders at peak by default");
    cr_assert_eq(ph_notify_check(cfg, &err), PH_OK, "%s", err.msg);
    ph_config_free(cfg);
}

static void refused_at_load(const char *hooks, const char *expect)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(load(hooks, NULL, &cfg, &err), PH_EINVAL, "accepted: %s", hooks);
    cr_assert(strstr(err.msg, "wh.yaml:") && strstr(err.msg, expect), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "pw1"), "a URL's credentials quoted: %s", err.msg);
}

Test(webhook_config, bad_endpoints_are_refused_with_their_position)
{
    refused_at_load("      - id: h\n        url: ftp://u:pw1@host/x\n        secrets: [env:A]\n"
                    "        events: [\"order.*\"]\n",
                    "wh.yaml:9:14: clients[0].webhooks[0].url: expected an http:// or https:// "
                    "URL with a host, got scheme \"ftp\"");
    refused_at_load("      - id: h\n        url: http://\n        secrets: [env:A]\n"
                    "        events: [\"order.*\"]\n",
                    "got no host");
    refused_at_load(
        "      - id: h\n        url: http://h/\n        secrets: [env:A, env:B, env:C]\n"
        "        events: [\"order.*\"]\n",
        "expected 1 or 2 secret references");
    refused_at_load("      - id: h\n        url: http://h/\n        secrets: [env:A]\n", "events");
    refused_at_load("      - id: h\n        url: http://h/\n        secrets: [env:A]\n"
                    "        events: [\"order.*\"]\n"
                    "      - id: h\n        url: http://h/\n        secrets: [env:A]\n"
                    "        events: [\"order.*\"]\n",
                    "duplicate webhook id");
}

Test(webhook_config, a_duplicate_id_across_clients_is_refused)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    const char *other =
        "  - name: other\n"
        "    token_sha256: "
        "0000000000000000000000000000000000000000000000000000000000000002\n"
        "    scopes: [fulfill]\n"
        "    webhooks:\n"
        "      - {id: h, url: \"http://h/\", secrets: [env:A], events: [order.failed]}\n";
    cr_assert_eq(
        load("      - {id: h, url: \"http://h/\", secrets: [env:A], events: [order.failed]}\n",
             other, &cfg, &err),
        PH_EINVAL);
    cr_assert(
        strstr(err.msg, "clients[1].webhooks[0].id: duplicate webhook id \"h\", first at 8:9"),
        "%s", err.msg);
}

Test(webhook_config, notify_check_names_unknown_events_and_unresolved_secrets)
{
    unsetenv("PH_TEST_WH_UNSET");
    setenv("PH_TEST_WH_SECRET", "s3cret-raw", 1);
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(
        load("      - id: h\n        url: http://h/\n        secrets: [env:PH_TEST_WH_SECRET]\n"
             "        events: [order.failed, supplier.auth_failed]\n",
             NULL, &cfg, &err),
        PH_OK, "%s", err.msg);
    cr_assert_eq(ph_notify_check(cfg, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "wh.yaml:11:32: clients[0].webhooks[0].events[1]: expected an event "
                              "type"),
              "%s", err.msg);
    ph_config_free(cfg);
    cr_assert_eq(load("      - id: h\n        url: http://h/\n"
                      "        secrets: [env:PH_TEST_WH_SECRET, env:PH_TEST_WH_UNSET]\n"
                      "        events: [order.failed]\n",
                      NULL, &cfg, &err),
                 PH_OK, "%s", err.msg);
    cr_assert_eq(ph_notify_check(cfg, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "wh.yaml:10:42: clients[0].webhooks[0].secrets[1]: secret "
                              "env:PH_TEST_WH_UNSET: the environment variable is not set"),
              "%s", err.msg);
    cr_assert_null(strstr(err.msg, "s3cret"), "%s", err.msg);
    ph_config_free(cfg);
}
