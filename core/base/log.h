/*
 * log.h — structured log lines, one per event, key=value after a fixed prefix:
 *
 *   ts=2026-11-24T19:42:00.123Z level=info req=7f3a01 msg=order.created order=12 sku=iqiyi.gold.1m
 *
 * Rule 3 of docs/design.md applies to every caller: never pass a card code, a
 * recharge account, a token or a key to these functions. Request bodies are
 * never logged.
 *
 * Every value is escaped by construction (a URL path such as
 * "/v1/x level=error msg=FORGED" must not read as fields): the tail is
 * formatted by ph_log's own formatter, which writes a %s or %c value bare only
 * when it is non-empty and all of [A-Za-z0-9] and - . _ : / @ + , and
 * otherwise quoted, "...", with '"' and '\' backslash-escaped and control and
 * non-ASCII bytes and '=' as \xNN (an empty value is ""), so "key=" occurs
 * in a line only where a format wrote it. A value inside quotes the
 * format writes itself (key=\"%s\") is escaped the same way, not quoted
 * twice. The format's literal text is trusted: write keys there, never data.
 * So a %s stands for one value: never build a tail (" reason=" fragments)
 * out of %s arguments. Numbers (%d %u %x %f %p with any length, width or
 * precision) are printed as printf would; a precision on %s cuts the value.
 *
 * log.format: json writes the same call as one JSON object per line instead:
 *
 *   {"time":"2026-11-24T19:42:00.123Z","level":"info","req":"7f3a01",
 *    "event":"order.created","order":12,"sku":"iqiyi.gold.1m"}
 *
 * (on one line). Each key=value of the format becomes a member: a value that
 * is exactly one %d %i %u (any length) or floating conversion is a JSON number
 * (a non-finite float is null); a field named like a member of the line
 * (time, level, req, event, truncated) is written "_level" and so on, so no
 * key occurs twice; anything else — %s, %x, %p, literal text, a
 * quoted value built from text and conversions — is a JSON string, escaped
 * (control bytes as \u00XX, bytes that are not UTF-8 as U+FFFD). A line over
 * 2048 bytes is cut between members or inside a string and ends with
 * "truncated":true, so it still parses. A tail preformatted by ph_log_format
 * (ph_log_tail) is read back member by member; its values are strings.
 *
 * The logger is owned by the daemon context (no global state); modules that log
 * receive a pointer to it. Thread-safe: each line is formatted into a private
 * buffer and written with one write(2), so lines from threads never interleave.
 */
#ifndef PH_LOG_H
#define PH_LOG_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>

#include "base/status.h"

enum ph_log_level { PH_LOG_DEBUG = 0, PH_LOG_INFO, PH_LOG_WARN, PH_LOG_ERROR };

/* level is atomic because a reload (main thread) changes it while every other
 * thread reads it; plain assignment and reads stay correct (seq_cst), the
 * helpers below say what the daemon needs (relaxed: a line logged just before
 * or after the change is fine either way). fd is set once before any thread
 * starts; its number never changes afterwards (ph_log_reopen puts another file
 * behind it with dup2). format and path are set once before threads start. */
typedef struct ph_logger {
    atomic_int level; /* lines below this level are dropped */
    int fd;           /* where lines go; 2 (stderr) by default */
    int format;       /* PH_LOG_FORMAT_*; 0 (text, key=value) by default */
    char *path;       /* log.file as opened (owned), or NULL: fd is not ours */
} ph_logger;

enum ph_log_format_kind { PH_LOG_FORMAT_TEXT = 0, PH_LOG_FORMAT_JSON };

/* Parses "text" or "json"; returns PH_LOG_FORMAT_* or -1. */
int ph_log_format_parse(const char *name);

/* Sends lines to the file at path from now on: opened for append, created
 * 0640 when missing. Before any other thread logs (it sets fd). Errors:
 * PH_EIO naming the file (lg unchanged), PH_ENOMEM. Undone by ph_log_close. */
int ph_log_open_file(ph_logger *lg, const char *path, ph_err *err);

/* Opens the path again and puts the new file behind the same descriptor
 * (logrotate renamed the old one): any thread may be logging meanwhile; each
 * line goes whole to one of the two files. Main thread (the signal loop), one
 * at a time. PH_OK without a file; PH_EIO naming the file when it cannot be
 * opened (lines keep going to the old one). */
int ph_log_reopen(ph_logger *lg, ph_err *err);

/* Closes the file of ph_log_open_file (lines go to stderr again); nothing
 * without one. After every other thread has stopped logging. */
void ph_log_close(ph_logger *lg);

/* Changes the level; any thread. */
void ph_log_set_level(ph_logger *lg, int level);

/* 1 when a line of this level would be written; any thread. */
int ph_log_enabled(const ph_logger *lg, int level);

/* Parses "debug", "info", "warn" or "error"; returns the level or -1. */
int ph_log_level_parse(const char *name);

/* Writes one line (at most 2048 bytes: longer ones are cut). `req` is the
 * request id or NULL; `msg` a short dotted event name (e.g. "http.request");
 * both are escaped like values. `fmt` formats the key=value tail (may be NULL)
 * as above; printf's types are checked at compile time, %n is not supported. */
void ph_log(const ph_logger *lg, int level, const char *req, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ph_log's formatter on its own, for a caller that builds a tail in parts (the
 * plugin host: the plugin's fields after the host's): into buf[0..cap), always
 * NUL-terminated when cap > 0, cut when it does not fit. Returns the length
 * the whole text would have (as snprintf). Pure; any thread. */
size_t ph_log_format(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t ph_log_vformat(char *buf, size_t cap, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* As ph_log with a tail already formatted by ph_log_format / ph_log_vformat
 * (never raw text: it is written as is). NULL or "" for none. */
void ph_log_tail(const ph_logger *lg, int level, const char *req, const char *msg,
                 const char *tail);

#endif
