/* The worker against librdkafka's mock cluster (in-process, real protocol) and a local storage folder:
 * a job runs to SUCCEEDED with its events in order and its offset committed only after the final event;
 * malformed messages go to the DLQ and the next job still runs; a redelivered completed job is not trained
 * again; bad hyperparameters fail at once; a cancel stops a running job (and one that has not started);
 * a shutdown mid-job leaves it uncommitted with its checkpoint in storage, and the next worker resumes it;
 * jobs polled while a job runs wait in the worker's local queue and run once each, in partition order, with
 * the offset committed after the last; a shutdown with jobs queued commits none of them, and the next worker
 * (with a queue of 4, so it pauses and resumes its partitions over and over) runs them all. */
#define _GNU_SOURCE
#include "check.h"
#include "service.h"
#include "fixtures.h"
#include "io/fsutil.h"
#include "messaging/kafka.h"
#include "messaging/messages.h"
#include "messaging/mock.h"
#include "worker/worker.h"
#include "worker_thread.h"

#include <png.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *labels[3] = {"blue", "green", "red"};

/* A 16x16 image whose dominant channel is the class. */
static void write_png(const char *path, int cls, unsigned seed) {
    fixture_class_png(path, 16, cls, seed);
}

static void make_split(const char *root, const char *split, int per_class, unsigned seed) {
    char path[1024];
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/%s/%s", root, split, labels[c]);
        lt_mkdir_p(path, NULL);
        for (int i = 0; i < per_class; i++) {
            snprintf(path, sizeof path, "%s/%s/%s/img%02d.png", root, split, labels[c], i);
            write_png(path, c, seed + (unsigned)(c * 100 + i));
        }
    }
}

/* ---- the worker on a thread ---- */

typedef test_worker_thread worker_thread;

/* Options as the tests want them; the caller may change them before test_worker_go. */
static void worker_init(worker_thread *w, const lt_kafka_config *c, const char *storage, const char *work,
                        const char *id) {
    memset(w, 0, sizeof *w);
    lt_worker_opts_init(&w->o);
    w->o.kafka = *c;
    w->o.storage = storage;
    w->o.work_dir = work;
    w->o.worker_id = id;
    w->o.progress_interval_ms = 0; /* every step, so the test sees them all */
    w->o.retry_base_ms = 200;
    w->o.max_attempts = 3;
    w->o.storage_retries = 0;
}

static void worker_start(worker_thread *w, const lt_kafka_config *c, const char *storage, const char *work,
                         const char *id) {
    worker_init(w, c, storage, work, id);
    test_worker_go(w);
}


/* ---- events ---- */

#define MAX_EVENTS 4096

typedef struct {
    rd_kafka_t *rk; /* reader of <p>events */
    lt_msg_event ev[MAX_EVENTS];
    int32_t part[MAX_EVENTS]; /* the <p>events partition each came from */
    int n;
} events;

/* Reads whatever has arrived. */
static void events_poll(events *e, int timeout_ms) {
    rd_kafka_message_t *m;
    while ((m = rd_kafka_consumer_poll(e->rk, timeout_ms)) != NULL) {
        timeout_ms = 0;
        lt_err err = {{0}};
        if (!m->err && e->n < MAX_EVENTS) {
            lt_status st = lt_msg_event_decode(m->payload, m->len, &e->ev[e->n], &err);
            CHECK_MSG(st == LT_OK, "event does not decode: %s", err.msg);
            if (st == LT_OK) e->part[e->n++] = m->partition;
        }
        rd_kafka_message_destroy(m);
    }
}

/* Index of the first event at or after `from` for job of type (and state, for state events; -1: any
 * final state), waiting up to timeout_s; -1 when none came. */
static int events_wait(events *e, int from, const char *job, lt_msg_event_type type, int state,
                       double timeout_s) {
    double until = test_now_s() + timeout_s;
    for (;;) {
        for (int i = from; i < e->n; i++) {
            const lt_msg_event *v = &e->ev[i];
            if (strcmp(v->job_id, job) != 0 || v->type != type) continue;
            if (type == LT_EV_STATE && state >= 0 && (int)v->state != state) continue;
            if (type == LT_EV_STATE && state < 0 && !lt_job_state_is_final(v->state)) continue;
            return i;
        }
        if (test_now_s() > until) return -1;
        events_poll(e, 100);
    }
}

/* The events of one job from index from..to (inclusive), as a compact string: "S:RUNNING P L E C R
 * S:SUCCEEDED". */
static void events_trace(const events *e, const char *job, int from, int to, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = from; i <= to && i < e->n && n + 24 < size; i++) {
        const lt_msg_event *v = &e->ev[i];
        if (strcmp(v->job_id, job) != 0) continue;
        if (v->type == LT_EV_STATE)
            n += (size_t)snprintf(buf + n, size - n, "S:%s ", lt_job_state_name(v->state));
        else
            n += (size_t)snprintf(buf + n, size - n, "%c ", "SPLECR"[v->type]);
    }
}

/* ---- Kafka helpers ---- */

static void submit(lt_kafka_producer *p, const lt_kafka_config *c, const char *id, const char *hp,
                   const char *dataset) {
    char topic[LT_KAFKA_TOPIC_MAX], output[256], *json = NULL;
    lt_msg_job j = {0};
    lt_err err = {{0}};
    snprintf(output, sizeof output, "trainings/%s", id);
    j.type = "training";
    j.id = (char *)id;
    j.name = "test";
    j.algorithm = "image-classification";
    j.dataset = (char *)dataset;
    j.output = output;
    j.hyperparameters = cJSON_Parse(hp);
    CHECK_MSG(lt_msg_job_encode(&j, &json, &err) == LT_OK, "encode: %s", err.msg);
    CHECK(lt_kafka_produce_sync(p, lt_kafka_topic(c, LT_TOPIC_JOBS, topic, sizeof topic), id, json,
                                strlen(json), NULL, 0, &err) == LT_OK);
    cJSON_Delete(j.hyperparameters);
    free(json);
}

static void produce_raw(lt_kafka_producer *p, const lt_kafka_config *c, lt_topic t, const char *key,
                        const char *text) {
    char topic[LT_KAFKA_TOPIC_MAX];
    lt_err err = {{0}};
    CHECK(lt_kafka_produce_sync(p, lt_kafka_topic(c, t, topic, sizeof topic), key, text, strlen(text), NULL,
                                0, &err) == LT_OK);
}

static void cancel(lt_kafka_producer *p, const lt_kafka_config *c, const char *id) {
    lt_msg_control m = {LT_CONTROL_CANCEL, ""};
    snprintf(m.id, sizeof m.id, "%s", id);
    char *json = lt_msg_control_encode(&m, NULL);
    produce_raw(p, c, LT_TOPIC_CONTROL, id, json);
    free(json);
}

/* A "noop" job (the dispatch benchmark's: a result and SUCCEEDED, no storage, no training) keyed by key,
 * so it lands in key's partition of <p>jobs. */
static void submit_noop(lt_kafka_producer *p, const lt_kafka_config *c, const char *key, const char *id) {
    char topic[LT_KAFKA_TOPIC_MAX], output[256], *json = NULL;
    lt_msg_job j = {0};
    lt_err err = {{0}};
    snprintf(output, sizeof output, "noop/%s", id);
    j.type = "noop";
    j.id = (char *)id;
    j.name = "";
    j.algorithm = "noop";
    j.dataset = "none";
    j.output = output;
    CHECK_MSG(lt_msg_job_encode(&j, &json, &err) == LT_OK, "encode: %s", err.msg);
    CHECK(lt_kafka_produce_sync(p, lt_kafka_topic(c, LT_TOPIC_JOBS, topic, sizeof topic), key, json,
                                strlen(json), NULL, 0, &err) == LT_OK);
    free(json);
}

#define QID 32

/* n job ids "<prefix>-<k>" whose events all go to partition 0 of <p>events (and whose messages, keyed by
 * id, to partition 0 of <p>jobs): librdkafka's default partitioner (consistent_random) hashes the key
 * with CRC32. In one partition the events arrive in the order the worker produced them, so the order of
 * the final states is the order the jobs ran in. */
static void ids_in_partition0(const char *prefix, int n, int partitions, char (*ids)[QID]) {
    for (int k = 0, got = 0; got < n; k++) {
        snprintf(ids[got], QID, "%s-%d", prefix, k);
        if (rd_kafka_msg_partitioner_consistent_random(NULL, ids[got], strlen(ids[got]), partitions, NULL,
                                                       NULL) == 0)
            got++;
    }
}

/* The final state events of ids[0..n) must come exactly once each, from partition 0, in the order of
 * ids, all at or after index from: no job lost, run twice or run out of order. ids[0] is the slow job
 * (final state first_state); the others are noop jobs (SUCCEEDED after exactly one result). */
static void check_ran_once_in_order(const events *e, int from, char (*ids)[QID], int n,
                                    lt_job_state first_state, const char *what) {
    int prev = -1;
    for (int k = 0; k < n; k++) {
        int finals = 0, results = 0, at = -1, other = 0;
        for (int i = 0; i < e->n; i++) {
            if (strcmp(e->ev[i].job_id, ids[k]) != 0) continue;
            if (i < from) other++;
            if (e->ev[i].type == LT_EV_RESULT) results++;
            if (e->ev[i].type == LT_EV_STATE && lt_job_state_is_final(e->ev[i].state)) {
                finals++;
                at = i;
            }
        }
        lt_job_state want = k == 0 ? first_state : LT_JOB_SUCCEEDED;
        CHECK_MSG(finals == 1 && other == 0, "%s: %s has %d final events (%d before this part), expected 1",
                  what, ids[k], finals, other);
        CHECK_MSG(k == 0 || results == 1, "%s: %s has %d result events, expected 1", what, ids[k], results);
        if (at < 0) continue;
        CHECK_MSG(e->ev[at].state == want, "%s: %s ended %s, expected %s", what, ids[k],
                  lt_job_state_name(e->ev[at].state), lt_job_state_name(want));
        CHECK_MSG(e->part[at] == 0,
                  "%s: %s's events came from partition %d, not 0 (the producer's partitioner "
                  "changed? ids_in_partition0 assumes consistent_random)",
                  what, ids[k], (int)e->part[at]);
        CHECK_MSG(at > prev, "%s: %s ended before %s: jobs ran out of order", what, ids[k],
                  k ? ids[k - 1] : "-");
        prev = at;
    }
}

/* Waits until every id has a final event (or timeout_s passed), then reads on for a moment so that
 * duplicates would show. */
static void wait_all_final(events *e, int from, char (*ids)[QID], int n, double timeout_s) {
    double until = test_now_s() + timeout_s;
    for (int k = 0; k < n; k++)
        if (events_wait(e, from, ids[k], LT_EV_STATE, -1, until - test_now_s()) < 0) break;
    events_poll(e, 500);
}

/* Sum of the group's committed offsets over the jobs partitions: the number of job messages settled
 * (every partition starts at offset 0). */
static int64_t committed_total(rd_kafka_t *rk, const lt_kafka_config *c, int partitions) {
    char topic[LT_KAFKA_TOPIC_MAX];
    lt_kafka_topic(c, LT_TOPIC_JOBS, topic, sizeof topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int i = 0; i < partitions; i++)
        rd_kafka_topic_partition_list_add(l, topic, i);
    int64_t total = -1;
    if (!rd_kafka_committed(rk, l, 5000)) {
        total = 0;
        for (int i = 0; i < partitions; i++)
            if (l->elems[i].offset > 0) total += l->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return total;
}

static int64_t wait_committed(rd_kafka_t *rk, const lt_kafka_config *c, int partitions, int64_t want,
                              double timeout_s) {
    double until = test_now_s() + timeout_s;
    int64_t got;
    while ((got = committed_total(rk, c, partitions)) != want && test_now_s() < until)
        usleep(100000);
    return got;
}

static char *read_text(const char *root, const char *rel) {
    char path[1024], *data = NULL;
    size_t n;
    snprintf(path, sizeof path, "%s/%s", root, rel);
    if (lt_read_file(path, &data, &n, 1 << 20, NULL) != LT_OK) return NULL;
    return data;
}

int main(void) {
    char tmp[] = "/tmp/lathe_test_worker_XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    char store[600], work[600], data[700];
    snprintf(store, sizeof store, "%s/store", tmp);
    snprintf(work, sizeof work, "%s/work", tmp);
    snprintf(data, sizeof data, "%s/datasets/tiny", store);
    make_split(data, "train", 4, 1);      /* 12 images */
    make_split(data, "validation", 1, 2); /* 3 images */

    const int partitions = 2;
    lt_kafka_config c;
    lt_err err = {{0}};
    /* The mock cluster waits session.timeout.ms - 1 s after a member leaves before it rebalances; 3 s
     * keeps the restart below quick. Passed the way an operator would. */
    setenv("LATHE_KAFKA_SESSION_TIMEOUT_MS", "3000", 1);
    setenv("LATHE_KAFKA_HEARTBEAT_INTERVAL_MS", "500", 1);
    lt_kafka_config_init(&c, NULL);
    lt_kafka_config_set(&c, NULL, "tw.", NULL);
    c.jobs_partitions = partitions;
    lt_kafka_mock *mock = lt_kafka_mock_new(3, &c, &err);
    CHECK_MSG(mock != NULL, "mock: %s", err.msg);
    if (!mock) return check_summary("test_worker");
    lt_kafka_config_set(&c, lt_kafka_mock_bootstraps(mock), NULL, NULL);

    lt_kafka_producer *p = lt_kafka_producer_new(&c, "test", 10000, &err);
    events ev = {0};
    char topic[LT_KAFKA_TOPIC_MAX], trace[2048];
    ev.rk = lt_kafka_reader_new(&c, "test-events", &err);
    CHECK(ev.rk && lt_kafka_reader_assign_all(ev.rk, lt_kafka_topic(&c, LT_TOPIC_EVENTS, topic, sizeof topic),
                                              1, 5000, &err) == LT_OK);
    rd_kafka_conf_t *gconf = lt_kafka_conf_new(&c, "test-offsets", &err);
    lt_kafka_conf_set(gconf, "group.id", "tw.workers", &err);
    rd_kafka_t *group = rd_kafka_new(RD_KAFKA_CONSUMER, gconf, NULL, 0);

    worker_thread w;
    worker_start(&w, &c, store, work, "w1");

    /* 1. a job runs to SUCCEEDED: 12 images, batches of 4, one epoch = 3 steps */
    const char *tiny = "{\"input_size\":16,\"num_train_epochs\":1,\"per_device_train_batch_size\":4,"
                       "\"per_device_eval_batch_size\":3,\"learning_rate\":0.001}";
    submit(p, &c, "job-a", tiny, "datasets/tiny");
    int running = events_wait(&ev, 0, "job-a", LT_EV_STATE, LT_JOB_RUNNING, 60);
    CHECK_MSG(running >= 0, "job-a never ran");
    int progress = events_wait(&ev, running, "job-a", LT_EV_PROGRESS, 0, 60);
    /* while it runs, its offset is not committed */
    CHECK(progress >= 0 && committed_total(group, &c, partitions) <= 0);
    int final = events_wait(&ev, running, "job-a", LT_EV_STATE, -1, 60);
    CHECK_MSG(final >= 0 && ev.ev[final].state == LT_JOB_SUCCEEDED, "job-a: %s",
              final >= 0 && ev.ev[final].error ? ev.ev[final].error : "no final event");
    events_trace(&ev, "job-a", 0, final, trace, sizeof trace);
    /* in order: RUNNING, progress (the trainer itself throttles to 4/s, but always sends the last step),
     * log/eval/checkpoint at the epoch end, result, SUCCEEDED last */
    int last_step = -1;
    for (int i = running; i < final; i++)
        if (!strcmp(ev.ev[i].job_id, "job-a") && ev.ev[i].type == LT_EV_PROGRESS)
            last_step = (int)ev.ev[i].step;
    CHECK_MSG(last_step == 3, "job-a: last progress step %d, expected 3", last_step);
    CHECK_MSG(!strncmp(trace, "S:RUNNING P ", 12) && strstr(trace, "E ") && strstr(trace, "C ") &&
                  strstr(trace, "R S:SUCCEEDED ") &&
                  !strcmp(strstr(trace, "R S:SUCCEEDED "), "R S:SUCCEEDED "),
              "job-a events: %s", trace);
    int result = events_wait(&ev, running, "job-a", LT_EV_RESULT, 0, 1);
    CHECK(result >= 0 && result < final && ev.ev[result].output &&
          strstr(ev.ev[result].output, "trainings/job-a") &&
          cJSON_GetObjectItem(ev.ev[result].metrics, "validation") != NULL);
    int ck = events_wait(&ev, running, "job-a", LT_EV_CHECKPOINT, 0, 1);
    CHECK(ck >= 0 && ev.ev[ck].step == 3 && strstr(ev.ev[ck].uri, "trainings/job-a/checkpoints/step-3"));
    for (int i = running; i <= final; i++)
        if (!strcmp(ev.ev[i].job_id, "job-a")) CHECK(ev.ev[i].attempt == 1 && !strcmp(ev.ev[i].worker, "w1"));
    CHECK(wait_committed(group, &c, partitions, 1, 10) == 1);
    char out_a[700];
    snprintf(out_a, sizeof out_a, "%s/trainings/job-a", store);
    const char *files[] = {"config.json",        "preprocessor_config.json",
                           "model.safetensors",  "metrics.json",
                           "trainer_state.json", ".lathe/result.json",
                           "checkpoints/latest", "checkpoints/step-3/model.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", out_a, files[i]);
        CHECK_MSG(lt_path_exists(path), "missing %s", path);
    }
    char *attempt = read_text(out_a, ".lathe/attempt");
    CHECK(attempt && !strcmp(attempt, "1\n"));
    free(attempt);

    /* 2. malformed messages go to the DLQ (a readable id also gets FAILED); the job behind them runs.
     *    Keyed "job-c", so they share job-c's partition. 3. bad hyperparameters fail at once. */
    produce_raw(p, &c, LT_TOPIC_JOBS, "job-c", "this is not json");
    produce_raw(
        p, &c, LT_TOPIC_JOBS, "job-c",
        "{\"schema\":2,\"type\":\"training\",\"id\":\"job-bad\",\"algorithm\":\"image-classification\","
        "\"dataset\":\"d\",\"output\":\"o\"}");
    submit(p, &c, "job-hp", "{\"learning_rate\":-1}", "datasets/tiny");
    /* 4. cancel of a running job: 30 epochs would take long; it stops at the next step */
    const char *long_run = "{\"input_size\":16,\"num_train_epochs\":30,\"per_device_train_batch_size\":4,"
                           "\"per_device_eval_batch_size\":3}";
    submit(p, &c, "job-c", long_run, "datasets/tiny");
    int bad = events_wait(&ev, 0, "job-bad", LT_EV_STATE, LT_JOB_FAILED, 60);
    CHECK_MSG(bad >= 0 && ev.ev[bad].error && strstr(ev.ev[bad].error, "schema"), "job-bad: %s",
              bad >= 0 && ev.ev[bad].error ? ev.ev[bad].error : "no FAILED event");
    int hp = events_wait(&ev, 0, "job-hp", LT_EV_STATE, -1, 60);
    CHECK_MSG(hp >= 0 && ev.ev[hp].state == LT_JOB_FAILED && ev.ev[hp].error &&
                  strstr(ev.ev[hp].error, "learning_rate"),
              "job-hp: %s", hp >= 0 && ev.ev[hp].error ? ev.ev[hp].error : "no final event");
    CHECK(events_wait(&ev, 0, "job-hp", LT_EV_STATE, LT_JOB_RUNNING, 0) < 0); /* never ran */
    int crun = events_wait(&ev, 0, "job-c", LT_EV_PROGRESS, 0, 60);
    CHECK_MSG(crun >= 0, "job-c never made progress");
    cancel(p, &c, "job-c");
    int cfinal = events_wait(&ev, 0, "job-c", LT_EV_STATE, -1, 60);
    CHECK_MSG(cfinal >= 0 && ev.ev[cfinal].state == LT_JOB_CANCELLED, "job-c: %s",
              cfinal >= 0 ? lt_job_state_name(ev.ev[cfinal].state) : "no final event");
    int last_progress = -1;
    for (int i = 0; i < cfinal; i++)
        if (!strcmp(ev.ev[i].job_id, "job-c") && ev.ev[i].type == LT_EV_PROGRESS) last_progress = i;
    CHECK(last_progress >= 0 && ev.ev[last_progress].step < ev.ev[last_progress].total_steps);
    rd_kafka_t *dlq = lt_kafka_reader_new(&c, "test-dlq", &err);
    CHECK(dlq && lt_kafka_reader_assign_all(dlq, lt_kafka_topic(&c, LT_TOPIC_DLQ, topic, sizeof topic), 1,
                                            5000, &err) == LT_OK);
    int dead = 0, with_error = 0;
    for (double until = test_now_s() + 10; dead < 2 && test_now_s() < until;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(dlq, 100);
        if (!m) continue;
        if (!m->err) {
            dead++;
            rd_kafka_headers_t *h = NULL;
            const void *v;
            size_t n;
            if (!rd_kafka_message_headers(m, &h) && !rd_kafka_header_get_last(h, "error", &v, &n) && n > 0 &&
                !rd_kafka_header_get_last(h, "source", &v, &n) && n > 0)
                with_error++;
        }
        rd_kafka_message_destroy(m);
    }
    CHECK_MSG(dead == 2 && with_error == 2, "DLQ: %d messages, %d with error/source headers", dead,
              with_error);
    /* 5 messages settled: job-a, two malformed, job-hp, job-c */
    CHECK(wait_committed(group, &c, partitions, 5, 10) == 5);

    /* 5. a completed job delivered again is not trained again: result and SUCCEEDED only, same attempt */
    int before = ev.n;
    submit(p, &c, "job-a", tiny, "datasets/tiny");
    int again = events_wait(&ev, before, "job-a", LT_EV_STATE, -1, 60);
    CHECK(again >= 0 && ev.ev[again].state == LT_JOB_SUCCEEDED && ev.ev[again].attempt == 1);
    events_trace(&ev, "job-a", before, again, trace, sizeof trace);
    CHECK_MSG(!strcmp(trace, "R S:SUCCEEDED "), "redelivered job-a events: %s", trace);
    attempt = read_text(out_a, ".lathe/attempt");
    CHECK(attempt && !strcmp(attempt, "1\n"));
    free(attempt);

    /* 6. a cancel that arrives before its job: CANCELLED without running */
    cancel(p, &c, "job-e");
    usleep(1000000); /* the worker reads cancels within ~100 ms */
    submit(p, &c, "job-e", tiny, "datasets/tiny");
    int efinal = events_wait(&ev, 0, "job-e", LT_EV_STATE, -1, 60);
    CHECK(efinal >= 0 && ev.ev[efinal].state == LT_JOB_CANCELLED);
    CHECK(events_wait(&ev, 0, "job-e", LT_EV_STATE, LT_JOB_RUNNING, 0) < 0);
    CHECK(wait_committed(group, &c, partitions, 7, 10) == 7);

    /* 7. transient storage failures (an S3 endpoint that refuses connections) are retried with backoff,
     *    reported as log events, then FAILED */
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9", 1);
    before = ev.n;
    submit(p, &c, "job-f", tiny, "s3://lathe-test/datasets/tiny");
    int ffinal = events_wait(&ev, before, "job-f", LT_EV_STATE, -1, 60);
    CHECK_MSG(ffinal >= 0 && ev.ev[ffinal].state == LT_JOB_FAILED && ev.ev[ffinal].error &&
                  strstr(ev.ev[ffinal].error, "gave up after 3 tries"),
              "job-f: %s", ffinal >= 0 && ev.ev[ffinal].error ? ev.ev[ffinal].error : "no final event");
    events_trace(&ev, "job-f", before, ffinal, trace, sizeof trace);
    CHECK_MSG(!strcmp(trace, "S:RUNNING L S:RUNNING L S:RUNNING S:FAILED "), "job-f events: %s", trace);
    CHECK(ffinal >= 0 && ev.ev[ffinal].attempt == 3);
    CHECK(wait_committed(group, &c, partitions, 8, 10) == 8);
    unsetenv("AWS_ENDPOINT_URL");

    /* 8. shutdown mid-job: it checkpoints to storage, emits no final event, is not committed; the next
     *    worker resumes it from that checkpoint */
    const char *six = "{\"input_size\":16,\"num_train_epochs\":1,\"per_device_train_batch_size\":2,"
                      "\"per_device_eval_batch_size\":3}";
    before = ev.n;
    submit(p, &c, "job-g", six, "datasets/tiny");
    int g1 = events_wait(&ev, before, "job-g", LT_EV_PROGRESS, 0, 60);
    CHECK(g1 >= 0);
    test_worker_stop(&w);
    events_poll(&ev, 500);
    CHECK(events_wait(&ev, before, "job-g", LT_EV_STATE, -1, 0) < 0);
    CHECK(committed_total(group, &c, partitions) == 8);
    char out_g[700];
    snprintf(out_g, sizeof out_g, "%s/trainings/job-g", store);
    char *latest = read_text(out_g, "checkpoints/latest");
    CHECK_MSG(latest && !strncmp(latest, "step-", 5), "job-g has no checkpoint in storage");
    int64_t saved = latest ? strtoll(latest + 5, NULL, 10) : -1;
    free(latest);
    worker_init(&w, &c, store, work, "w2");
    /* a job whose storage fails transiently waits 60 s before its next try: the slow job of 9 and 10 */
    w.o.retry_base_ms = 60000;
    test_worker_go(&w);
    int g2 = events_wait(&ev, before, "job-g", LT_EV_STATE, LT_JOB_RUNNING, 60);
    g2 = g2 >= 0 ? events_wait(&ev, g2 + 1, "job-g", LT_EV_STATE, LT_JOB_RUNNING, 60) : -1;
    CHECK_MSG(g2 >= 0 && ev.ev[g2].resumed_from_step == saved && saved > 0 && ev.ev[g2].attempt == 2 &&
                  !strcmp(ev.ev[g2].worker, "w2"),
              "job-g resumed from %lld (checkpoint %lld), attempt %lld",
              g2 >= 0 ? (long long)ev.ev[g2].resumed_from_step : -2LL, (long long)saved,
              g2 >= 0 ? (long long)ev.ev[g2].attempt : -1LL);
    int gfinal = events_wait(&ev, before, "job-g", LT_EV_STATE, -1, 60);
    CHECK(gfinal >= 0 && ev.ev[gfinal].state == LT_JOB_SUCCEEDED);
    int gprog = g2 >= 0 ? events_wait(&ev, g2, "job-g", LT_EV_PROGRESS, 0, 1) : -1;
    CHECK(gprog >= 0 && ev.ev[gprog].step == saved + 1);
    CHECK(wait_committed(group, &c, partitions, 9, 10) == 9);

    /* 9. the local queue: jobs produced to the partition of a running (slow) job are polled into the
     *    worker's queue while it runs; once it ends (cancelled), each runs once, in order, and the
     *    committed offset ends after the last. The slow job's data set is on an S3 endpoint that refuses
     *    connections: after its first try it waits out w2's 60 s backoff, until a cancel or a shutdown. */
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9", 1);
    const char *unreachable = "s3://lathe-test/datasets/tiny";
    enum { NQ1 = 12, NQ2 = 20 };
    char q1[1 + NQ1][QID], q2[1 + NQ2][QID];
    ids_in_partition0("q1", 1 + NQ1, partitions, q1);
    ids_in_partition0("q2", 1 + NQ2, partitions, q2);
    before = ev.n;
    submit(p, &c, q1[0], tiny, unreachable);
    CHECK_MSG(events_wait(&ev, before, q1[0], LT_EV_LOG, 0, 60) >= 0, "%s never retried", q1[0]);
    for (int k = 1; k <= NQ1; k++)
        submit_noop(p, &c, q1[0], q1[k]);
    usleep(1000000); /* polled into the queue meanwhile (the loop polls every <= 100 ms) */
    events_poll(&ev, 0);
    for (int k = 1; k <= NQ1; k++)
        CHECK_MSG(events_wait(&ev, before, q1[k], LT_EV_STATE, -1, 0) < 0, "%s ran while %s was running",
                  q1[k], q1[0]);
    CHECK(committed_total(group, &c, partitions) == 9);
    cancel(p, &c, q1[0]);
    wait_all_final(&ev, before, q1, 1 + NQ1, 60);
    check_ran_once_in_order(&ev, before, q1, 1 + NQ1, LT_JOB_CANCELLED, "queue");
    CHECK_MSG(wait_committed(group, &c, partitions, 10 + NQ1, 10) == 10 + NQ1, "committed %lld, expected %d",
              (long long)committed_total(group, &c, partitions), 10 + NQ1);

    /* 10. a shutdown with jobs queued behind the running one: the running job stops (no final event) and
     *     nothing past it is committed; the queued jobs were not run. The next worker, whose queue holds 4
     *     (so its partitions are paused at 4 and resumed at 2 over and over), runs them all once, in
     *     order: nothing queued was lost or committed. */
    before = ev.n;
    submit(p, &c, q2[0], tiny, unreachable);
    CHECK_MSG(events_wait(&ev, before, q2[0], LT_EV_LOG, 0, 60) >= 0, "%s never retried", q2[0]);
    for (int k = 1; k <= NQ2; k++)
        submit_noop(p, &c, q2[0], q2[k]);
    usleep(1000000);
    test_worker_stop(&w);
    events_poll(&ev, 500);
    for (int k = 0; k <= NQ2; k++)
        CHECK_MSG(events_wait(&ev, before, q2[k], LT_EV_STATE, -1, 0) < 0, "%s ended on the stopped worker",
                  q2[k]);
    CHECK_MSG(committed_total(group, &c, partitions) == 10 + NQ1,
              "a stopped worker committed %lld, expected %d",
              (long long)committed_total(group, &c, partitions), 10 + NQ1);
    cancel(p, &c, q2[0]); /* the next worker ends it without training it again */
    worker_init(&w, &c, store, work, "w3");
    w.o.queue_max = 4;
    w.o.retry_base_ms = 60000;
    test_worker_go(&w);
    wait_all_final(&ev, before, q2, 1 + NQ2, 90);
    check_ran_once_in_order(&ev, before, q2, 1 + NQ2, LT_JOB_CANCELLED, "after a shutdown");
    for (int i = before; i < ev.n; i++)
        if (ev.ev[i].type == LT_EV_STATE && lt_job_state_is_final(ev.ev[i].state) &&
            !strncmp(ev.ev[i].job_id, "q2-", 3))
            CHECK_MSG(!strcmp(ev.ev[i].worker, "w3"), "%s ended on %s", ev.ev[i].job_id, ev.ev[i].worker);
    CHECK_MSG(wait_committed(group, &c, partitions, 11 + NQ1 + NQ2, 10) == 11 + NQ1 + NQ2,
              "committed %lld, expected %d", (long long)committed_total(group, &c, partitions),
              11 + NQ1 + NQ2);
    test_worker_stop(&w);
    unsetenv("AWS_ENDPOINT_URL");

    for (int i = 0; i < ev.n; i++)
        lt_msg_event_free(&ev.ev[i]);
    if (dlq) {
        rd_kafka_consumer_close(dlq);
        rd_kafka_destroy(dlq);
    }
    rd_kafka_consumer_close(ev.rk);
    rd_kafka_destroy(ev.rk);
    rd_kafka_destroy(group);
    lt_kafka_producer_destroy(p);
    lt_kafka_mock_destroy(mock);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary("test_worker");
}
