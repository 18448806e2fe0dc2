/* storage_internal.h - what the storage module's files share and nobody else sees (prefix lt_stg_). */
#ifndef LT_STORAGE_INTERNAL_H
#define LT_STORAGE_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>

#include "core/rng.h"
#include "storage/storage.h"

typedef struct lt_s3 lt_s3;

struct lt_storage {
    lt_storage_kind kind;
    lt_storage_opts opts;   /* copy; the string fields point at owned copies below or are NULL */
    char *uri;              /* as given to open, for messages */
    char *root;             /* LOCAL: root directory without a trailing '/' */
    lt_s3 *s3;              /* S3: backend state */
    char *owned[6];         /* copies of the option strings */
    lt_storage_stats stats; /* counters reported by lt_storage_get_stats */
    lt_rng rng;             /* backoff jitter */
};

/* A growable byte buffer; data is always 0-terminated when non-NULL. */
typedef struct {
    char *data; /* (cap) */
    size_t len;
    size_t cap;
} lt_stg_buf;

/* Appends; return 0 on success, -1 on no memory (the buffer is left as it was). */
int lt_stg_buf_add(lt_stg_buf *b, const void *p, size_t n);
int lt_stg_buf_puts(lt_stg_buf *b, const char *s);
int lt_stg_buf_printf(lt_stg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lt_stg_buf_free(lt_stg_buf *b);

/* malloc'd printf; NULL on no memory. */
char *lt_stg_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Emits an event when the handle has a callback. */
void lt_stg_event(lt_storage *s, lt_storage_event_kind kind, const char *key, int attempt, int delay_ms,
                  int64_t bytes, const char *message);

/* ---- local files (fsutil.c) ---- */

/* The marker in temporary file names; listings and sync_up skip such files. */
#define LT_STG_TMP_MARK ".lt-tmp-"

/* mkdir -p of the directory that will hold path (not path itself). */
lt_status lt_stg_mkdirs_for(const char *path, lt_err *err);
lt_status lt_stg_mkdirs(const char *dir, lt_err *err);
/* Creates a fresh temporary file next to path; *tmp_path is malloc'd, *fd open for writing. */
lt_status lt_stg_tmp_create(const char *path, char **tmp_path, int *fd, lt_err *err);
/* Writes data to path atomically (tmp + fsync + rename), creating parents. */
lt_status lt_stg_write_atomic(const char *path, const void *data, size_t len, lt_err *err);
/* Copies src to dst atomically; *bytes gets the size (may be NULL). */
lt_status lt_stg_copy_atomic(const char *src, const char *dst, int64_t *bytes, lt_err *err);
/* Makes dst the same file as src: a hard link placed atomically, or a copy across file systems. */
lt_status lt_stg_link_or_copy(const char *src, const char *dst, lt_err *err);
/* Reads a whole file into a malloc'd, 0-terminated buffer. */
lt_status lt_stg_read_file(const char *path, void **data, size_t *len, lt_err *err);
/* Status for a failed system call: ENOENT/EACCES/... are permanent (LT_ERR_FORMAT), the rest LT_ERR_IO. */
lt_status lt_stg_errno_status(int e);
/* Appends every regular file below dir (relative paths, '/'-separated, skipping temporary files) to
 * *rel (a malloc'd array of malloc'd strings) and sorts them. */
lt_status lt_stg_walk(const char *dir, char ***rel, size_t *n, lt_err *err);
void lt_stg_free_strs(char **v, size_t n);

/* ---- local backend (local.c) ---- */

lt_status lt_stg_local_list(lt_storage *s, const char *prefix, lt_storage_list_fn fn, void *ctx, lt_err *err);
lt_status lt_stg_local_stat(lt_storage *s, const char *key, lt_storage_info *info, lt_err *err);
lt_status lt_stg_local_get(lt_storage *s, const char *key, const char *local_path, lt_err *err);
lt_status lt_stg_local_get_mem(lt_storage *s, const char *key, void **data, size_t *len, lt_err *err);
lt_status lt_stg_local_put(lt_storage *s, const char *key, const char *local_path, lt_err *err);
lt_status lt_stg_local_put_mem(lt_storage *s, const char *key, const void *data, size_t len, lt_err *err);
lt_status lt_stg_local_delete(lt_storage *s, const char *key, lt_err *err);

/* ---- S3 backend (s3.c) ---- */

/* Parses "s3://bucket/prefix" and the configuration; fills s->s3. */
lt_status lt_stg_s3_open(lt_storage *s, const char *uri, lt_err *err);
void lt_stg_s3_close(lt_s3 *s3);
lt_status lt_stg_s3_list(lt_storage *s, const char *prefix, lt_storage_list_fn fn, void *ctx, lt_err *err);
lt_status lt_stg_s3_stat(lt_storage *s, const char *key, lt_storage_info *info, lt_err *err);
lt_status lt_stg_s3_get(lt_storage *s, const char *key, const char *local_path, lt_err *err);
lt_status lt_stg_s3_get_mem(lt_storage *s, const char *key, void **data, size_t *len, lt_err *err);
lt_status lt_stg_s3_put(lt_storage *s, const char *key, const char *local_path, lt_err *err);
lt_status lt_stg_s3_put_mem(lt_storage *s, const char *key, const void *data, size_t len, lt_err *err);
lt_status lt_stg_s3_delete(lt_storage *s, const char *key, lt_err *err);
lt_status lt_stg_s3_sync_down(lt_storage *s, const char *prefix, const char *local_dir, lt_err *err);
lt_status lt_stg_s3_sync_up(lt_storage *s, const char *local_dir, const char *prefix, lt_err *err);

/* ---- tiny XML reader for S3 responses (s3_xml.c) ---- */

/* Finds the first <tag>...</tag> inside [p, end); returns the start of its text and sets *text_end to
 * where the text stops. NULL when absent. Tags with attributes (<tag a="b">) match too. */
const char *lt_stg_xml_find(const char *p, const char *end, const char *tag, const char **text_end);
/* The unescaped text of the first <tag> in [p, end), malloc'd; NULL when absent or no memory. */
char *lt_stg_xml_text(const char *p, const char *end, const char *tag);

/* ---- ETag cache (cache.c) ---- */

/* Paths of the cache entry for one object version: dir holds every version of the object, file is the
 * one for etag. Both malloc'd. */
lt_status lt_stg_cache_paths(const char *cache_dir, const char *origin, const char *key, const char *etag,
                             char **dir, char **file, lt_err *err);
/* 1 when file exists as a regular file of the given size. */
int lt_stg_cache_has(const char *file, int64_t size);
/* Moves the downloaded tmp into place as file and removes older versions in its dir. */
lt_status lt_stg_cache_commit(const char *tmp, const char *file, lt_err *err);

#endif
