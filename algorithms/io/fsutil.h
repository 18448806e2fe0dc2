/* fsutil.h - small file-system helpers every task uses: create folders, read whole files, write files
 * atomically (a reader sees the old content or the new, never half), and JSON files through cJSON. */
#ifndef LT_FSUTIL_H
#define LT_FSUTIL_H

#include "core/status.h"

#include <cjson/cJSON.h>
#include <stddef.h>

/* mkdir -p; LT_ERR_IO naming the path on failure. */
lt_status lt_mkdir_p(const char *path, lt_err *err);
/* 1 when path exists (file or folder). */
int lt_path_exists(const char *path);
int lt_is_dir(const char *path);
/* Reads the whole file into a NUL-terminated malloc'd buffer (*len bytes, excluding the NUL). */
lt_status lt_read_file(const char *path, char **data, size_t *len, size_t max_len, lt_err *err);
/* Writes len bytes to path.tmp, fsyncs, renames over path. */
lt_status lt_write_file_atomic(const char *path, const void *data, size_t len, lt_err *err);
/* Parses a JSON file; LT_ERR_FORMAT naming the file and the position of a syntax error. */
lt_status lt_json_read_file(const char *path, cJSON **out, lt_err *err);
/* Writes json (formatted) atomically. */
lt_status lt_json_write_file(const char *path, const cJSON *json, lt_err *err);
/* Removes a folder tree (rm -rf); missing is fine. */
lt_status lt_remove_tree(const char *path, lt_err *err);
/* snprintf into a fresh buffer: "%s/%s" joins; returns NULL on OOM. */
char *lt_path_join(const char *a, const char *b);

#endif
