/* mirror.c - job records mirrored to <dir>/<id>.json by a writer thread (see mirror.h). */
#include "mirror.h"

#include "io/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One pending write; the newest put for an id replaces the older one. */
typedef struct pending {
    struct pending *next;
    char *id;
    char *json; /* NULL: delete */
} pending;

struct lt_mirror {
    char *dir;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pending *head; /* (unordered) writes not done yet; O(n) replace, n is what changed in 500 ms */
    int stop;
    pthread_t thread;
};

static void pending_free(pending *p) {
    while (p) {
        pending *next = p->next;
        free(p->id);
        free(p->json);
        free(p);
        p = next;
    }
}

/* Writes one record file without fsync: the mirror is a convenience copy, a crash loses at most the last
 * half second, and fsync per record would cap the throughput of a laptop's disk. */
static void write_one(const lt_mirror *m, const pending *p) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s.json", m->dir, p->id);
    if (!p->json) {
        unlink(path);
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(p->json, f) >= 0;
    if (f) ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "scheduler: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
}

static void flush(lt_mirror *m) {
    pthread_mutex_lock(&m->mu);
    pending *list = m->head;
    m->head = NULL;
    pthread_mutex_unlock(&m->mu);
    for (pending *p = list; p; p = p->next)
        write_one(m, p);
    pending_free(list);
}

static void *writer(void *arg) {
    lt_mirror *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 500 * 1000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&m->cv, &m->mu, &until);
        pthread_mutex_unlock(&m->mu);
        flush(m);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    flush(m);
    return NULL;
}

lt_mirror *lt_mirror_open(const char *dir, lt_err *err) {
    if (lt_mkdir_p(dir, err) != LT_OK) return NULL;
    lt_mirror *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    if (pthread_create(&m->thread, NULL, writer, m)) {
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
        free(m->dir);
        free(m);
        lt_errorf(err, LT_ERR_NOMEM, "cannot start the mirror thread");
        return NULL;
    }
    return m;
}

void lt_mirror_close(lt_mirror *m) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    pending_free(m->head);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m->dir);
    free(m);
}

lt_status lt_mirror_put(lt_mirror *m, const char *id, const char *json, lt_err *err) {
    char *copy = NULL;
    if (json && !(copy = strdup(json))) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&m->mu);
    pending *p = m->head;
    while (p && strcmp(p->id, id))
        p = p->next;
    if (p) {
        free(p->json);
        p->json = copy;
        pthread_mutex_unlock(&m->mu);
        return LT_OK;
    }
    p = calloc(1, sizeof *p);
    if (!p || !(p->id = strdup(id))) {
        pthread_mutex_unlock(&m->mu);
        free(p);
        free(copy);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    p->json = copy;
    p->next = m->head;
    m->head = p;
    pthread_mutex_unlock(&m->mu);
    return LT_OK;
}

lt_status lt_mirror_scan(const char *dir, size_t max_bytes, lt_mirror_record_fn load, void *ctx, size_t *n,
                         lt_err *err) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return LT_OK;
        return lt_errorf(err, LT_ERR_IO, "%s: %s", dir, strerror(errno));
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") || e->d_name[0] == '.') continue;
        char path[4096], name[256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(name, sizeof name, "%.*s", (int)(len - 5), e->d_name);
        char *data = NULL;
        size_t dlen = 0;
        lt_err rerr = {{0}};
        lt_status st = lt_read_file(path, &data, &dlen, max_bytes, &rerr);
        if (st == LT_OK) st = load(ctx, name, data, dlen, &rerr);
        free(data);
        if (st == LT_OK)
            (*n)++;
        else if (st != LT_ERR_NOT_FOUND)
            fprintf(stderr, "scheduler: skipping %s: %s\n", path, rerr.msg);
    }
    closedir(d);
    return LT_OK;
}

static lt_status load_job_record(void *ctx, const char *name, const char *data, size_t len, lt_err *err) {
    char id[LT_JOB_ID_MAX];
    snprintf(id, sizeof id, "%s", name);
    return lt_sched_load_record(ctx, id, data, len, err);
}

lt_status lt_mirror_load(const char *dir, lt_sched *s, size_t *n, lt_err *err) {
    return lt_mirror_scan(dir, (size_t)64 << 20, load_job_record, s, n, err);
}
