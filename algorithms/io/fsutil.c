#define _GNU_SOURCE
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

lt_status lt_mkdir_p(const char *path, lt_err *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return lt_errorf(err, LT_ERR_ARG, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return lt_errorf(err, LT_ERR_IO, "cannot create folder %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return lt_errorf(err, LT_ERR_IO, "cannot create folder %s: %s", buf, strerror(errno));
    if (!lt_is_dir(buf)) return lt_errorf(err, LT_ERR_IO, "%s exists and is not a folder", buf);
    return LT_OK;
}

int lt_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int lt_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

lt_status lt_read_file(const char *path, char **data, size_t *len, size_t max_len, lt_err *err) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return lt_errorf(err, LT_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lt_errorf(err, LT_ERR_IO, "%s is not a regular file", path);
    }
    if ((size_t)st.st_size > max_len) {
        fclose(f);
        return lt_errorf(err, LT_ERR_FORMAT, "%s is %lld bytes, over the limit of %zu", path, (long long)st.st_size, max_len);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory reading %s", path);
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n != (size_t)st.st_size) {
        free(buf);
        return lt_errorf(err, LT_ERR_IO, "cannot read %s", path);
    }
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return LT_OK;
}

lt_status lt_write_file_atomic(const char *path, const void *data, size_t len, lt_err *err) {
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        lt_status st = lt_errorf(err, LT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        p += w;
        left -= (size_t)w;
    }
    int ok = left == 0 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        lt_status st = lt_errorf(err, LT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    return LT_OK;
}

lt_status lt_json_read_file(const char *path, cJSON **out, lt_err *err) {
    char *text;
    size_t len;
    *out = NULL;
    lt_status st = lt_read_file(path, &text, &len, (size_t)64 << 20, err);
    if (st != LT_OK) return st;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) {
        size_t off = end ? (size_t)(end - text) : 0;
        int line = 1;
        for (size_t i = 0; i < off && i < len; i++) line += text[i] == '\n';
        free(text);
        return lt_errorf(err, LT_ERR_FORMAT, "%s: invalid JSON near line %d (byte %zu)", path, line, off);
    }
    free(text);
    *out = j;
    return LT_OK;
}

lt_status lt_json_write_file(const char *path, const cJSON *json, lt_err *err) {
    char *text = cJSON_Print(json);
    if (!text) return lt_errorf(err, LT_ERR_NOMEM, "out of memory writing %s", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* replace the NUL: the buffer is ours */
    lt_status st = lt_write_file_atomic(path, text, n + 1, err);
    free(text);
    return st;
}

lt_status lt_remove_tree(const char *path, lt_err *err) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? LT_OK : lt_errorf(err, LT_ERR_IO, "cannot stat %s", path);
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return lt_errorf(err, LT_ERR_IO, "cannot open folder %s", path);
        struct dirent *e;
        lt_status s = LT_OK;
        while (s == LT_OK && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *child = lt_path_join(path, e->d_name);
            s = child ? lt_remove_tree(child, err) : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
            free(child);
        }
        closedir(d);
        if (s != LT_OK) return s;
        if (rmdir(path) != 0) return lt_errorf(err, LT_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
        return LT_OK;
    }
    if (unlink(path) != 0) return lt_errorf(err, LT_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return LT_OK;
}

char *lt_path_join(const char *a, const char *b) {
    char *s = NULL;
    size_t la = strlen(a);
    if (asprintf(&s, la && a[la - 1] == '/' ? "%s%s" : "%s/%s", a, b) < 0) return NULL;
    return s;
}
