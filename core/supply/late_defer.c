/*
 * late_defer.c — late re-queries waiting out a backoff (late_defer.h).
 */
#include "supply/late_defer.h"

#include <stdlib.h>
#include <string.h>

void ph_late_defer_init(ph_late_defer *d, size_t max)
{
    memset(d, 0, sizeof *d);
    d->max = max ? max : PH_LATE_DEFER_MAX;
}

void ph_late_defer_free(ph_late_defer *d)
{
    free(d->v);
    memset(d, 0, sizeof *d);
}

static int cmp(const ph_late_deferred *a, const ph_late_check *b)
{
    if (a->order_id != b->order_id)
        return a->order_id < b->order_id ? -1 : 1;
    if (a->no != b->no)
        return a->no < b->no ? -1 : 1;
    return (a->due > b->due) - (a->due < b->due);
}

/* The first index whose entry is not below lc. */
static size_t lower(const ph_late_defer *d, const ph_late_check *lc)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp(&d->v[mid], lc) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const ph_late_deferred *ph_late_defer_find(const ph_late_defer *d, const ph_late_check *lc)
{
    size_t i = lower(d, lc);
    return i < d->n && !cmp(&d->v[i], lc) ? &d->v[i] : NULL;
}

static void remove_at(ph_late_defer *d, size_t i)
{
    memmove(&d->v[i], &d->v[i + 1], (d->n - i - 1) * sizeof *d->v);
    d->n--;
}

void ph_late_defer_done(ph_late_defer *d, const ph_late_check *lc)
{
    size_t i = lower(d, lc);
    if (i < d->n && !cmp(&d->v[i], lc))
        remove_at(d, i);
}

int ph_late_defer_failed(ph_late_defer *d, const ph_late_check *lc, int64_t now)
{
    size_t i = lower(d, lc);
    if (i >= d->n || cmp(&d->v[i], lc)) {
        if (d->n == d->max) { /* full: forget the one due back soonest */
            size_t soon = 0;
            for (size_t j = 1; j < d->n; j++)
                if (d->v[j].retry_at < d->v[soon].retry_at)
                    soon = j;
            remove_at(d, soon);
            i = lower(d, lc);
        }
        if (d->n == d->cap) {
            size_t cap = d->cap ? d->cap * 2 : 64;
            ph_late_deferred *g = realloc(d->v, cap * sizeof *g);
            if (!g)
                return 0;
            d->v = g;
            d->cap = cap;
        }
        memmove(&d->v[i + 1], &d->v[i], (d->n - i) * sizeof *d->v);
        d->v[i] = (ph_late_deferred){lc->order_id, lc->no, 0, lc->due, 0};
        d->n++;
    }
    ph_late_deferred *e = &d->v[i];
    int64_t wait = PH_LATE_DEFER_BASE_MS;
    for (uint32_t k = 0; k < e->failures && wait < PH_LATE_DEFER_CAP_MS; k++)
        wait *= 2;
    if (wait > PH_LATE_DEFER_CAP_MS)
        wait = PH_LATE_DEFER_CAP_MS;
    if (e->failures < UINT32_MAX)
        e->failures++;
    e->retry_at = now + wait;
    return 1;
}

typedef struct skip_arg {
    const ph_late_defer *d;
    int64_t now;
} skip_arg;

static int skip(void *arg, const ph_late_check *lc)
{
    const skip_arg *a = arg;
    const ph_late_deferred *e = ph_late_defer_find(a->d, lc);
    return e && e->retry_at > a->now;
}

size_t ph_late_defer_pick(ph_late_defer *d, ph_store *s, int64_t now, ph_late_check *out,
                          size_t max, int64_t *next)
{
    skip_arg a = {d, now};
    size_t n = ph_store_late_due_skip(s, now, skip, &a, out, max, next);
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].retry_at > now && (!*next || d->v[i].retry_at < *next))
            *next = d->v[i].retry_at;
    return n;
}
