#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int ph_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void ph_log_set_level(ph_logger *lg, int level)
{
    atomic_store_explicit(&lg->level, level, memory_order_relaxed);
}

int ph_log_enabled(const ph_logger *lg, int level)
{
    return lg && level >= atomic_load_explicit(&lg->level, memory_order_relaxed);
}

void ph_log(const ph_logger *lg, int level, const char *req, const char *msg, const char *fmt, ...)
{
    if (!ph_log_enabled(lg, level) || level < 0 || level > PH_LOG_ERROR)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level]);
    if (req && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - n, " req=%s", req);
    if (n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - n, " msg=%s", msg);
    if (fmt && n < (int)sizeof line - 1) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        n += vsnprintf(line + n, sizeof line - n, fmt, ap);
        va_end(ap);
    }
    if (n > (int)sizeof line - 2)
        n = sizeof line - 2;
    for (int i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    ssize_t w = write(lg->fd, line, (size_t)n);
    (void)w; /* a log line that cannot be written is dropped, never fatal */
}
