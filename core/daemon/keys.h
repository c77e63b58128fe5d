/*
 * keys.h — key rotation on the daemon's side: `perkhubd keys ...` (keys_cmd.c)
 * and the background re-seal that moves data sealed with older keys to the
 * newest one while perkhubd runs (reseal.c). docs/operations.md, "Rotating
 * the master key", is the procedure; store.h, "key rotation", the store's part.
 */
#ifndef PH_DAEMON_KEYS_H
#define PH_DAEMON_KEYS_H

#include <stdio.h>

#include "daemon/daemon.h"

/* `perkhubd [-c FILE] keys create|add|list|retire ID`: argv[0] is the
 * subcommand. Works on the config's master_key_file and, for list and retire,
 * reads its data_dir (read-only: a running daemon may hold it). config_path
 * NULL: the embedded default. Writes the result to out, errors to errf (never
 * a key). Returns the exit status: 0, 1 refused or failed, 2 usage.
 * @note Main thread of a process that is not the daemon. */
int ph_keys_main(const char *config_path, int argc, char **argv, FILE *out, FILE *errf);

/* Starts the re-sealer thread (owned by d, in d->resealer): at once it drops
 * the check values of keys the key file no longer has (the open proved no
 * data needs them; audited as keys.retire), then counts what older keys
 * still seal and moves it to the newest key in paced batches of
 * PH_RESEAL_BATCH through the writer, publishing progress
 * (ph_store_reseal_status_set). Main thread, after the store opened. */
int ph_reseal_start(ph_daemon *d, ph_err *err);
/* Stops and joins it (its last command completes first). Main thread; no-op
 * when not started. */
void ph_reseal_stop(ph_daemon *d);

#define PH_RESEAL_BATCH 1000 /* items per command: a few dozen pages per commit */

#endif
