/* The scheduler's job records: JSON round trip, the event state machine, cancel, and the job table. */
#include "check.h"
#include "scheduler/job.h"
#include "scheduler/table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *NOW = "2024-05-01T12:00:00.000Z";

static lt_msg_event ev_state(const char *id, const char *worker, int attempt, lt_job_state st) {
    lt_msg_event ev = lt_msg_event_init(LT_EV_STATE, id, worker, attempt);
    ev.state = st;
    ev.time = (char *)"2024-05-01T12:00:01Z";
    return ev;
}

static lt_msg_event ev_progress(const char *id, const char *worker, int attempt, int64_t step) {
    lt_msg_event ev = lt_msg_event_init(LT_EV_PROGRESS, id, worker, attempt);
    ev.step = step;
    ev.total_steps = 100;
    ev.epoch = (double)step / 50;
    ev.time = (char *)"2024-05-01T12:00:02Z";
    return ev;
}

static char *print(const lt_job *j) {
    cJSON *o = lt_job_to_json(j);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void test_round_trip(void) {
    lt_job *j = lt_job_create("tr-0123456789abcdef0123");
    CHECK(j && j->state == LT_JOB_QUEUED && j->resumed_from_step == -1);
    lt_job_set_str(&j->name, "flowers");
    lt_job_set_str(&j->algorithm, "image-classification");
    lt_job_set_str(&j->dataset, "s3://b/ds");
    lt_job_set_str(&j->output, "s3://b/trainings/x");
    lt_job_set_str(&j->worker, "host-1");
    lt_job_set_str(&j->checkpoint_uri, "s3://b/trainings/x/checkpoints/step-4");
    lt_job_set_str(&j->idempotency_key, "key-1");
    j->hyperparameters = cJSON_Parse("{\"input_size\":16,\"learning_rate\":0.01}");
    j->metrics = cJSON_Parse("{\"accuracy\":0.5}");
    j->evaluations = cJSON_Parse("{\"validation\":{\"loss\":1.5}}");
    j->state = LT_JOB_RUNNING;
    j->attempt = 2;
    j->has_progress = 1;
    j->step = 7;
    j->total_steps = 12;
    j->epoch = 1.25;
    j->has_checkpoint = 1;
    j->checkpoint_step = 4;
    j->resumed_from_step = 4;
    j->cancel_requested = 1;
    strcpy(j->request_hash, "00112233aabbccdd");
    strcpy(j->created_at, NOW);
    strcpy(j->started_at, NOW);
    strcpy(j->updated_at, NOW);
    char *a = print(j);
    cJSON *o = cJSON_Parse(a);
    lt_job *k = NULL;
    lt_err err = {{0}};
    CHECK(lt_job_from_json(o, &k, &err) == LT_OK);
    char *b = k ? print(k) : NULL;
    CHECK_MSG(a && b && !strcmp(a, b), "round trip differs:\n%s\n%s", a, b ? b : "(null)");
    lt_job *c = lt_job_clone(j);
    char *cs = c ? print(c) : NULL;
    CHECK(cs && !strcmp(a, cs));
    /* every field the issue lists is in the body */
    static const char *const fields[] = {
        "id",         "name",       "algorithm",         "state",     "attempt", "worker",
        "progress",   "checkpoint", "resumed_from_step", "metrics",   "output",  "error",
        "created_at", "started_at", "finished_at",       "updated_at"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        CHECK_MSG(cJSON_HasObjectItem(o, fields[i]), "record lacks %s", fields[i]);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "progress"), "total_steps")->valuedouble == 12);
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "checkpoint"), "uri")->valuestring,
                  "s3://b/trainings/x/checkpoints/step-4"));
    free(a);
    free(b);
    free(cs);
    cJSON_Delete(o);
    lt_job_destroy(j);
    lt_job_destroy(k);
    lt_job_destroy(c);

    /* malformed records are refused with the field named */
    const char *bad[] = {"[]", "{\"state\":\"QUEUED\"}", "{\"id\":\"x\",\"state\":\"DONE\"}",
                         "{\"id\":\"x\",\"state\":\"QUEUED\",\"name\":3}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cJSON *p = cJSON_Parse(bad[i]);
        lt_job *z = NULL;
        CHECK_MSG(lt_job_from_json(p, &z, &err) == LT_ERR_FORMAT && !z, "accepted %s", bad[i]);
        cJSON_Delete(p);
    }
}

static void test_lifecycle(void) {
    const char *id = "tr-a";
    lt_job *j = lt_job_create(id);
    lt_msg_event ev = ev_state(id, "w1", 1, LT_JOB_RUNNING);
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1);
    CHECK(j->state == LT_JOB_RUNNING && j->attempt == 1 && !strcmp(j->worker, "w1"));
    CHECK(!strcmp(j->started_at, "2024-05-01T12:00:01Z") && j->resumed_from_step == -1);
    ev = ev_progress(id, "w1", 1, 5);
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1);
    CHECK(j->has_progress && j->step == 5 && j->total_steps == 100 && j->epoch == 0.1);
    ev = lt_msg_event_init(LT_EV_CHECKPOINT, id, "w1", 1);
    ev.step = 5;
    ev.uri = (char *)"s3://b/o/checkpoints/step-5";
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1);
    CHECK(j->has_checkpoint && j->checkpoint_step == 5);

    /* w1 dies; w2 takes over as attempt 2, resuming from step 5 */
    ev = ev_state(id, "w2", 2, LT_JOB_RUNNING);
    ev.resumed_from_step = 5;
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1);
    CHECK(j->attempt == 2 && !strcmp(j->worker, "w2") && j->resumed_from_step == 5);
    CHECK(!strcmp(j->started_at, "2024-05-01T12:00:01Z")); /* the first start stays */
    /* a late progress of attempt 1 is stale */
    ev = ev_progress(id, "w1", 1, 9);
    CHECK(lt_job_apply_event(j, &ev, NOW) == 0);
    CHECK(j->step == 5 && !strcmp(j->worker, "w2"));
    ev = ev_progress(id, "w2", 2, 8);
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1 && j->step == 8);
    /* a stale FAILED does not end the newer attempt */
    ev = ev_state(id, "w1", 1, LT_JOB_FAILED);
    ev.error = (char *)"lost";
    CHECK(lt_job_apply_event(j, &ev, NOW) == 0 && j->state == LT_JOB_RUNNING);

    ev = lt_msg_event_init(LT_EV_EVAL, id, "w2", 2);
    ev.split = (char *)"validation";
    ev.metrics = cJSON_Parse("{\"accuracy\":0.25}");
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1);
    cJSON_Delete(ev.metrics);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j->evaluations, "validation"), "accuracy")->valuedouble ==
          0.25);

    ev = lt_msg_event_init(LT_EV_RESULT, id, "w2", 2);
    ev.metrics = cJSON_Parse("{\"accuracy\":0.75}");
    ev.output = (char *)"s3://b/o";
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1);
    cJSON_Delete(ev.metrics);
    CHECK(j->metrics && cJSON_GetObjectItem(j->metrics, "accuracy")->valuedouble == 0.75);
    CHECK(!strcmp(j->output, "s3://b/o"));
    ev = ev_state(id, "w2", 2, LT_JOB_SUCCEEDED);
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1);
    CHECK(j->state == LT_JOB_SUCCEEDED && j->finished_at[0] && !j->error);

    /* final is sticky: a redelivery's RUNNING, a re-emitted SUCCEEDED, anything */
    ev = ev_state(id, "w3", 3, LT_JOB_RUNNING);
    CHECK(lt_job_apply_event(j, &ev, NOW) == 0);
    ev = ev_state(id, "w3", 3, LT_JOB_FAILED);
    CHECK(lt_job_apply_event(j, &ev, NOW) == 0);
    CHECK(j->state == LT_JOB_SUCCEEDED && j->attempt == 2);
    CHECK(lt_job_request_cancel(j, NOW) == 0 && !j->cancel_requested);
    lt_job_destroy(j);
}

static void test_stale_success_and_failure(void) {
    lt_job *j = lt_job_create("tr-b");
    lt_msg_event ev = ev_state("tr-b", "w2", 2, LT_JOB_RUNNING);
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1);
    /* attempt 1 was not dead after all and finished: the work is done, so it counts */
    ev = ev_state("tr-b", "w1", 1, LT_JOB_SUCCEEDED);
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1 && j->state == LT_JOB_SUCCEEDED);
    lt_job_destroy(j);

    j = lt_job_create("tr-c");
    ev = ev_progress("tr-c", "w1", 1, 3); /* RUNNING lost: progress implies it */
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1 && j->state == LT_JOB_RUNNING);
    ev = ev_state("tr-c", "w1", 1, LT_JOB_FAILED);
    ev.error = (char *)"dataset: train/: no images";
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1);
    CHECK(j->state == LT_JOB_FAILED && j->error && strstr(j->error, "no images"));
    lt_job_destroy(j);
}

static void test_cancel(void) {
    lt_job *j = lt_job_create("tr-d");
    CHECK(lt_job_request_cancel(j, NOW) == 1);
    CHECK(j->state == LT_JOB_CANCELLED && j->cancel_requested && !strcmp(j->finished_at, NOW));
    /* a worker that had already taken the job reports RUNNING: ignored, it stays cancelled */
    lt_msg_event ev = ev_state("tr-d", "w1", 1, LT_JOB_RUNNING);
    CHECK(lt_job_apply_event(j, &ev, NOW) == 0 && j->state == LT_JOB_CANCELLED);
    lt_job_destroy(j);

    j = lt_job_create("tr-e");
    ev = ev_state("tr-e", "w1", 1, LT_JOB_RUNNING);
    lt_job_apply_event(j, &ev, NOW);
    CHECK(lt_job_request_cancel(j, NOW) == 1);
    CHECK(j->state == LT_JOB_RUNNING && j->cancel_requested); /* the worker stops it */
    ev = ev_state("tr-e", "w1", 1, LT_JOB_CANCELLED);
    ev.error = (char *)"cancelled at step 3";
    CHECK(lt_job_apply_event(j, &ev, NOW) == 1 && j->state == LT_JOB_CANCELLED);
    lt_job_destroy(j);
}

static lt_job *make(const char *id, const char *created, lt_job_state st, const char *key) {
    lt_job *j = lt_job_create(id);
    strcpy(j->created_at, created);
    j->state = st;
    if (key) lt_job_set_str(&j->idempotency_key, key);
    return j;
}

static void test_table(void) {
    lt_table *t = lt_table_create();
    lt_table_lock(t);
    char id[32], created[64];
    for (int i = 0; i < 300; i++) { /* enough to grow the buckets */
        snprintf(id, sizeof id, "tr-%03d", i);
        snprintf(created, sizeof created, "2024-05-01T12:%02d:%02d.000Z", i / 60, i % 60);
        CHECK(lt_table_put(t, make(id, created, (lt_job_state)(i % 3), i == 7 ? "k7" : NULL)) == LT_OK);
    }
    CHECK(lt_table_size(t) == 300);
    CHECK(lt_table_find(t, "tr-123") && !strcmp(lt_table_find(t, "tr-123")->id, "tr-123"));
    CHECK(!lt_table_find(t, "tr-999"));
    CHECK(lt_table_find_idempotent(t, "k7") == lt_table_find(t, "tr-007"));
    size_t counts[LT_JOB_STATE_COUNT];
    lt_table_counts(t, counts);
    CHECK(counts[LT_JOB_QUEUED] == 100 && counts[LT_JOB_RUNNING] == 100 && counts[LT_JOB_SUCCEEDED] == 100);
    size_t total = 0;
    cJSON *l = lt_table_list(t, LT_JOB_RUNNING, 5, &total);
    CHECK(total == 100 && cJSON_GetArraySize(l) == 5);
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(l, 0), "id")->valuestring,
                  "tr-298")); /* newest first */
    cJSON_Delete(l);
    /* replacing a record keeps the key index pointing at the live one */
    CHECK(lt_table_put(t, make("tr-007", "2024-05-01T12:00:07.000Z", LT_JOB_SUCCEEDED, "k7")) == LT_OK);
    CHECK(lt_table_find_idempotent(t, "k7") == lt_table_find(t, "tr-007"));
    CHECK(lt_table_find(t, "tr-007")->state == LT_JOB_SUCCEEDED && lt_table_size(t) == 300);
    lt_table_remove(t, "tr-007");
    CHECK(!lt_table_find(t, "tr-007") && !lt_table_find_idempotent(t, "k7") && lt_table_size(t) == 299);
    lt_table_remove(t, "tr-007");
    lt_table_unlock(t);
    lt_table_destroy(t);
    lt_table_destroy(NULL);
}

int main(void) {
    test_round_trip();
    test_lifecycle();
    test_stale_success_and_failure();
    test_cancel();
    test_table();
    return check_summary("test_scheduler_job");
}
