/* table.h - the scheduler's in-memory job table: records by id, an index by Idempotency-Key, and counts by
 * state for /metrics.
 *
 * Every record stays in memory (about 1-2 KB each, more with large metrics): a known limit of a scheduler
 * that rebuilds from a compacted topic. One mutex guards the table; callers take it with lt_table_lock around
 * any sequence of calls that must see one consistent state (find, then change, then put). */
#ifndef LT_SCHED_TABLE_H
#define LT_SCHED_TABLE_H

#include "job.h"

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct lt_table lt_table;

/* NULL on OOM. Destroy frees every record; NULL is a no-op. */
lt_table *lt_table_create(void);
void lt_table_destroy(lt_table *t);

void lt_table_lock(lt_table *t);
void lt_table_unlock(lt_table *t);

/* The following need the lock. */

/* The record with this id, borrowed (valid while the lock is held and the record isn't replaced); NULL. */
lt_job *lt_table_find(lt_table *t, const char *id);
/* The record submitted with this Idempotency-Key; NULL when none. */
lt_job *lt_table_find_idempotent(lt_table *t, const char *key);
/* Stores j, taking ownership, replacing (and freeing) a record with the same id. On OOM j is freed too and
 * LT_ERR_NOMEM returned; the table is unchanged then. */
lt_status lt_table_put(lt_table *t, lt_job *j);
/* Removes and frees the record; a missing id is a no-op. */
void lt_table_remove(lt_table *t, const char *id);
/* Number of records. */
size_t lt_table_size(const lt_table *t);
/* Records by state. */
void lt_table_counts(const lt_table *t, size_t counts[LT_JOB_STATE_COUNT]);
/* A JSON array of records, newest first (by created_at, then id), only those in state `state` when it is
 * >= 0, at most limit. *total receives how many matched before the limit. NULL on OOM. */
cJSON *lt_table_list(const lt_table *t, int state, size_t limit, size_t *total);
/* The same, only records of job type `type` ("training" also matches records without a type); NULL: all. */
cJSON *lt_table_list_type(const lt_table *t, const char *type, int state, size_t limit, size_t *total);

#endif
