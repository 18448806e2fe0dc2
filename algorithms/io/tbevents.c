#define _POSIX_C_SOURCE 200809L
#include "tbevents.h"
#include "crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct lt_tb_writer {
    int fd;       /* the event file, write-only; this writer is its only writer */
    char *path;   /* (strlen + 1) full path of the event file, for messages and lt_tb_path */
    uint8_t *buf; /* (cap) scratch for one encoded record, grown on demand */
    size_t cap;   /* bytes allocated at buf */
};

/* ---- protobuf encoding (only the wire types an Event needs) ---- */

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2, PB_FIXED32 = 5 };

static size_t pb_varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80)
        v >>= 7, n++;
    return n;
}

static uint8_t *pb_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80)
        *p++ = (uint8_t)(v | 0x80), v >>= 7;
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *pb_key(uint8_t *p, int field, int wire) {
    return pb_varint(p, (uint64_t)(field << 3 | wire));
}

static uint8_t *pb_le(uint8_t *p, uint64_t v, int nbytes) {
    for (int i = 0; i < nbytes; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint8_t *pb_bytes(uint8_t *p, int field, const void *data, size_t n) {
    p = pb_key(p, field, PB_LEN);
    p = pb_varint(p, n);
    memcpy(p, data, n);
    return p + n;
}

/* Encoded size of a Summary.Value {tag, simple_value} without its own key/length. */
static size_t value_size(size_t taglen) {
    return 1 + pb_varint_size(taglen) + taglen + 1 + 4;
}

/* ---- records ---- */

static lt_status tb_reserve(lt_tb_writer *w, size_t need, lt_err *err) {
    if (need <= w->cap) return LT_OK;
    uint8_t *b = realloc(w->buf, need);
    if (!b) return lt_errorf(err, LT_ERR_NOMEM, "tensorboard: out of memory for a %zu-byte record", need);
    w->buf = b;
    w->cap = need;
    return LT_OK;
}

static lt_status tb_write_all(lt_tb_writer *w, const uint8_t *p, size_t n, lt_err *err) {
    while (n > 0) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return lt_errorf(err, LT_ERR_IO, "%s: write failed: %s", w->path,
                             k < 0 ? strerror(errno) : "no progress");
        p += k;
        n -= (size_t)k;
    }
    return LT_OK;
}

static double tb_wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Encodes and writes one Event: the file_version record when version is non-NULL, else a summary of n
 * scalars. The record (12-byte header, data, 4-byte footer) is built in w->buf and written at once. */
static lt_status tb_event(lt_tb_writer *w, const char *version, const char *const *tags, const float *values,
                          int n, int64_t step, lt_err *err) {
    size_t summary = 0;
    for (int i = 0; i < n; i++) {
        size_t vs = value_size(strlen(tags[i]));
        summary += 1 + pb_varint_size(vs) + vs;
    }
    size_t data = 9 + 1 + pb_varint_size((uint64_t)step);
    if (version)
        data += 1 + pb_varint_size(strlen(version)) + strlen(version);
    else
        data += 1 + pb_varint_size(summary) + summary;
    lt_status s = tb_reserve(w, 12 + data + 4, err);
    if (s != LT_OK) return s;

    uint8_t *rec = w->buf, *p = rec + 12; /* (12 + data + 4) */
    double wall = tb_wall_time();
    uint64_t wall_bits;
    memcpy(&wall_bits, &wall, 8);
    p = pb_le(pb_key(p, 1, PB_FIXED64), wall_bits, 8);
    p = pb_varint(pb_key(p, 2, PB_VARINT),
                  (uint64_t)step); /* int64: negatives take 10 bytes, as in protobuf */
    if (version) {
        p = pb_bytes(p, 3, version, strlen(version));
    } else {
        p = pb_varint(pb_key(p, 5, PB_LEN), summary);
        for (int i = 0; i < n; i++) {
            size_t taglen = strlen(tags[i]);
            uint32_t vbits;
            memcpy(&vbits, &values[i], 4);
            p = pb_varint(pb_key(p, 1, PB_LEN), value_size(taglen));
            p = pb_bytes(p, 1, tags[i], taglen);
            p = pb_le(pb_key(p, 2, PB_FIXED32), vbits, 4);
        }
    }
    if ((size_t)(p - rec) != 12 + data)
        return lt_errorf(err, LT_ERR_STATE, "tensorboard: internal size mismatch (%zu != %zu)",
                         (size_t)(p - rec), 12 + data);
    pb_le(rec, data, 8);
    pb_le(rec + 8, lt_crc32c_mask(lt_crc32c(0, rec, 8)), 4);
    pb_le(p, lt_crc32c_mask(lt_crc32c(0, rec + 12, data)), 4);
    return tb_write_all(w, rec, 12 + data + 4, err);
}

/* ---- public API ---- */

/* mkdir -p: creates each missing component of dir. */
static lt_status tb_mkdirs(const char *dir, lt_err *err) {
    size_t n = strlen(dir);
    char *tmp = malloc(n + 1);
    if (!tmp) return lt_errorf(err, LT_ERR_NOMEM, "tensorboard: out of memory");
    memcpy(tmp, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            lt_status s = lt_errorf(err, LT_ERR_IO, "tensorboard: cannot create directory %s: %s", tmp,
                                    strerror(errno));
            free(tmp);
            return s;
        }
        tmp[i] = c;
    }
    free(tmp);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return lt_errorf(err, LT_ERR_IO, "tensorboard: %s is not a directory", dir);
    return LT_OK;
}

lt_tb_writer *lt_tb_open(const char *dir, lt_err *err) {
    if (!dir || !*dir) {
        lt_errorf(err, LT_ERR_ARG, "tensorboard: empty log directory");
        return NULL;
    }
    if (tb_mkdirs(dir, err) != LT_OK) return NULL;
    lt_tb_writer *w = calloc(1, sizeof *w);
    if (!w) goto nomem;
    w->fd = -1;
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0]) strcpy(host, "localhost");
    for (char *c = host; *c; c++)
        if (*c == '/') *c = '_';
    long long now = (long long)time(NULL);
    size_t cap = strlen(dir) + strlen(host) + 64;
    w->path = malloc(cap);
    if (!w->path) goto nomem;
    for (int attempt = 0; attempt < 100 && w->fd < 0; attempt++) {
        if (attempt == 0)
            snprintf(w->path, cap, "%s/events.out.tfevents.%010lld.%s", dir, now, host);
        else
            snprintf(w->path, cap, "%s/events.out.tfevents.%010lld.%s.%d", dir, now, host, attempt);
        w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (w->fd < 0 && errno != EEXIST) break;
    }
    if (w->fd < 0) {
        lt_errorf(err, LT_ERR_IO, "tensorboard: cannot create %s: %s", w->path, strerror(errno));
        goto fail;
    }
    if (tb_event(w, "brain.Event:2", NULL, NULL, 0, 0, err) != LT_OK) goto fail;
    return w;
nomem:
    lt_errorf(err, LT_ERR_NOMEM, "tensorboard: out of memory opening a writer in %s", dir);
fail:
    if (w && w->fd >= 0) unlink(w->path); /* don't leave a file without its version record */
    lt_tb_close(w, NULL);
    return NULL;
}

const char *lt_tb_path(const lt_tb_writer *w) {
    return w->path;
}

lt_status lt_tb_scalars(lt_tb_writer *w, const char *const *tags, const float *values, int n, int64_t step,
                        lt_err *err) {
    if (n <= 0)
        return n == 0 ? LT_OK : lt_errorf(err, LT_ERR_ARG, "tensorboard: negative scalar count %d", n);
    for (int i = 0; i < n; i++) {
        size_t len = tags[i] ? strlen(tags[i]) : 0;
        if (len == 0 || len > LT_TB_TAG_MAX)
            return lt_errorf(err, LT_ERR_ARG, "tensorboard: scalar tag %d must be 1..%d bytes, got %zu", i,
                             LT_TB_TAG_MAX, len);
    }
    return tb_event(w, NULL, tags, values, n, step, err);
}

lt_status lt_tb_scalar(lt_tb_writer *w, const char *tag, float value, int64_t step, lt_err *err) {
    return lt_tb_scalars(w, &tag, &value, 1, step, err);
}

lt_status lt_tb_flush(lt_tb_writer *w, lt_err *err) {
    if (fsync(w->fd) != 0) return lt_errorf(err, LT_ERR_IO, "%s: fsync failed: %s", w->path, strerror(errno));
    return LT_OK;
}

lt_status lt_tb_close(lt_tb_writer *w, lt_err *err) {
    if (!w) return LT_OK;
    lt_status s = LT_OK;
    if (w->fd >= 0) {
        if (fsync(w->fd) != 0)
            s = lt_errorf(err, LT_ERR_IO, "%s: fsync failed: %s", w->path, strerror(errno));
        if (close(w->fd) != 0 && s == LT_OK)
            s = lt_errorf(err, LT_ERR_IO, "%s: close failed: %s", w->path, strerror(errno));
    }
    free(w->path);
    free(w->buf);
    free(w);
    return s;
}
