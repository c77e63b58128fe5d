/*
 * daemon.c — starting, reloading and stopping everything the context owns.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/http_api.h"
#include "supply/fulfil.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"
#include "base/util.h"
#include "http/views.h"

ph_cfg_ref *ph_daemon_cfg_acquire(ph_daemon *d)
{
    pthread_mutex_lock(&d->cfg_mu);
    ph_cfg_ref *ref = d->cfg;
    atomic_fetch_add(&ref->refs, 1);
    pthread_mutex_unlock(&d->cfg_mu);
    return ref;
}

void ph_daemon_cfg_release(ph_cfg_ref *ref)
{
    if (ref && atomic_fetch_sub(&ref->refs, 1) == 1) {
        ph_config_free(ref->cfg);
        free(ref);
    }
}

/* Replaces the current snapshot; requests holding the old one finish with it. */
static int cfg_install(ph_daemon *d, ph_config *cfg)
{
    ph_cfg_ref *ref = calloc(1, sizeof *ref);
    if (!ref)
        return PH_ENOMEM;
    ref->cfg = cfg;
    atomic_init(&ref->refs, 1);
    pthread_mutex_lock(&d->cfg_mu);
    ph_cfg_ref *old = d->cfg;
    d->cfg = ref;
    pthread_mutex_unlock(&d->cfg_mu);
    ph_daemon_cfg_release(old);
    ph_log_set_level(&d->log, cfg->log_level); /* read by every thread */
    return PH_OK;
}

int ph_daemon_sync_products(ph_daemon *d, const ph_config *cfg, ph_err *err)
{
    char **json = calloc(cfg->nproducts + 1, sizeof *json);
    if (!json)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    int rc = PH_OK;
    for (size_t i = 0; i < cfg->nproducts && rc == PH_OK; i++) {
        json_t *p = ph_view_product_stored(&cfg->products[i]);
        if (!p || !(json[i] = json_dumps(p, JSON_COMPACT)))
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
        json_decref(p);
    }
    if (rc == PH_OK) {
        ph_cmd cmd = {.type = PH_CMD_PUT_PRODUCTS, .now = ph_now_ms()};
        cmd.in.products.json = (const char *const *)json;
        cmd.in.products.n = cfg->nproducts;
        if ((rc = ph_store_exec(d->store, &cmd)) != PH_OK && err)
            *err = cmd.err;
        ph_cmd_clear(&cmd);
    }
    for (size_t i = 0; i < cfg->nproducts; i++)
        free(json[i]);
    free(json);
    return rc;
}

/* Writes the bound port for whoever started us on port 0 (tests, scripts):
 * to a temporary name first, so a reader never sees a half-written file. */
static int write_port_file(const char *path, uint16_t port, ph_err *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        return ph_err_set(err, PH_EIO, "listen.port_file: cannot write %s: %s", path,
                          strerror(errno));
    return PH_OK;
}

static const ph_config *fulfil_cfg_acquire(void *ctx, void **ref)
{
    ph_cfg_ref *r = ph_daemon_cfg_acquire(ctx);
    *ref = r;
    return r->cfg;
}

static void fulfil_cfg_release(void *ref)
{
    ph_daemon_cfg_release(ref);
}

/* The supplier I/O engine and the fulfilment of supplier orders. */
static int start_supply(ph_daemon *d, ph_err *err)
{
    ph_sio_opts so = {.log = &d->log};
    int rc = ph_sio_create(&so, &d->sio, err);
    if (rc)
        return rc;
    ph_fulfil_opts fo = {.store = d->store,
                         .sio = d->sio,
                         .suppliers = d->suppliers,
                         .keys = d->keys,
                         .log = &d->log,
                         .cfg = {d, fulfil_cfg_acquire, fulfil_cfg_release}};
    return ph_fulfil_create(&fo, &d->fulfil, err);
}

/* A supplier's last reference went on another thread: the main thread
 * (sigwait in main.c) stops it. Any thread, no lock held. */
static void wake_main(void *arg)
{
    ph_daemon *d = arg;
    pthread_kill(d->main_thread, SIGUSR1);
}

void ph_daemon_reap(ph_daemon *d)
{
    if (d->suppliers)
        ph_suppliers_reap(d->suppliers);
}

/* Where suppliers send callbacks: public_url, else our own listener. */
static void set_callback_base(ph_daemon *d, const ph_config *cfg)
{
    char base[256];
    if (cfg->public_url)
        snprintf(base, sizeof base, "%s", cfg->public_url);
    else
        snprintf(base, sizeof base, "http://%s:%u", cfg->listen_address, d->port);
    size_t n = strlen(base);
    if (n && base[n - 1] == '/')
        base[n - 1] = 0;
    ph_fulfil_set_callback_base(d->fulfil, base);
}

int ph_daemon_start(ph_daemon *d, ph_config *cfg, const char *config_path, ph_err *err)
{
    pthread_mutex_init(&d->cfg_mu, NULL);
    d->main_thread = pthread_self();
    d->log.fd = 2;
    if (config_path && !(d->config_path = strdup(config_path))) {
        ph_config_free(cfg);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    if (cfg_install(d, cfg) != PH_OK) {
        ph_config_free(cfg);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    ph_random_bytes(&d->reqid_prefix, sizeof d->reqid_prefix);
    ph_store_opts so = {.dir = cfg->data_dir, .map_size = cfg->map_size};
    int rc;
    if ((rc = ph_keyring_load(cfg->master_key_file, cfg->master_key_create, &d->keys, err)) ||
        (rc = ph_store_open(&so, &d->store, err)) || (rc = ph_daemon_sync_products(d, cfg, err)) ||
        (rc = ph_suppliers_create(&d->log, &d->suppliers, err)) ||
        (rc = ph_suppliers_apply(d->suppliers, cfg, err)) || (rc = start_supply(d, err)) ||
        (rc = ph_http_start(d, cfg->listen_address, cfg->port, cfg->http_threads, &d->http,
                            &d->port, err)))
        goto fail;
    ph_suppliers_set_wake(d->suppliers, wake_main, d); /* earlier releases: the next wake */
    set_callback_base(d, cfg);
    if ((rc = ph_fulfil_resume(d->fulfil, err)) ||
        (cfg->port_file && (rc = write_port_file(cfg->port_file, d->port, err))))
        goto fail;
    atomic_store(&d->ready, 1);
    ph_log(&d->log, PH_LOG_INFO, NULL, "daemon.started",
           "pid=%d listen=%s:%u data_dir=%s config=%s products=%zu suppliers=%zu", (int)getpid(),
           cfg->listen_address, d->port, cfg->data_dir, cfg->source, cfg->nproducts,
           cfg->nsuppliers);
    return PH_OK;
fail:
    ph_daemon_stop(d, 0);
    return rc;
}

/* Settings the running daemon cannot change; a reload keeps the old value. */
static void warn_restart_needed(ph_daemon *d, const ph_config *old, const ph_config *neu)
{
    const char *what = NULL;
    if (strcmp(old->listen_address, neu->listen_address) || old->port != neu->port)
        what = "listen";
    else if (strcmp(old->data_dir, neu->data_dir))
        what = "data_dir";
    else if (strcmp(old->master_key_file, neu->master_key_file))
        what = "master_key_file";
    if (what)
        ph_log(&d->log, PH_LOG_WARN, NULL, "config.restart_needed",
               "setting=%s detail=\"changed in the file; the running value stays until restart\"",
               what);
}

int ph_daemon_reload(ph_daemon *d, ph_err *err)
{
    if (!d->config_path)
        return ph_err_set(err, PH_EINVAL, "running on the embedded default: no file to reload");
    ph_config *neu;
    int rc = ph_config_load_file(d->config_path, &neu, err);
    if (rc)
        return rc;
    ph_cfg_ref *old = ph_daemon_cfg_acquire(d);
    warn_restart_needed(d, old->cfg, neu);
    if ((rc = ph_suppliers_apply(d->suppliers, neu, err)) != PH_OK)
        goto fail;
    if ((rc = ph_daemon_sync_products(d, neu, err)) != PH_OK) {
        ph_err ignored;
        ph_suppliers_apply(d->suppliers, old->cfg, &ignored); /* back to the running set */
        goto fail;
    }
    ph_daemon_cfg_release(old);
    if (neu->public_url)
        set_callback_base(d, neu);
    if (cfg_install(d, neu) != PH_OK) {
        ph_config_free(neu);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    ph_log(&d->log, PH_LOG_INFO, NULL, "config.reloaded", "config=%s", d->config_path);
    return PH_OK;
fail:
    ph_daemon_cfg_release(old);
    ph_config_free(neu);
    return rc;
}

void ph_daemon_stop(ph_daemon *d, int grace_ms)
{
    atomic_store(&d->ready, 0);
    if (d->http) {
        ph_http_quiesce(d->http);
        ph_fulfil_stop(d->fulfil); /* clients waiting for an order get its state now */
        int64_t deadline = ph_now_ms() + grace_ms;
        while (ph_http_inflight(d->http) > 0 && ph_now_ms() < deadline)
            usleep(10 * 1000); /* a bounded wait for requests to finish, not a test sleep */
        ph_log(&d->log, PH_LOG_INFO, NULL, "daemon.stopping", "unfinished_requests=%d",
               ph_http_inflight(d->http));
        ph_http_stop(d->http);
        d->http = NULL;
    }
    ph_fulfil_stop(d->fulfil);
    /* Exchanges on the wire end ambiguous and are recorded unknown (queried
     * after the restart); then the writer finishes every queued command. */
    ph_sio_destroy(d->sio);
    d->sio = NULL;
    ph_fulfil_flush(d->fulfil); /* those ends become store commands before the store closes */
    ph_store_close(d->store);
    d->store = NULL;
    ph_fulfil_destroy(d->fulfil);
    d->fulfil = NULL;
    ph_suppliers_destroy(d->suppliers);
    d->suppliers = NULL;
    ph_keyring_free(d->keys);
    d->keys = NULL;
    ph_daemon_cfg_release(d->cfg);
    d->cfg = NULL;
    free(d->config_path);
    d->config_path = NULL;
    pthread_mutex_destroy(&d->cfg_mu);
}
