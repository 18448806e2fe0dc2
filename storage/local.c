/* local.c - the local backend: keys are files below a root directory (keys were checked by the caller, so
 * root + "/" + key can't leave the root lexically; symbolic links inside the root are followed). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/storage_internal.h"

static char *path_of(const lt_storage *s, const char *key) {
    return lt_stg_strf("%s/%s", s->root, key);
}

static void local_etag(const struct stat *sb, char out[LT_STORAGE_ETAG_MAX]) {
    long long ns = (long long)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
    snprintf(out, LT_STORAGE_ETAG_MAX, "%llx-%llx", (long long)sb->st_size, ns);
}

lt_status lt_stg_local_list(lt_storage *s, const char *prefix, lt_storage_list_fn fn, void *ctx,
                            lt_err *err) {
    /* Walk only the deepest directory the prefix names ("a/b/c" -> "a/b/"). */
    const char *slash = strrchr(prefix, '/');
    size_t dir_len = slash ? (size_t)(slash - prefix + 1) : 0;
    char *dir = dir_len ? lt_stg_strf("%s/%.*s", s->root, (int)dir_len, prefix) : strdup(s->root);
    if (!dir) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        free(dir);
        return LT_OK; /* nothing there: an empty listing, as on S3 */
    }
    char **rel = NULL;
    size_t n = 0;
    lt_status st = lt_stg_walk(dir, &rel, &n, err);
    free(dir);
    for (size_t i = 0; st == LT_OK && i < n; i++) {
        char *key = lt_stg_strf("%.*s%s", (int)dir_len, prefix, rel[i]);
        char *path = key ? path_of(s, key) : NULL;
        if (!path) {
            free(key);
            st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
            break;
        }
        int stop = 0;
        if (strncmp(key, prefix, strlen(prefix)) == 0 && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            char etag[LT_STORAGE_ETAG_MAX];
            local_etag(&sb, etag);
            lt_storage_obj o = {key, (int64_t)sb.st_size, etag, (int64_t)sb.st_mtim.tv_sec};
            stop = fn(ctx, &o);
        }
        free(key);
        free(path);
        if (stop) break;
    }
    lt_stg_free_strs(rel, n);
    return st;
}

lt_status lt_stg_local_stat(lt_storage *s, const char *key, lt_storage_info *info, lt_err *err) {
    char *path = path_of(s, key);
    if (!path) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    struct stat sb;
    lt_status st = LT_OK;
    if (stat(path, &sb) != 0) {
        int e = errno;
        st = e == ENOENT || e == ENOTDIR
                 ? lt_errorf(err, LT_ERR_FORMAT, "not found: %s (in %s)", key, s->uri)
                 : lt_errorf(err, lt_stg_errno_status(e), "storage: can't stat '%s': %s", path, strerror(e));
    } else if (!S_ISREG(sb.st_mode)) {
        st =
            lt_errorf(err, LT_ERR_FORMAT, "not found: %s (in %s) is a directory, not an object", key, s->uri);
    } else {
        info->size = (int64_t)sb.st_size;
        info->mtime = (int64_t)sb.st_mtim.tv_sec;
        local_etag(&sb, info->etag);
    }
    free(path);
    return st;
}

lt_status lt_stg_local_get(lt_storage *s, const char *key, const char *local_path, lt_err *err) {
    char *path = path_of(s, key);
    if (!path) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    int64_t bytes = 0;
    lt_status st = lt_stg_copy_atomic(path, local_path, &bytes, err);
    free(path);
    if (st == LT_OK) {
        s->stats.objects_downloaded++;
        s->stats.bytes_downloaded += bytes;
        lt_stg_event(s, LT_STORAGE_EV_DOWNLOADED, key, 0, 0, bytes, "copied");
    }
    return st;
}

lt_status lt_stg_local_get_mem(lt_storage *s, const char *key, void **data, size_t *len, lt_err *err) {
    char *path = path_of(s, key);
    if (!path) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    lt_status st = lt_stg_read_file(path, data, len, err);
    free(path);
    if (st == LT_OK) {
        s->stats.objects_downloaded++;
        s->stats.bytes_downloaded += (int64_t)*len;
    }
    return st;
}

lt_status lt_stg_local_put(lt_storage *s, const char *key, const char *local_path, lt_err *err) {
    char *path = path_of(s, key);
    if (!path) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    int64_t bytes = 0;
    lt_status st = lt_stg_copy_atomic(local_path, path, &bytes, err);
    free(path);
    if (st == LT_OK) {
        s->stats.objects_uploaded++;
        s->stats.bytes_uploaded += bytes;
        lt_stg_event(s, LT_STORAGE_EV_UPLOADED, key, 0, 0, bytes, "copied");
    }
    return st;
}

lt_status lt_stg_local_put_mem(lt_storage *s, const char *key, const void *data, size_t len, lt_err *err) {
    char *path = path_of(s, key);
    if (!path) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    lt_status st = lt_stg_write_atomic(path, data, len, err);
    free(path);
    if (st == LT_OK) {
        s->stats.objects_uploaded++;
        s->stats.bytes_uploaded += (int64_t)len;
    }
    return st;
}

lt_status lt_stg_local_delete(lt_storage *s, const char *key, lt_err *err) {
    char *path = path_of(s, key);
    if (!path) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    lt_status st = LT_OK;
    if (unlink(path) != 0 && errno != ENOENT && errno != ENOTDIR) {
        int e = errno;
        st = lt_errorf(err, lt_stg_errno_status(e), "storage: can't delete '%s': %s", path, strerror(e));
    }
    free(path);
    return st;
}
