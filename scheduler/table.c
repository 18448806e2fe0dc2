/* table.c - job records in two chained hash maps (by id, owning; by Idempotency-Key, borrowing). */
#include "table.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *next; /* bucket chain */
    const char *key;    /* points into job (its id or idempotency_key) */
    lt_job *job;
} entry;

typedef struct {
    entry **buckets; /* (cap) */
    size_t cap;      /* power of two */
    size_t n;
} map;

struct lt_table {
    pthread_mutex_t mu;
    map by_id;  /* owns the jobs */
    map by_key; /* Idempotency-Key -> job, borrowed from by_id */
};

static uint64_t hash_str(const char *s) { /* FNV-1a */
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int map_init(map *m) {
    m->cap = 64;
    m->n = 0;
    m->buckets = calloc(m->cap, sizeof *m->buckets);
    return m->buckets != NULL;
}

static void map_free(map *m, int free_jobs) {
    for (size_t i = 0; i < m->cap && m->buckets; i++) {
        for (entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            if (free_jobs) lt_job_destroy(e->job);
            free(e);
        }
    }
    free(m->buckets);
    m->buckets = NULL;
}

static entry **map_slot(const map *m, const char *key) {
    entry **p = &m->buckets[hash_str(key) & (m->cap - 1)];
    while (*p && strcmp((*p)->key, key))
        p = &(*p)->next;
    return p;
}

/* Doubles the bucket array when the load passes 1; a failed growth just leaves longer chains. */
static void map_grow(map *m) {
    if (m->n < m->cap) return;
    size_t cap = m->cap * 2;
    entry **b = calloc(cap, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < m->cap; i++) {
        for (entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t k = hash_str(e->key) & (cap - 1);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->cap = cap;
}

/* Removes key's entry and returns its job (NULL when absent). */
static lt_job *map_take(map *m, const char *key) {
    entry **p = map_slot(m, key);
    entry *e = *p;
    if (!e) return NULL;
    *p = e->next;
    lt_job *j = e->job;
    free(e);
    m->n--;
    return j;
}

lt_table *lt_table_create(void) {
    lt_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (!map_init(&t->by_id) || !map_init(&t->by_key)) goto err;
    if (pthread_mutex_init(&t->mu, NULL)) goto err;
    return t;
err:
    map_free(&t->by_id, 0);
    map_free(&t->by_key, 0);
    free(t);
    return NULL;
}

void lt_table_destroy(lt_table *t) {
    if (!t) return;
    map_free(&t->by_key, 0);
    map_free(&t->by_id, 1);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void lt_table_lock(lt_table *t) {
    pthread_mutex_lock(&t->mu);
}

void lt_table_unlock(lt_table *t) {
    pthread_mutex_unlock(&t->mu);
}

lt_job *lt_table_find(lt_table *t, const char *id) {
    entry *e = *map_slot(&t->by_id, id);
    return e ? e->job : NULL;
}

lt_job *lt_table_find_idempotent(lt_table *t, const char *key) {
    entry *e = *map_slot(&t->by_key, key);
    return e ? e->job : NULL;
}

lt_status lt_table_put(lt_table *t, lt_job *j) {
    /* allocate both entries first so a failure changes nothing */
    entry *e = malloc(sizeof *e), *k = j->idempotency_key ? malloc(sizeof *k) : NULL;
    if (!e || (j->idempotency_key && !k)) {
        free(e);
        free(k);
        lt_job_destroy(j);
        return LT_ERR_NOMEM;
    }
    lt_job *old = map_take(&t->by_id, j->id);
    if (old && old->idempotency_key) {
        entry *ke = *map_slot(&t->by_key, old->idempotency_key);
        if (ke && ke->job == old) map_take(&t->by_key, old->idempotency_key);
    }
    lt_job_destroy(old);
    map_grow(&t->by_id);
    entry **slot = map_slot(&t->by_id, j->id);
    *e = (entry){.next = NULL, .key = j->id, .job = j};
    *slot = e;
    t->by_id.n++;
    if (k) {
        map_take(&t->by_key, j->idempotency_key); /* the newest record with a key wins */
        map_grow(&t->by_key);
        slot = map_slot(&t->by_key, j->idempotency_key);
        *k = (entry){.next = NULL, .key = j->idempotency_key, .job = j};
        *slot = k;
        t->by_key.n++;
    }
    return LT_OK;
}

void lt_table_remove(lt_table *t, const char *id) {
    lt_job *j = map_take(&t->by_id, id);
    if (!j) return;
    if (j->idempotency_key) {
        entry *ke = *map_slot(&t->by_key, j->idempotency_key);
        if (ke && ke->job == j) map_take(&t->by_key, j->idempotency_key);
    }
    lt_job_destroy(j);
}

size_t lt_table_size(const lt_table *t) {
    return t->by_id.n;
}

void lt_table_counts(const lt_table *t, size_t counts[LT_JOB_STATE_COUNT]) {
    memset(counts, 0, LT_JOB_STATE_COUNT * sizeof *counts);
    for (size_t i = 0; i < t->by_id.cap; i++)
        for (const entry *e = t->by_id.buckets[i]; e; e = e->next)
            if ((unsigned)e->job->state < LT_JOB_STATE_COUNT) counts[e->job->state]++;
}

static int newest_first(const void *a, const void *b) {
    const lt_job *x = *(lt_job *const *)a, *y = *(lt_job *const *)b;
    int c = strcmp(y->created_at, x->created_at);
    return c ? c : strcmp(y->id, x->id);
}

cJSON *lt_table_list(const lt_table *t, int state, size_t limit, size_t *total) {
    return lt_table_list_type(t, NULL, state, limit, total);
}

/* a record's type as lt_table_list_type compares it ("training" when the record has none) */
static const char *type_of(const lt_job *j) {
    return j->type ? j->type : "training";
}

cJSON *lt_table_list_type(const lt_table *t, const char *type, int state, size_t limit, size_t *total) {
    *total = 0;
    /* O(N log N) per call: fine for the thousands of jobs a console lists */
    lt_job **sel = malloc((t->by_id.n ? t->by_id.n : 1) * sizeof *sel);
    cJSON *arr = cJSON_CreateArray();
    if (!sel || !arr) goto err;
    size_t n = 0;
    for (size_t i = 0; i < t->by_id.cap; i++)
        for (const entry *e = t->by_id.buckets[i]; e; e = e->next)
            if ((state < 0 || (int)e->job->state == state) && (!type || !strcmp(type_of(e->job), type)))
                sel[n++] = e->job;
    qsort(sel, n, sizeof *sel, newest_first);
    *total = n;
    for (size_t i = 0; i < n && i < limit; i++) {
        cJSON *o = lt_job_to_json(sel[i]);
        if (!o) goto err;
        cJSON_AddItemToArray(arr, o);
    }
    free(sel);
    return arr;
err:
    free(sel);
    cJSON_Delete(arr);
    return NULL;
}
