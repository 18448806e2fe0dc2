/* mirror.h - a copy of the job records in a local folder, for `lathe standalone`.
 *
 * The standalone mode's Kafka is librdkafka's in-memory mock cluster, so its jobs.state topic dies with the
 * process. The mirror keeps <dir>/<id>.json up to date (written by a thread at most every 500 ms, atomically,
 * newest record per job), and lt_mirror_load reads them back at start: job history survives a restart, and
 * unfinished jobs can be published again (their checkpoints are in storage, so they resume). */
#ifndef LT_SCHED_MIRROR_H
#define LT_SCHED_MIRROR_H

#include "core.h"

typedef struct lt_mirror lt_mirror;

/* Creates dir (mkdir -p) and starts the writer thread. NULL and err (LT_ERR_IO naming dir) on failure. */
lt_mirror *lt_mirror_open(const char *dir, lt_err *err);
/* Writes what is pending, stops the thread, frees. NULL is a no-op. */
void lt_mirror_close(lt_mirror *m);
/* Queues the newest record of a job (json NULL: delete its file). Copies json; never blocks on I/O.
 * LT_ERR_NOMEM. */
lt_status lt_mirror_put(lt_mirror *m, const char *id, const char *json, lt_err *err);
/* Calls load(ctx, name, data, len, err) for every <dir>/<name>.json of at most max_bytes (hidden files are
 * passed over): LT_OK counts it in *n, LT_ERR_NOT_FOUND passes over it quietly (not a record of this
 * kind), any other status is reported on stderr with err's message and the file skipped. LT_ERR_IO when dir
 * can't be read (a missing dir is fine: nothing to load). Every mirror folder is read back this way. */
typedef lt_status (*lt_mirror_record_fn)(void *ctx, const char *name, const char *data, size_t len,
                                         lt_err *err);
lt_status lt_mirror_scan(const char *dir, size_t max_bytes, lt_mirror_record_fn load, void *ctx, size_t *n,
                         lt_err *err);
/* Loads every <dir>/<id>.json into s (bad files are reported on stderr and skipped); *n receives the number
 * loaded. LT_ERR_IO when dir can't be read (a missing dir is fine: nothing to load). */
lt_status lt_mirror_load(const char *dir, lt_sched *s, size_t *n, lt_err *err);

#endif
