/* batcher.c - a queue of jobs and one inference thread that predicts them in batches. */
#include "batcher.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One submission: lives on the submitting thread's stack until it is answered. */
typedef struct job {
    const lt_image *const *imgs; /* (n) */
    int n;
    lt_infer_prediction *out; /* (n) the caller's */
    lt_status st;             /* the answer, valid once done */
    lt_err err;
    int done;
    struct job *next;
} job;

struct lt_infer_batcher {
    lt_infer_predict_fn fn;
    void *ctx;
    lt_infer_batcher_opts opts;
    pthread_mutex_t mu;      /* guards everything below */
    pthread_cond_t work;     /* a job was queued, or stopping was set (CLOCK_MONOTONIC waits) */
    pthread_cond_t answered; /* some job got its answer */
    job *head, *tail;        /* FIFO of queued jobs */
    int stopping;            /* no new jobs; the thread drains the queue and ends */
    lt_infer_batcher_stats stats;
    pthread_t thread;
};

lt_status lt_infer_batcher_model_fn(void *ctx, const lt_image *const *imgs, int n, lt_infer_prediction *out,
                                    lt_err *err) {
    return lt_infer_model_predict(ctx, imgs, n, out, err);
}

static struct timespec deadline_after(int ms) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static job *pop(lt_infer_batcher *b) {
    job *j = b->head;
    b->head = j->next;
    if (!b->head) b->tail = NULL;
    j->next = NULL;
    b->stats.queued_jobs--;
    b->stats.queued_images -= j->n;
    return j;
}

/* Predicts the jobs of one batch (linked through next, count images in all) without the lock held. */
static void run_batch(lt_infer_batcher *b, job *first, int count) {
    const lt_image **imgs = malloc((size_t)count * sizeof *imgs);
    lt_infer_prediction *out = calloc((size_t)count, sizeof *out);
    lt_err err = {{0}};
    lt_status st;
    if (!imgs || !out) {
        st = lt_errorf(&err, LT_ERR_NOMEM, "out of memory");
    } else {
        int k = 0;
        for (job *j = first; j; j = j->next)
            for (int i = 0; i < j->n; i++)
                imgs[k++] = j->imgs[i];
        st = b->fn(b->ctx, imgs, count, out, &err);
    }
    int k = 0;
    for (job *j = first; j; j = j->next) {
        j->st = st;
        if (st == LT_OK)
            memcpy(j->out, out + k, (size_t)j->n * sizeof *out); /* ownership moves to the job */
        else
            j->err = err;
        k += j->n;
    }
    free(imgs);
    free(out);
}

static void *batcher_thread(void *arg) {
    lt_infer_batcher *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->stopping)
            pthread_cond_wait(&b->work, &b->mu);
        if (!b->head) break; /* stopping and drained */
        job *first = pop(b), *last = first;
        int count = first->n;
        struct timespec deadline = deadline_after(b->opts.max_delay_ms);
        while (count < b->opts.max_batch) {
            if (b->head) {
                if (count + b->head->n > b->opts.max_batch) break; /* never split a job */
                last->next = pop(b);
                last = last->next;
                count += last->n;
                continue;
            }
            if (b->stopping || b->opts.max_delay_ms == 0) break;
            if (pthread_cond_timedwait(&b->work, &b->mu, &deadline) == ETIMEDOUT && !b->head) break;
        }
        pthread_mutex_unlock(&b->mu);
        run_batch(b, first, count);
        pthread_mutex_lock(&b->mu);
        b->stats.batches++;
        b->stats.images += (uint64_t)count;
        for (job *j = first, *next; j; j = next) {
            next = j->next; /* j belongs to its submitter once done is set */
            b->stats.jobs++;
            j->done = 1;
        }
        pthread_cond_broadcast(&b->answered);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

lt_status lt_infer_batcher_create(lt_infer_predict_fn fn, void *ctx, const lt_infer_batcher_opts *opts,
                                  lt_infer_batcher **out, lt_err *err) {
    *out = NULL;
    lt_infer_batcher_opts o = opts ? *opts : (lt_infer_batcher_opts){0};
    if (o.max_batch < 0 || o.max_delay_ms < 0 || o.max_queue < 0)
        return lt_errorf(err, LT_ERR_ARG, "batcher: max_batch, max_delay_ms and max_queue must be >= 0");
    if (o.max_batch == 0) o.max_batch = 8;
    if (!opts) o.max_delay_ms = 2;
    if (o.max_queue == 0) o.max_queue = 1024;
    lt_infer_batcher *b = calloc(1, sizeof *b);
    if (!b) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    b->fn = fn;
    b->ctx = ctx;
    b->opts = o;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&b->answered, NULL);
    pthread_mutex_init(&b->mu, NULL);
    if (pthread_create(&b->thread, NULL, batcher_thread, b) != 0) {
        pthread_cond_destroy(&b->work);
        pthread_cond_destroy(&b->answered);
        pthread_mutex_destroy(&b->mu);
        free(b);
        return lt_errorf(err, LT_ERR_NOMEM, "batcher: cannot start the inference thread");
    }
    *out = b;
    return LT_OK;
}

void lt_infer_batcher_destroy(lt_infer_batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->answered);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

lt_status lt_infer_batcher_submit(lt_infer_batcher *b, const lt_image *const *imgs, int n,
                                  lt_infer_prediction *out, lt_err *err) {
    if (n < 1) return lt_errorf(err, LT_ERR_ARG, "no image to predict");
    job j = {.imgs = imgs, .n = n, .out = out};
    pthread_mutex_lock(&b->mu);
    if (b->stopping) {
        pthread_mutex_unlock(&b->mu);
        return lt_errorf(err, LT_ERR_CANCELLED, "the server is shutting down");
    }
    /* a job alone may exceed max_queue (the request limits bound it); otherwise the queue is bounded */
    if (b->stats.queued_images > 0 && b->stats.queued_images + n > b->opts.max_queue) {
        int q = b->stats.queued_images;
        pthread_mutex_unlock(&b->mu);
        return lt_errorf(err, LT_ERR_STATE,
                         "the server is busy: %d images are waiting (limit %d); retry later", q,
                         b->opts.max_queue);
    }
    if (b->tail)
        b->tail->next = &j;
    else
        b->head = &j;
    b->tail = &j;
    b->stats.queued_jobs++;
    b->stats.queued_images += n;
    pthread_cond_signal(&b->work);
    while (!j.done)
        pthread_cond_wait(&b->answered, &b->mu);
    pthread_mutex_unlock(&b->mu);
    if (j.st != LT_OK && err) *err = j.err;
    return j.st;
}

void lt_infer_batcher_get_stats(lt_infer_batcher *b, lt_infer_batcher_stats *s) {
    pthread_mutex_lock(&b->mu);
    *s = b->stats;
    pthread_mutex_unlock(&b->mu);
}
