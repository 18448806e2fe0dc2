/* fsutil.c - local file helpers: mkdir -p, atomic writes (tmp + fsync + rename), copies, links, walks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/storage_internal.h"

lt_status lt_stg_errno_status(int e) {
    switch (e) {
    case ENOENT:
    case ENOTDIR:
    case EISDIR:
    case EACCES:
    case EPERM:
    case EROFS:
    case ENAMETOOLONG:
    case ELOOP:
    case EEXIST:
        return LT_ERR_FORMAT;
    case ENOMEM:
        return LT_ERR_NOMEM;
    default:
        return LT_ERR_IO;
    }
}

lt_status lt_stg_mkdirs(const char *dir, lt_err *err) {
    char *p = strdup(dir);
    if (!p) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    lt_status st = LT_OK;
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != '\0') continue;
        char c = *q;
        *q = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            st = lt_errorf(err, lt_stg_errno_status(e), "storage: can't create directory '%s': %s", p,
                           strerror(e));
            break;
        }
        *q = c;
        if (c == '\0') break;
    }
    free(p);
    return st;
}

lt_status lt_stg_mkdirs_for(const char *path, lt_err *err) {
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return LT_OK;
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    lt_status st = lt_stg_mkdirs(dir, err);
    free(dir);
    return st;
}

lt_status lt_stg_tmp_create(const char *path, char **tmp_path, int *fd, lt_err *err) {
    *tmp_path = NULL;
    *fd = -1;
    lt_status st = lt_stg_mkdirs_for(path, err);
    if (st != LT_OK) return st;
    /* Same directory as the target, so the final rename stays on one file system and is atomic. */
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    char *t = lt_stg_strf("%.*s" LT_STG_TMP_MARK "%.40sXXXXXX", dir_len, path, base);
    if (!t) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    int f = mkstemp(t);
    if (f < 0) {
        int e = errno;
        free(t);
        return lt_errorf(err, lt_stg_errno_status(e), "storage: can't create a temporary file for '%s': %s",
                         path, strerror(e));
    }
    *tmp_path = t;
    *fd = f;
    return LT_OK;
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync + close + rename; unlinks tmp on failure. Always closes fd. */
static lt_status finish_tmp(int fd, char *tmp, const char *path, lt_err *err) {
    int rc = fsync(fd);
    int e = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
        e = errno;
    }
    if (rc != 0) {
        unlink(tmp);
        return lt_errorf(err, lt_stg_errno_status(e), "storage: can't write '%s': %s", path, strerror(e));
    }
    return LT_OK;
}

lt_status lt_stg_write_atomic(const char *path, const void *data, size_t len, lt_err *err) {
    char *tmp;
    int fd;
    lt_status st = lt_stg_tmp_create(path, &tmp, &fd, err);
    if (st != LT_OK) return st;
    if (write_all(fd, data, len) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return lt_errorf(err, lt_stg_errno_status(e), "storage: can't write '%s': %s", path, strerror(e));
    }
    st = finish_tmp(fd, tmp, path, err);
    free(tmp);
    return st;
}

lt_status lt_stg_copy_atomic(const char *src, const char *dst, int64_t *bytes, lt_err *err) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        int e = errno;
        return lt_errorf(err, lt_stg_errno_status(e),
                         e == ENOENT ? "not found: '%s'" : "storage: can't read '%s': %s", src, strerror(e));
    }
    struct stat sb;
    if (fstat(in, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(in);
        return lt_errorf(err, LT_ERR_FORMAT, "storage: '%s' is not a regular file", src);
    }
    char *tmp;
    int out;
    lt_status st = lt_stg_tmp_create(dst, &tmp, &out, err);
    if (st != LT_OK) {
        close(in);
        return st;
    }
    char buf[1 << 16];
    int64_t total = 0;
    while (1) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || (r > 0 && write_all(out, buf, (size_t)r) != 0)) {
            int e = errno;
            close(in);
            close(out);
            unlink(tmp);
            free(tmp);
            return lt_errorf(err, lt_stg_errno_status(e), "storage: copying '%s' to '%s': %s", src, dst,
                             strerror(e));
        }
        if (r == 0) break;
        total += r;
    }
    close(in);
    st = finish_tmp(out, tmp, dst, err);
    free(tmp);
    if (st == LT_OK && bytes) *bytes = total;
    return st;
}

lt_status lt_stg_link_or_copy(const char *src, const char *dst, lt_err *err) {
    struct stat a, b;
    if (stat(src, &a) == 0 && stat(dst, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return LT_OK;
    lt_status st = lt_stg_mkdirs_for(dst, err);
    if (st != LT_OK) return st;
    /* link() refuses to replace, so link to a fresh name and rename that over dst. */
    char *tmp;
    int fd;
    st = lt_stg_tmp_create(dst, &tmp, &fd, err);
    if (st != LT_OK) return st;
    close(fd);
    unlink(tmp);
    if (link(src, tmp) == 0) {
        if (rename(tmp, dst) == 0) {
            free(tmp);
            return LT_OK;
        }
        unlink(tmp);
    }
    free(tmp);
    return lt_stg_copy_atomic(src, dst, NULL, err);
}

lt_status lt_stg_read_file(const char *path, void **data, size_t *len, lt_err *err) {
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return lt_errorf(err, lt_stg_errno_status(e),
                         e == ENOENT ? "not found: '%s'" : "storage: can't read '%s': %s", path, strerror(e));
    }
    lt_stg_buf b = {0};
    char chunk[1 << 16];
    while (1) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            lt_stg_buf_free(&b);
            return lt_errorf(err, lt_stg_errno_status(e), "storage: can't read '%s': %s", path, strerror(e));
        }
        if (r == 0) break;
        if (lt_stg_buf_add(&b, chunk, (size_t)r)) {
            close(fd);
            lt_stg_buf_free(&b);
            return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory reading '%s'", path);
        }
    }
    close(fd);
    if (!b.data && lt_stg_buf_add(&b, "", 0)) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    *data = b.data;
    *len = b.len;
    return LT_OK;
}

void lt_stg_free_strs(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

typedef struct {
    char **v; /* (cap) */
    size_t n, cap;
} str_vec;

static int vec_push(str_vec *s, char *str) {
    if (!str) return -1;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            free(str);
            return -1;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    return 0;
}

static lt_status walk_dir(const char *root, const char *rel, str_vec *out, int depth, lt_err *err) {
    if (depth > 64)
        return lt_errorf(err, LT_ERR_FORMAT, "storage: directories nested deeper than 64 under '%s'", root);
    char *path = rel[0] ? lt_stg_strf("%s/%s", root, rel) : strdup(root);
    if (!path) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    DIR *d = opendir(path);
    if (!d) {
        int e = errno;
        lt_status st = lt_errorf(err, lt_stg_errno_status(e),
                                 e == ENOENT ? "not found: '%s'"
                                             : "storage: can't read "
                                               "directory '%s': %s",
                                 path, strerror(e));
        free(path);
        return st;
    }
    lt_status st = LT_OK;
    struct dirent *de;
    while (st == LT_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (strstr(de->d_name, LT_STG_TMP_MARK)) continue;
        char *child = rel[0] ? lt_stg_strf("%s/%s", rel, de->d_name) : strdup(de->d_name);
        char *full = lt_stg_strf("%s/%s", path, de->d_name);
        struct stat sb;
        if (!child || !full) {
            st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
        } else if (stat(full, &sb) != 0) {
            /* Vanished since readdir, or a dangling link: not an object. */
        } else if (S_ISDIR(sb.st_mode)) {
            st = walk_dir(root, child, out, depth + 1, err);
        } else if (S_ISREG(sb.st_mode)) {
            if (vec_push(out, child) != 0) st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
            child = NULL;
        }
        free(child);
        free(full);
    }
    closedir(d);
    free(path);
    return st;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

lt_status lt_stg_walk(const char *dir, char ***rel, size_t *n, lt_err *err) {
    str_vec v = {0};
    lt_status st = walk_dir(dir, "", &v, 0, err);
    if (st != LT_OK) {
        lt_stg_free_strs(v.v, v.n);
        *rel = NULL;
        *n = 0;
        return st;
    }
    if (v.n) qsort(v.v, v.n, sizeof *v.v, cmp_str);
    *rel = v.v;
    *n = v.n;
    return LT_OK;
}
