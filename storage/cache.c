/* cache.c - the download cache, keyed by ETag.
 *
 * Layout: <cache_dir>/s3/<aa>/<sha256(origin \n key)>/<sha256(etag)[0:32]>. One directory per object holds
 * the cached version(s) of that object, one file per ETag; storing a new version removes the old ones, so
 * the cache holds at most one version of each object (plus in-flight temporaries). Hashing the names keeps
 * any key, however odd, inside the cache directory. Entries are written to a temporary file and renamed,
 * so a reader never sees half an entry, and two processes may share one cache. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/sigv4.h"
#include "storage/storage_internal.h"

lt_status lt_stg_cache_paths(const char *cache_dir, const char *origin, const char *key, const char *etag,
                             char **dir, char **file, lt_err *err) {
    *dir = *file = NULL;
    char *id = lt_stg_strf("%s\n%s", origin, key);
    if (!id) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    char h_obj[65], h_tag[65];
    lt_sigv4_sha256_hex(id, strlen(id), h_obj);
    lt_sigv4_sha256_hex(etag, strlen(etag), h_tag);
    free(id);
    *dir = lt_stg_strf("%s/s3/%.2s/%s", cache_dir, h_obj, h_obj);
    *file = *dir ? lt_stg_strf("%s/%.32s", *dir, h_tag) : NULL;
    if (!*file) {
        free(*dir);
        *dir = NULL;
        return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    }
    return LT_OK;
}

int lt_stg_cache_has(const char *file, int64_t size) {
    struct stat sb;
    return stat(file, &sb) == 0 && S_ISREG(sb.st_mode) && (int64_t)sb.st_size == size;
}

lt_status lt_stg_cache_commit(const char *tmp, const char *file, lt_err *err) {
    if (rename(tmp, file) != 0) {
        unlink(tmp);
        return lt_errorf(err, LT_ERR_IO, "storage: can't store '%s' in the cache", file);
    }
    /* Drop other versions of this object; temporaries of concurrent downloads stay. */
    const char *slash = strrchr(file, '/');
    char *dir = strndup(file, (size_t)(slash - file));
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, slash + 1) == 0) continue;
        char *old = lt_stg_strf("%s/%s", dir, de->d_name);
        if (old) unlink(old);
        free(old);
    }
    if (d) closedir(d);
    free(dir);
    return LT_OK;
}
