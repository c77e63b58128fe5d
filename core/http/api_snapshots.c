/*
 * api_snapshots.c — the snapshots this node holds (ops; repl/snap.h,
 * docs/replication.md "Snapshots"): GET /v1/snapshots lists them, newest
 * first; GET /v1/snapshots/latest sends the newest as it is on disk (an LMDB
 * file: what data.mdb of a new node is), streamed from the file by
 * libmicrohttpd, with its sequence in X-Perkhub-Repl-Seq. Taking one is the
 * job snapshots.take (POST /v1/jobs/snapshots.take/run, audited there).
 *
 * A snapshot holds the whole store, sealed as it is there (codes stay sealed
 * with the key file's keys): only the ops scope reaches it, and every
 * download is logged with its client.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "http/api.h"
#include "http/views.h"
#include "repl/snap.h"

static json_t *snap_view(const ph_snap_info *s)
{
    json_t *o = json_pack("{s:s, s:I, s:I}", "file", s->file, "repl_seq", (json_int_t)s->repl_seq,
                          "bytes", (json_int_t)s->bytes);
    if (o)
        ph_view_time(o, "taken_at", s->taken_at);
    return o;
}

int ph_api_snapshots(ph_req *r)
{
    if (!r->env->snaps)
        return ph_req_error(r, 503, "unavailable", "snapshots: not kept by this node");
    ph_snap_info *v;
    size_t n;
    ph_err err = {0};
    int rc = ph_snaps_list(r->env->snaps, &v, &n, &err);
    if (rc != PH_OK)
        return ph_req_fail(r, rc, &err);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, snap_view(&v[i]));
    free(v);
    return ph_req_json(r, 200, json_pack("{s:o}", "snapshots", list));
}

int ph_api_snapshot_latest(ph_req *r)
{
    if (!r->env->snaps)
        return ph_req_error(r, 503, "unavailable", "snapshots: not kept by this node");
    int fd;
    ph_snap_info s;
    ph_err err = {0};
    int rc = ph_snaps_open_latest(r->env->snaps, &fd, &s, &err);
    if (rc != PH_OK)
        return ph_req_fail(r, rc, &err);
    char seq[24];
    snprintf(seq, sizeof seq, "%" PRIu64, s.repl_seq);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "snapshot.sent",
           "file=%s repl_seq=%s bytes=%llu by=%s", s.file, seq, (unsigned long long)s.bytes,
           r->client->name);
    return ph_req_file(r, 200, fd, s.bytes, s.file, seq);
}
