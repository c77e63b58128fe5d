/*
 * log.h — structured log lines, one per event, key=value after a fixed prefix:
 *
 *   ts=2026-11-24T19:42:00.123Z level=info req=7f3a01 msg=order.created order=12 sku=iqiyi.gold.1m
 *
 * Rule 3 of docs/design.md applies to every caller: never pass a card code, a
 * recharge account, a token or a key to these functions. Request bodies are
 * never logged.
 *
 * The logger is owned by the daemon context (no global state); modules that log
 * receive a pointer to it. Thread-safe: each line is formatted into a private
 * buffer and written with one write(2), so lines from threads never interleave.
 */
#ifndef PH_LOG_H
#define PH_LOG_H

#include <stdatomic.h>

enum ph_log_level { PH_LOG_DEBUG = 0, PH_LOG_INFO, PH_LOG_WARN, PH_LOG_ERROR };

/* level is atomic because a reload (main thread) changes it while every other
 * thread reads it; plain assignment and reads stay correct (seq_cst), the
 * helpers below say what the daemon needs (relaxed: a line logged just before
 * or after the change is fine either way). fd is set once before any thread
 * starts and only read afterwards. */
typedef struct ph_logger {
    atomic_int level; /* lines below this level are dropped */
    int fd;           /* where lines go; 2 (stderr) by default */
} ph_logger;

/* Changes the level; any thread. */
void ph_log_set_level(ph_logger *lg, int level);

/* 1 when a line of this level would be written; any thread. */
int ph_log_enabled(const ph_logger *lg, int level);

/* Parses "debug", "info", "warn" or "error"; returns the level or -1. */
int ph_log_level_parse(const char *name);

/* Writes one line. `req` is the request id or NULL; `msg` a short dotted event
 * name without spaces (e.g. "http.request"); `fmt` formats the key=value tail
 * (may be NULL). Newlines in the result are replaced so a line stays a line. */
void ph_log(const ph_logger *lg, int level, const char *req, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
