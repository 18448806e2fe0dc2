/* Tests of the TensorBoard event writer and CRC-32C. The written file is decoded here by a small TFRecord and
 * protobuf reader of its own (and a bitwise CRC-32C), sharing no code with the writer. */
#define _GNU_SOURCE
#include "check.h"
#include "io/crc32c.h"
#include "io/tbevents.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- an independent reader ---- */

static uint32_t bitwise_crc32c(const uint8_t *p, size_t n) {
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return ~crc;
}

static uint32_t masked(uint32_t crc) {
    uint32_t rot = (crc >> 15) | (crc << 17);
    return rot + 0xa282ead8u;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

typedef struct {
    const uint8_t *p, *end;
    int bad; /* set on malformed input */
} pb;

static uint64_t pb_varint(pb *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) break;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    r->bad = 1;
    return 0;
}

/* Reads one field: number, wire type, and either its scalar value or its bytes. Returns 0 at the end. */
static int pb_next(pb *r, int *field, int *wire, uint64_t *val, pb *sub) {
    if (r->p >= r->end || r->bad) return 0;
    uint64_t key = pb_varint(r);
    *field = (int)(key >> 3), *wire = (int)(key & 7);
    size_t need = *wire == 1 ? 8 : *wire == 5 ? 4 : 0;
    if (*wire == 0) *val = pb_varint(r);
    else if (*wire == 2) {
        uint64_t len = pb_varint(r);
        if (len > (uint64_t)(r->end - r->p)) return r->bad = 1, 0;
        sub->p = r->p, sub->end = r->p + len, sub->bad = 0;
        r->p += len;
    } else if (need) {
        if ((size_t)(r->end - r->p) < need) return r->bad = 1, 0;
        *val = le(r->p, (int)need);
        r->p += need;
    } else
        return r->bad = 1, 0;
    return !r->bad;
}

#define MAX_VALUES 8
typedef struct {
    double wall_time;
    int64_t step;
    char version[32];
    int nvalues;
    char tag[MAX_VALUES][64];
    float value[MAX_VALUES];
} event;

static int parse_event(const uint8_t *data, size_t n, event *e) {
    memset(e, 0, sizeof *e);
    pb r = {data, data + n, 0}, sub, vsub, fsub;
    int field, wire;
    uint64_t v = 0;
    while (pb_next(&r, &field, &wire, &v, &sub)) {
        if (field == 1 && wire == 1) memcpy(&e->wall_time, &v, 8);
        else if (field == 2 && wire == 0) e->step = (int64_t)v;
        else if (field == 3 && wire == 2) snprintf(e->version, sizeof e->version, "%.*s", (int)(sub.end - sub.p), sub.p);
        else if (field == 5 && wire == 2) {
            while (pb_next(&sub, &field, &wire, &v, &vsub)) {
                if (field != 1 || wire != 2 || e->nvalues == MAX_VALUES) return 0;
                int k = e->nvalues++;
                while (pb_next(&vsub, &field, &wire, &v, &fsub)) {
                    if (field == 1 && wire == 2)
                        snprintf(e->tag[k], sizeof e->tag[k], "%.*s", (int)(fsub.end - fsub.p), fsub.p);
                    else if (field == 2 && wire == 5) {
                        uint32_t b = (uint32_t)v;
                        memcpy(&e->value[k], &b, 4);
                    } else
                        return 0;
                }
                if (vsub.bad) return 0;
            }
            if (sub.bad) return 0;
        } else
            return 0;
    }
    return !r.bad;
}

/* Splits a file into TFRecords, checking both CRCs of each; returns the number of events parsed or -1. */
static int read_events(const char *path, event *ev, int max) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    size_t pos = 0;
    int count = 0;
    while (pos < n) {
        if (n - pos < 12) return -1;
        uint64_t len = le(buf + pos, 8);
        CHECK_MSG(le(buf + pos + 8, 4) == masked(bitwise_crc32c(buf + pos, 8)), "length crc of record %d", count);
        if (len > n - pos - 16) return -1;
        const uint8_t *data = buf + pos + 12;
        CHECK_MSG(le(data + len, 4) == masked(bitwise_crc32c(data, len)), "data crc of record %d", count);
        if (count == max || !parse_event(data, len, &ev[count])) return -1;
        count++;
        pos += 12 + len + 4;
    }
    return count;
}

/* Full paths of the event files in dir (at most max). */
static void find_event_files(const char *dir, char names[][512], int max, int *count) {
    DIR *d = opendir(dir);
    *count = 0;
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, "events.out.tfevents.", 20) == 0 && *count < max)
            snprintf(names[(*count)++], 512, "%s/%s", dir, de->d_name);
    closedir(d);
}

/* ---- tests ---- */

static void test_crc32c(void) {
    const char *s = "123456789";
    CHECK(lt_crc32c(0, s, 9) == 0xE3069283u);
    CHECK(lt_crc32c(lt_crc32c(0, s, 4), s + 4, 5) == 0xE3069283u); /* continuation */
    CHECK(lt_crc32c(0, "", 0) == 0);
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (uint8_t)(i * 131 + 7);
    CHECK(lt_crc32c(0, buf, sizeof buf) == bitwise_crc32c(buf, sizeof buf));
    uint32_t c = lt_crc32c(0, buf, 17);
    CHECK(lt_crc32c_mask(c) == masked(c));
}

static void rm_rf(const char *dir) {
    char names[8][512];
    int n;
    find_event_files(dir, names, 8, &n);
    for (int i = 0; i < n; i++) unlink(names[i]);
    rmdir(dir);
}

static void test_writer(void) {
    char root[] = "/tmp/lathe_tb_XXXXXX";
    if (!mkdtemp(root)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    char dir[600];
    snprintf(dir, sizeof dir, "%s/runs/job1", root); /* missing parents are created */
    lt_err err = {{0}};
    time_t t0 = time(NULL);
    lt_tb_writer *w = lt_tb_open(dir, &err);
    CHECK_MSG(w != NULL, "open: %s", err.msg);
    if (!w) return;

    CHECK(lt_tb_scalar(w, "train/loss", 0.5f, 0, &err) == LT_OK);
    CHECK(lt_tb_scalar(w, "train/loss", 0.25f, 500, &err) == LT_OK);
    CHECK(lt_tb_scalar(w, "train/odd", NAN, -3, &err) == LT_OK);          /* negative step: 10-byte varint */
    CHECK(lt_tb_scalar(w, "train/big", 1e30f, 1LL << 40, &err) == LT_OK); /* wide step */
    const char *tags[4] = {"eval/accuracy", "eval/precision", "eval/recall", "eval/f1"};
    float vals[4] = {0.875f, 0.5f, -1.5f, 0.0f};
    CHECK(lt_tb_scalars(w, tags, vals, 4, 1000, &err) == LT_OK);
    CHECK(lt_tb_flush(w, &err) == LT_OK);
    CHECK(lt_tb_scalars(w, tags, vals, 0, 1, &err) == LT_OK); /* no-op */

    /* bad tags are rejected without writing anything */
    char longtag[LT_TB_TAG_MAX + 2];
    memset(longtag, 'a', sizeof longtag - 1);
    longtag[sizeof longtag - 1] = '\0';
    CHECK(lt_tb_scalar(w, "", 1.0f, 1, &err) == LT_ERR_ARG);
    CHECK(lt_tb_scalar(w, longtag, 1.0f, 1, &err) == LT_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "tag") != NULL, "message: %s", err.msg);

    char path[1024];
    snprintf(path, sizeof path, "%s", lt_tb_path(w));
    /* records reach the file before close: read it while the writer is still open */
    event ev[8];
    int n = read_events(path, ev, 8);
    CHECK_MSG(n == 6, "events before close: %d", n);
    CHECK(lt_tb_close(w, &err) == LT_OK);

    /* file name: events.out.tfevents.<10-digit unix time>.<hostname> */
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const char *base = strrchr(path, '/') + 1;
    long long stamp = 0;
    char rest[300] = "";
    CHECK_MSG(sscanf(base, "events.out.tfevents.%10lld.%299s", &stamp, rest) == 2, "name %s", base);
    CHECK_MSG(stamp >= (long long)t0 && stamp <= (long long)time(NULL), "stamp %lld", stamp);
    CHECK_MSG(strcmp(rest, host[0] ? host : "localhost") == 0, "host part %s", rest);
    CHECK(strlen(base) == strlen("events.out.tfevents.") + 10 + 1 + strlen(rest));

    n = read_events(path, ev, 8);
    CHECK_MSG(n == 6, "events: %d", n);
    if (n == 6) {
        CHECK(strcmp(ev[0].version, "brain.Event:2") == 0);
        CHECK(ev[0].nvalues == 0 && ev[0].step == 0);
        for (int i = 0; i < n; i++)
            CHECK_MSG(fabs(ev[i].wall_time - (double)t0) < 120.0, "wall_time %f", ev[i].wall_time);
        CHECK(ev[1].nvalues == 1 && strcmp(ev[1].tag[0], "train/loss") == 0 && ev[1].value[0] == 0.5f);
        CHECK(ev[1].step == 0 && ev[1].version[0] == '\0');
        CHECK(ev[2].step == 500 && ev[2].value[0] == 0.25f);
        CHECK(ev[3].step == -3 && isnan(ev[3].value[0]) && strcmp(ev[3].tag[0], "train/odd") == 0);
        CHECK(ev[4].step == (1LL << 40) && ev[4].value[0] == 1e30f);
        CHECK(ev[5].step == 1000 && ev[5].nvalues == 4);
        for (int k = 0; k < 4 && k < ev[5].nvalues; k++)
            CHECK_MSG(strcmp(ev[5].tag[k], tags[k]) == 0 && ev[5].value[k] == vals[k], "value %d: %s %g", k,
                      ev[5].tag[k], ev[5].value[k]);
        for (int i = 1; i < 5; i++) CHECK(ev[i].wall_time >= ev[0].wall_time);
    }

    /* a second writer in the same second gets its own file */
    lt_tb_writer *w2 = lt_tb_open(dir, &err), *w3 = lt_tb_open(dir, &err);
    CHECK(w2 && w3);
    if (w2 && w3) CHECK(strcmp(lt_tb_path(w2), lt_tb_path(w3)) != 0 && strcmp(lt_tb_path(w2), path) != 0);
    lt_tb_close(w2, &err);
    lt_tb_close(w3, &err);
    char names[8][512];
    int nf;
    find_event_files(dir, names, 8, &nf);
    CHECK_MSG(nf == 3, "event files: %d", nf);

    /* a file where the directory should be */
    char blocked[700];
    snprintf(blocked, sizeof blocked, "%s/blocked", root);
    FILE *f = fopen(blocked, "w");
    if (f) fclose(f);
    CHECK(lt_tb_open(blocked, &err) == NULL);
    CHECK_MSG(strstr(err.msg, blocked) != NULL, "message: %s", err.msg);
    CHECK(lt_tb_open("", &err) == NULL);
    CHECK(lt_tb_close(NULL, &err) == LT_OK);

    unlink(blocked);
    rm_rf(dir);
    snprintf(dir, sizeof dir, "%s/runs", root);
    rmdir(dir);
    rmdir(root);
}

int main(void) {
    test_crc32c();
    test_writer();
    return check_summary("test_tbevents");
}
