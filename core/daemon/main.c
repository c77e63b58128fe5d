/*
 * main.c — perkhubd's command line and signal loop. The only file that may end
 * the process: everything below it returns errors.
 *
 * Signals are blocked in every thread and taken synchronously here with
 * sigwait, so no handler ever runs in the middle of library code.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "notify/notify.h"
#include "base/version.h"
#include "config/config.h"
#include "crypto/wipe_alloc.h"
#include "daemon/daemon.h"
#include "daemon/keys.h"
#include "http/tls.h"
#include "supply/plugin_loader.h"
#include "supply/replenish.h"
#include "supply/suppliers.h"
#include "store/cmd_codec.h"
#include "store/store.h"

static void usage(FILE *f)
{
    fputs("usage: perkhubd [-c FILE]              run (embedded default config without -c)\n"
          "       perkhubd --check-config FILE    check a config file as a start would (the\n"
          "                                       YAML, each enabled supplier's plugin,\n"
          "                                       config and secrets) and exit: 0 ok, 1 not\n"
          "       perkhubd --check-store DIR [--key-file FILE]\n"
          "                                       check every invariant of a data directory,\n"
          "                                       read-only (a read-only directory too); with\n"
          "                                       the key file also every code and its index\n"
          "                                       entry; exit 1 when inconsistent or corrupted\n"
          "       perkhubd --print-default-config print the embedded default config\n"
          "       perkhubd --describe-plugin NAME [--plugin-dir DIR]\n"
          "                                       a plugin's capabilities and config keys\n"
          "       perkhubd --replay-journal FILE --data DIR [--key-file FILE]\n"
          "                                       apply a PERKHUB_JOURNAL file to a new store\n"
          "       perkhubd [-c FILE] keys create|add|list|retire ID\n"
          "                                       key rotation on master_key_file (and the\n"
          "                                       store, read-only): docs/operations.md\n"
          "       perkhubd --version | --help\n"
          "\n"
          "signals: SIGHUP reloads the config file (an invalid file changes nothing),\n"
          "         SIGTERM/SIGINT stop after in-flight requests finish,\n"
          "         SIGUSR1 reopens log.file (after logrotate renamed it),\n"
          "         SIGUSR2 is the daemon's own (harmless if sent from outside).\n",
          f);
}

/* One problem of a supplier, on stderr (the YAML's error goes there too). */
static void print_problem(void *arg, const ph_supplier_conf *sc, const char *problem)
{
    (void)sc;
    size_t *n = arg;
    (*n)++;
    fprintf(stderr, "%s\n", problem);
}

/* The replenish rules' suppliers, once their plugins are loaded. */
typedef struct rule_check {
    const ph_config *cfg;
    size_t problems;
} rule_check;

static void print_rule_problem(void *arg, const char *problem)
{
    (void)arg;
    fprintf(stderr, "%s\n", problem);
}

static void check_rules(void *arg, ph_suppliers *set)
{
    rule_check *rc = arg;
    rc->problems += ph_replenish_check_plugins(rc->cfg, set, print_rule_problem, NULL);
}

/* --check-config: what a start would do with the file, short of opening the
 * store and the listener: the YAML validated whole (its first error), then
 * every enabled supplier started and stopped again through the supplier set's
 * own apply (plugin loaded, its config checked against the plugin's schema,
 * every secret resolved, init run), naming every problem. Exit 0 only when
 * nothing is wrong; 1 when start would refuse (the YAML, or a required
 * supplier) or would run with a supplier in state error. */
static int check_config(const char *path)
{
    ph_config *cfg;
    ph_err err = {0};
    if (ph_config_load_file(path, &cfg, &err) != PH_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    ph_tls_files tls; /* as start reads them: PEM, the key the certificate's */
    if (cfg->tls_cert &&
        ph_tls_files_read(cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, &tls, &err) != PH_OK) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        ph_config_free(cfg);
        return 1;
    }
    if (cfg->tls_cert)
        ph_tls_files_clear(&tls);
    if (ph_notify_check(cfg, &err) != PH_OK) { /* webhooks: event types, secrets */
        fprintf(stderr, "%s\n", err.msg);
        ph_config_free(cfg);
        return 1;
    }
    ph_logger lg = {.fd = 2};
    ph_log_set_level(&lg, PH_LOG_ERROR); /* the plugins' own complaints, not our info lines */
    size_t problems = 0, failed = 0;
    rule_check rules = {cfg, 0};
    int rc = ph_suppliers_check_with(cfg, &lg, print_problem, &problems, &failed, check_rules,
                                     &rules, &err);
    fflush(stdout);
    if (rc != PH_OK)
        fprintf(stderr, "%s: perkhubd would not start: %s\n", path, err.msg);
    else if (rules.problems)
        fprintf(stderr, "%s: %zu replenish rule%s cannot be carried out\n", path, rules.problems,
                rules.problems == 1 ? "" : "s");
    else if (failed)
        fprintf(stderr,
                "%s: %zu problem%s: perkhubd would start with %zu supplier%s in state error\n",
                path, problems, problems == 1 ? "" : "s", failed, failed == 1 ? "" : "s");
    else
        printf("%s: ok (%zu clients, %zu suppliers, %zu products)\n", path, cfg->nclients,
               cfg->nsuppliers, cfg->nproducts);
    ph_config_free(cfg);
    return rc == PH_OK && !failed && !rules.problems ? 0 : 1;
}

/* The check itself, in the child process check_store forks: opens the store
 * read-only, checks it, prints the verdict, and marks the progress finished.
 * Reads only: a mistyped path must fail ("no store at PATH"), not check a new
 * empty store it created. Returns the exit status. */
static int check_store_child(const char *dir, const char *key_file, ph_check_progress *prog)
{
    ph_store *s;
    ph_store_stats st;
    ph_err err = {0};
    ph_keyring *kr = NULL;
    if (key_file && ph_keyring_load(key_file, 0, &kr, &err) != PH_OK) {
        fprintf(stderr, "perkhubd: %s\n", err.msg);
        prog->finished = 1;
        return 1;
    }
    snprintf(prog->stage, sizeof prog->stage, "opening the environment");
    ph_store_opts o = {.dir = dir, .keys = kr, .read_only = 1};
    if (ph_store_open(&o, &s, &err) != PH_OK) {
        fprintf(stderr, "%s: cannot open the store: %s\n", dir, err.msg);
        ph_keyring_free(kr);
        prog->finished = 1;
        return 1;
    }
    if (ph_store_lockless(s))
        fprintf(stderr,
                "%s: read-only directory: opened without LMDB's lock file; the check is "
                "right only while no perkhubd writes to it\n",
                dir);
    int rc = ph_store_check_watched(s, &st, prog, &err);
    if (rc != PH_OK) {
        fprintf(stderr, "%s: %s: %s\n", dir,
                strncmp(err.msg, "corrupted: ", 11) == 0 ? "CORRUPTED" : "INCONSISTENT",
                strncmp(err.msg, "corrupted: ", 11) == 0 ? err.msg + 11 : err.msg);
    } else {
        printf("%s: ok: %llu codes, %llu orders, %llu events\n", dir, (unsigned long long)st.codes,
               (unsigned long long)st.orders, (unsigned long long)st.last_event);
        for (size_t i = 0; i < st.nskus; i++)
            printf("  %s: imported %llu = available %llu + issued %llu + redeemed %llu + voided "
                   "%llu + expired %llu\n",
                   st.skus[i].sku, (unsigned long long)st.skus[i].imported,
                   (unsigned long long)st.skus[i].by_state[PH_CODE_AVAILABLE],
                   (unsigned long long)st.skus[i].by_state[PH_CODE_ISSUED],
                   (unsigned long long)st.skus[i].by_state[PH_CODE_REDEEMED],
                   (unsigned long long)st.skus[i].by_state[PH_CODE_VOIDED],
                   (unsigned long long)st.skus[i].by_state[PH_CODE_EXPIRED]);
        if (!kr)
            printf("  (codes not unsealed and index not verified: add --key-file FILE)\n");
        ph_store_stats_clear(&st);
    }
    ph_store_close(s);
    ph_keyring_free(kr);
    fflush(stdout);
    fflush(stderr);
    prog->finished = 1;
    return rc == PH_OK ? 0 : 1;
}

/* --check-store: the check runs in a child process, so that a damaged file
 * that makes LMDB assert (abort) or read through a bad pointer ends the child,
 * not the checker; the parent then says where the child had got to (the
 * progress it left in shared memory). Exit 0 ok, 1 inconsistent, corrupted or
 * not checkable; never a signal. The child dumps no core: it held the keys. */
static int check_store(const char *dir, const char *key_file)
{
    ph_check_progress *prog =
        mmap(NULL, sizeof *prog, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (prog == MAP_FAILED) {
        fprintf(stderr, "perkhubd: --check-store: cannot map shared memory: %s\n", strerror(errno));
        return 1;
    }
    memset(prog, 0, sizeof *prog);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "perkhubd: --check-store: cannot fork: %s\n", strerror(errno));
        munmap(prog, sizeof *prog);
        return 1;
    }
    if (pid == 0) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        _exit(check_store_child(dir, key_file, prog));
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (!prog->finished) {
        char how[64];
        prog->stage[sizeof prog->stage - 1] = prog->db[sizeof prog->db - 1] = 0; /* cut mid-write */
        if (WIFSIGNALED(status))
            snprintf(how, sizeof how, "stopped by signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        else
            snprintf(how, sizeof how, "stopped with exit status %d", rc);
        char key[64] = "";
        if (prog->db[0] && prog->key)
            snprintf(key, sizeof key, ", after key %llu", (unsigned long long)prog->key);
        else if (prog->db[0])
            snprintf(key, sizeof key, ", after %llu entries", (unsigned long long)prog->read);
        fprintf(stderr, "%s: CORRUPTED: the check was %s at: %s%s%s%s (LMDB met a damaged page)\n",
                dir, how, prog->stage[0] ? prog->stage : "starting",
                prog->db[0] ? ", sub-database " : "", prog->db, key);
        rc = 1;
    }
    munmap(prog, sizeof *prog);
    return rc ? 1 : 0;
}

/* Applies a journal recorded with PERKHUB_JOURNAL=FILE to a new store in dir
 * (docs/store.md, "Journal and replay"). */
static int replay_journal(const char *file, const char *dir, const char *key_file)
{
    if (!dir) {
        fprintf(stderr, "perkhubd: --replay-journal needs --data DIR\n");
        return 2;
    }
    ph_replay_stats st;
    ph_err err = {0};
    ph_keyring *kr = NULL;
    if (key_file && ph_keyring_load(key_file, 0, &kr, &err) != PH_OK) {
        fprintf(stderr, "perkhubd: %s\n", err.msg);
        return 1;
    }
    int rc = ph_journal_replay(file, dir, kr, &st, &err);
    ph_keyring_free(kr);
    if (rc != PH_OK) {
        fprintf(stderr, "perkhubd: %s\n", err.msg);
        return 1;
    }
    printf("%s: replayed %llu batches, %llu commands into %s\n", file,
           (unsigned long long)st.batches, (unsigned long long)st.commands, dir);
    return 0;
}

/* For ops writing a supplier's config: what the plugin offers and takes. */
static int describe_plugin(const char *dir, const char *name)
{
    ph_plugin *p;
    ph_err err = {0};
    if (ph_plugin_open(dir, name, &p, &err) != PH_OK) {
        fprintf(stderr, "perkhubd: %s\n", err.msg);
        return 1;
    }
    int rc = ph_plugin_describe(p, stdout);
    ph_plugin_close(p);
    return rc == PH_OK ? 0 : 1;
}

/* A leader that lost its lease starts again as a standby (daemon.h,
 * ph_daemon_deposed): everything stopped (its exchanges end as the store
 * says, its queued writes are refused), the configuration read again. 0, or
 * 1 when it cannot start again (said on stderr). */
static int restart_deposed(ph_daemon *d, const char *path)
{
    ph_log(&d->log, PH_LOG_WARN, NULL, "repl.deposed",
           "effect=\"this node lost the lease: it restarts as a standby\"");
    const char *journal = d->journal_file;
    ph_daemon_stop(d, 2000);
    ph_config *cfg;
    ph_err err = {0};
    int rc = path
                 ? ph_config_load_file(path, &cfg, &err)
                 : ph_config_load_string(ph_config_default_yaml(), strlen(ph_config_default_yaml()),
                                         "<embedded>", &cfg, &err);
    memset(d, 0, sizeof *d);
    d->journal_file = journal;
    if (rc == PH_OK)
        rc = ph_daemon_start(d, cfg, path, &err);
    if (rc != PH_OK)
        fprintf(stderr, "perkhubd: %s\n", err.msg);
    return rc == PH_OK ? 0 : 1;
}

static int run(const char *path)
{
    ph_config *cfg;
    ph_err err = {0};
    int rc = path
                 ? ph_config_load_file(path, &cfg, &err)
                 : ph_config_load_string(ph_config_default_yaml(), strlen(ph_config_default_yaml()),
                                         "<embedded>", &cfg, &err);
    if (rc != PH_OK) {
        fprintf(stderr, "perkhubd: %s\n", err.msg);
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);        /* reopen log.file (logrotate) */
    sigaddset(&set, PH_SIGNAL_WAKE); /* the daemon's own wake: a plugin to stop here (reaper) */
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread exists: all inherit it */
    signal(SIGPIPE, SIG_IGN);

    ph_daemon d = {0};
    /* a test and debugging hook, not a setting: every committed batch to a file */
    d.journal_file = getenv("PERKHUB_JOURNAL");
    if (d.journal_file && !*d.journal_file)
        d.journal_file = NULL;
    if (ph_daemon_start(&d, cfg, path, &err) != PH_OK) {
        fprintf(stderr, "perkhubd: %s\n", err.msg);
        return 1;
    }
    for (;;) {
        int sig = 0;
        sigwait(&set, &sig);
        if (sig == PH_SIGNAL_WAKE) {
            ph_daemon_reap(&d); /* plugins' shutdown and dlclose run on this thread only */
            if (ph_daemon_deposed(&d) && restart_deposed(&d, path) != 0)
                return 1;
            continue;
        }
        if (sig == SIGUSR1) {
            ph_daemon_reopen_log(&d);
            continue;
        }
        if (sig == SIGHUP) {
            if (ph_daemon_reload(&d, &err) != PH_OK)
                ph_log(&d.log, PH_LOG_ERROR, NULL, "config.reload_failed",
                       "detail=\"%s\" effect=\"the running configuration stays in force\"",
                       err.msg);
            continue;
        }
        ph_log(&d.log, PH_LOG_INFO, NULL, "daemon.signal", "signal=%s",
               sig == SIGTERM ? "TERM" : "INT");
        break;
    }
    ph_daemon_stop(&d, 30000);
    fprintf(stderr, "perkhubd: stopped\n");
    return 0;
}

int main(int argc, char **argv)
{
    ph_json_alloc_install(); /* before any jansson call: its freed blocks are wiped */
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", required_argument, NULL, 'C'},
        {"check-store", required_argument, NULL, 'S'},
        {"key-file", required_argument, NULL, 'K'},
        {"print-default-config", no_argument, NULL, 'P'},
        {"describe-plugin", required_argument, NULL, 'D'},
        {"plugin-dir", required_argument, NULL, 'L'},
        {"replay-journal", required_argument, NULL, 'R'},
        {"data", required_argument, NULL, 'd'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *describe = NULL, *plugin_dir = "build/plugins";
    const char *store_dir = NULL, *key_file = NULL;
    const char *replay = NULL, *data = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'C':
            return check_config(optarg);
        case 'S':
            store_dir = optarg;
            break;
        case 'K':
            key_file = optarg;
            break;
        case 'D':
            describe = optarg;
            break;
        case 'L':
            plugin_dir = optarg;
            break;
        case 'R':
            replay = optarg;
            break;
        case 'd':
            data = optarg;
            break;
        case 'P':
            fputs(ph_config_default_yaml(), stdout);
            return 0;
        case 'V':
            puts("perkhubd " PH_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc && strcmp(argv[optind], "keys") == 0) /* key rotation (daemon/keys.h) */
        return ph_keys_main(path, argc - optind - 1, argv + optind + 1, stdout, stderr);
    if (optind < argc) {
        fprintf(stderr, "perkhubd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (key_file && !store_dir && !replay) {
        fprintf(stderr, "perkhubd: --key-file goes with --check-store or --replay-journal\n");
        return 2;
    }
    if (store_dir)
        return check_store(store_dir, key_file);
    if (describe)
        return describe_plugin(plugin_dir, describe);
    if (replay)
        return replay_journal(replay, data, key_file);
    if (data) {
        fprintf(stderr, "perkhubd: --data goes with --replay-journal\n");
        return 2;
    }
    return run(path);
}
