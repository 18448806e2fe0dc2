/* Batch inference: the body (worker/batch.h) on local storage, scoring as `lathe predict` does (the same
 * library calls, byte for byte at batch 1), a corrupt image as an error line, hidden and non-image files
 * skipped, a stop and a resume with no duplicate line (also after a part file longer than its state), a bad
 * model directory and an empty data set; the API (/v1/batch-inferences over a fake bus: validation naming the
 * field, the model-name resolver, Idempotency-Key, get/list/cancel, records kept apart from trainings); and
 * the job end to end through a worker on librdkafka's mock cluster (SUCCEEDED with its result, a bad model
 * FAILED at once, a redelivered complete job not run again). */
#define _GNU_SOURCE
#include "check.h"
#include "service.h"
#include "fixtures.h"
#include "io/fsutil.h"
#include "io/image.h"
#include "messaging/kafka.h"
#include "messaging/messages.h"
#include "messaging/mock.h"
#include "scheduler/core.h"
#include "tasks/cls_model.h"
#include "worker/batch.h"
#include "worker/worker.h"
#include "worker_thread.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STR(s) ((s) ? (s) : "(null)")

static char tmp[] = "/tmp/lathe_test_batch_XXXXXX";
static char model_dir[600], images[600];

/* the valid images, sorted, as the body must list them */
static const char *const image_names[] = {"a/one.png", "a/sub/THREE.PNG", "b/two.Png", "corrupt.png",
                                          "z.png"};
#define N_IMAGES 5

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    char *data = NULL;
    size_t n;
    if (lt_read_file(path, &data, &n, 1 << 24, NULL) != LT_OK) return NULL;
    return data;
}

static void make_fixtures(void) {
    char path[900];
    snprintf(model_dir, sizeof model_dir, "%s/store/models/m", tmp);
    snprintf(images, sizeof images, "%s/store/images", tmp);
    char *labels[3] = {"blue", "green", "red"};
    lt_cls_model m;
    lt_err err = {{0}};
    CHECK_MSG(lt_cls_model_create(&m, labels, 3, 32, 7, &err) == LT_OK &&
                  lt_cls_model_save(&m, model_dir, NULL, &err) == LT_OK,
              "model: %s", err.msg);
    lt_cls_model_free(&m);
    const char *dirs[] = {"a/sub", "b", ".hidden"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", images, dirs[i]);
        lt_mkdir_p(path, NULL);
    }
    for (int i = 0; i < N_IMAGES; i++) {
        snprintf(path, sizeof path, "%s/%s", images, image_names[i]);
        if (strstr(image_names[i], "corrupt"))
            write_text(path, "\x89PNG\r\n\x1a\n this is not really a PNG");
        else
            fixture_class_png(path, 20 + 4 * i, i % 3, (unsigned)i);
    }
    /* skipped: hidden files and folders, files that are not PNG or JPEG by name */
    snprintf(path, sizeof path, "%s/.hidden/x.png", images);
    fixture_class_png(path, 16, 0, 1);
    snprintf(path, sizeof path, "%s/.DS_Store.png", images);
    fixture_class_png(path, 16, 0, 1);
    snprintf(path, sizeof path, "%s/notes.txt", images);
    write_text(path, "not an image");
}

/* What `lathe predict` prints for an image: lt_cls_model_predict + lt_cls_prediction_json. */
static char *predict_line(lt_cls_model *m, const char *rel) {
    char path[900];
    snprintf(path, sizeof path, "%s/%s", images, rel);
    lt_image img = {0};
    float probs[3];
    lt_err err = {{0}};
    char *out = NULL;
    if (lt_image_load(path, NULL, &img, &err) == LT_OK &&
        lt_cls_model_predict(m, &img, probs, &err) == LT_OK) {
        cJSON *j = lt_cls_prediction_json(m, probs);
        out = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
    }
    lt_image_free(&img);
    return out;
}

/* Splits text into lines (modified in place); returns the count (at most max). */
static int split_lines(char *text, char **lines, int max) {
    int n = 0;
    for (char *p = text, *nl; p && *p && n < max; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = 0;
        lines[n++] = p;
    }
    return n;
}

/* Checks a predictions.jsonl against `lathe predict`: byte for byte when exact, else the same labels in the
 * same order with scores within 1e-5 (a batch of several runs another graph than predict's batch of one). */
static void check_predictions(const char *file, lt_cls_model *ref, int exact) {
    char *text = read_text(file);
    CHECK_MSG(text != NULL, "no %s", file);
    if (!text) return;
    char *lines[16];
    int n = split_lines(text, lines, 16);
    CHECK_MSG(n == N_IMAGES, "%s: %d lines, expected %d", file, n, N_IMAGES);
    for (int i = 0; i < n && i < N_IMAGES; i++) {
        cJSON *line = cJSON_Parse(lines[i]);
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItem(line, "path"));
        CHECK_MSG(path && !strcmp(path, image_names[i]), "line %d names %s, expected %s", i, STR(path),
                  image_names[i]);
        if (strstr(image_names[i], "corrupt")) {
            const char *error = cJSON_GetStringValue(cJSON_GetObjectItem(line, "error"));
            CHECK_MSG(error && strstr(error, "PNG") && !strstr(error, tmp) &&
                          !cJSON_GetObjectItem(line, "response"),
                      "corrupt line: %s", lines[i]);
        } else {
            char *want = predict_line(ref, image_names[i]);
            CHECK(want != NULL);
            char expect[4096];
            snprintf(expect, sizeof expect, "{\"path\":\"%s\",\"response\":%s}", image_names[i], STR(want));
            if (exact) {
                CHECK_MSG(!strcmp(lines[i], expect), "line %d: %s\nexpected: %s", i, lines[i], expect);
            } else {
                cJSON *w = cJSON_Parse(want), *g = cJSON_GetObjectItem(line, "response");
                int same = cJSON_GetArraySize(g) == 3 && cJSON_GetArraySize(w) == 3;
                for (int k = 0; same && k < 3; k++) {
                    cJSON *a = cJSON_GetArrayItem(g, k), *b = cJSON_GetArrayItem(w, k);
                    same = !strcmp(STR(cJSON_GetStringValue(cJSON_GetObjectItem(a, "label"))),
                                   STR(cJSON_GetStringValue(cJSON_GetObjectItem(b, "label")))) &&
                           fabs(cJSON_GetNumberValue(cJSON_GetObjectItem(a, "score")) -
                                cJSON_GetNumberValue(cJSON_GetObjectItem(b, "score"))) < 1e-5;
                }
                CHECK_MSG(same, "line %d: %s\nexpected about: %s", i, lines[i], expect);
                cJSON_Delete(w);
            }
            free(want);
        }
        cJSON_Delete(line);
    }
    free(text);
}

static void check_summary_file(const char *file) {
    char *text = read_text(file);
    cJSON *s = text ? cJSON_Parse(text) : NULL;
    CHECK_MSG(s != NULL, "no summary %s", file);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(s, "total")) == N_IMAGES);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(s, "succeeded")) == N_IMAGES - 1);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(s, "failed")) == 1);
    cJSON *f = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "failures"), 0);
    CHECK(f && !strcmp(STR(cJSON_GetStringValue(cJSON_GetObjectItem(f, "path"))), "corrupt.png") &&
          cJSON_GetStringValue(cJSON_GetObjectItem(f, "error")));
    CHECK(cJSON_GetStringValue(cJSON_GetObjectItem(s, "model")) &&
          cJSON_GetStringValue(cJSON_GetObjectItem(s, "dataset")));
    cJSON_Delete(s);
    free(text);
}

/* ---- the body ---- */

typedef struct {
    int64_t stop_at; /* should_stop once this many images are done (-1: never) */
    int64_t done;    /* from progress */
    int64_t resumed; /* from start */
    int checkpoints; /* checkpoint hooks seen */
} hooks_state;

static int h_stop(void *ctx) {
    hooks_state *h = ctx;
    return h->stop_at >= 0 && h->done >= h->stop_at;
}
static void h_start(void *ctx, int64_t resumed, int64_t total) {
    hooks_state *h = ctx;
    h->resumed = resumed;
    h->done = resumed > 0 ? resumed : 0;
    CHECK(total == N_IMAGES);
}
static void h_progress(void *ctx, int64_t done, int64_t total) {
    ((hooks_state *)ctx)->done = done;
}
static void h_checkpoint(void *ctx, int64_t done) {
    ((hooks_state *)ctx)->checkpoints++;
}

static int checkpoint_images; /* lt_batch_opts.checkpoint_images of body() (0: the default) */

static lt_status body(const char *out_dir, const char *model, const char *imgs, int batch, hooks_state *h,
                      cJSON **summary, lt_err *err) {
    char work[900];
    snprintf(work, sizeof work, "%s/work/%s", tmp, strrchr(out_dir, '/') + 1);
    lt_storage *out = lt_storage_open(out_dir, NULL, err);
    if (!out) return LT_ERR_IO;
    lt_batch_opts o = {.model_dir = model,
                       .images_dir = imgs,
                       .work_dir = work,
                       .out = out,
                       .model_name = "models/m",
                       .dataset_name = "images",
                       .batch_size = batch,
                       .checkpoint_images = checkpoint_images,
                       .hooks = {h, h_stop, h_start, h_progress, h_checkpoint}};
    lt_status st = lt_batch_run(&o, summary, err);
    lt_storage_close(out);
    return st;
}

static void test_body(lt_cls_model *ref) {
    char out1[700], out2[700], path[900], path2[900];
    snprintf(out1, sizeof out1, "%s/out1", tmp);
    snprintf(out2, sizeof out2, "%s/out2", tmp);
    lt_err err = {{0}};
    cJSON *summary = NULL;

    /* batch 1: the bytes `lathe predict` prints */
    hooks_state h = {.stop_at = -1};
    CHECK_MSG(body(out1, model_dir, images, 1, &h, &summary, &err) == LT_OK, "%s", err.msg);
    CHECK(h.resumed == -1 && h.done == N_IMAGES);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(summary, "failed")) == 1 &&
          cJSON_GetNumberValue(cJSON_GetObjectItem(summary, "succeeded")) == N_IMAGES - 1);
    cJSON_Delete(summary);
    snprintf(path, sizeof path, "%s/predictions.jsonl", out1);
    check_predictions(path, ref, 1);
    snprintf(path, sizeof path, "%s/summary.json", out1);
    check_summary_file(path);
    snprintf(path, sizeof path, "%s/.lathe/batch/state.json", out1);
    CHECK_MSG(!lt_path_exists(path), "the checkpoint outlived the job");

    /* batch 1 again with a checkpoint after every image, stopped after 2 images: two chunks of one line each
     * (a checkpoint uploads only the lines since the previous one). Then a crash's leftovers: junk past the
     * state's bytes in the last named chunk, and a chunk no state names. Resumed: the same bytes as the
     * uninterrupted run, no duplicate (batches of several go through the worker below), no chunk left. */
    h = (hooks_state){.stop_at = 2};
    summary = NULL;
    checkpoint_images = 1;
    CHECK(body(out2, model_dir, images, 1, &h, &summary, &err) == LT_ERR_CANCELLED && summary == NULL);
    CHECK_MSG(h.checkpoints >= 2 && h.done == 2, "%d checkpoints, %lld done", h.checkpoints,
              (long long)h.done);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/.lathe/batch/part-%06d.jsonl", out2, i);
        char *chunk = read_text(path);
        int lines = 0;
        for (const char *c = chunk; c && *c; c++)
            lines += *c == '\n';
        CHECK_MSG(i < 2 ? chunk && lines == 1 : !chunk, "chunk %d: %s, %d lines", i,
                  chunk ? "present" : "absent", lines);
        free(chunk);
    }
    snprintf(path, sizeof path, "%s/.lathe/batch/part-%06d.jsonl", out2, 1);
    FILE *f = fopen(path, "ab");
    CHECK(f != NULL);
    if (f) {
        fputs("{\"path\":\"b/two.Png\",\"response\":[]}\n{\"path\":\"corr", f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/.lathe/batch/part-%06d.jsonl", out2, 2);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs("{\"path\":\"stray\",\"response\":[]}\n", f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/predictions.jsonl", out2);
    CHECK(!lt_path_exists(path));
    h = (hooks_state){.stop_at = -1};
    CHECK_MSG(body(out2, model_dir, images, 1, &h, &summary, &err) == LT_OK, "%s", err.msg);
    CHECK_MSG(h.resumed == 2, "resumed from %lld", (long long)h.resumed);
    cJSON_Delete(summary);
    checkpoint_images = 0;
    for (int i = 0; i < 4; i++) {
        snprintf(path2, sizeof path2, "%s/.lathe/batch/part-%06d.jsonl", out2, i);
        CHECK_MSG(!lt_path_exists(path2), "chunk %d outlived the job", i);
    }
    snprintf(path2, sizeof path2, "%s/predictions.jsonl", out1);
    char *a = read_text(path), *b = read_text(path2);
    CHECK_MSG(a && b && !strcmp(a, b), "resumed output differs:\n%s\nuninterrupted:\n%s", STR(a), STR(b));
    free(a);
    free(b);
    snprintf(path, sizeof path, "%s/summary.json", out2);
    check_summary_file(path);

    /* a bad model directory and an empty data set fail at once, naming the field */
    char bad_model[700], empty[700], out4[700];
    snprintf(bad_model, sizeof bad_model, "%s/not-a-model", tmp);
    snprintf(empty, sizeof empty, "%s/empty", tmp);
    snprintf(out4, sizeof out4, "%s/out4", tmp);
    lt_mkdir_p(bad_model, NULL);
    lt_mkdir_p(empty, NULL);
    h = (hooks_state){.stop_at = -1};
    lt_err_clear(&err);
    CHECK(body(out4, bad_model, images, 2, &h, &summary, &err) == LT_ERR_ARG &&
          !strncmp(err.msg, "model:", 6));
    lt_err_clear(&err);
    CHECK(body(out4, model_dir, empty, 2, &h, &summary, &err) == LT_ERR_ARG &&
          !strncmp(err.msg, "dataset:", 8));
}

/* ---- the API ---- */

#define MAX_MSGS 32

typedef struct {
    char *jobs[MAX_MSGS];
    int n_jobs, n_state, n_cancels;
} fake_bus;

static lt_status fb_persist(void *ctx, const char *id, const char *json, void **ticket, lt_err *err) {
    ((fake_bus *)ctx)->n_state++;
    if (ticket) *ticket = ctx;
    return LT_OK;
}
static lt_status fb_wait(void *ctx, void *ticket, lt_err *err) {
    return LT_OK;
}
static lt_status fb_publish_job(void *ctx, const char *id, const char *json, void **ticket, lt_err *err) {
    fake_bus *b = ctx;
    if (b->n_jobs < MAX_MSGS) b->jobs[b->n_jobs++] = strdup(json);
    if (ticket) *ticket = b;
    return LT_OK;
}
static lt_status fb_publish_cancel(void *ctx, const char *id, lt_err *err) {
    ((fake_bus *)ctx)->n_cancels++;
    return LT_OK;
}

typedef struct {
    int status;
    cJSON *json;
    char *text;
} reply;

static reply call(lt_sched *s, const char *method, const char *path, const char *body, const char *auth,
                  const char *key) {
    lt_sched_request rq = {.method = method,
                           .path = path,
                           .authorization = auth,
                           .idempotency_key = key,
                           .body = body ? body : "",
                           .body_len = body ? strlen(body) : 0};
    lt_sched_response rs;
    lt_sched_handle(s, &rq, &rs);
    reply r = {.status = rs.status, .text = rs.body, .json = rs.body ? cJSON_Parse(rs.body) : NULL};
    return r;
}

static void reply_free(reply *r) {
    cJSON_Delete(r->json);
    free(r->text);
}

static const char *field(const cJSON *o, const char *name) {
    return STR(cJSON_GetStringValue(cJSON_GetObjectItem(o, name)));
}

/* The registry stand-in: "cats" is a model, "broken" fails, anything else is unknown. */
static int resolve(void *ctx, const char *name, char *uri, size_t cap, lt_err *err) {
    if (!strcmp(name, "cats")) {
        snprintf(uri, cap, "%s", (const char *)ctx);
        return 1;
    }
    if (!strcmp(name, "broken")) {
        lt_errorf(err, LT_ERR_IO, "registry down");
        return -1;
    }
    return 0;
}

static void expect_status(lt_sched *s, const char *body, int status, const char *needle) {
    reply r = call(s, "POST", "/v1/batch-inferences", body, NULL, NULL);
    CHECK_MSG(r.status == status && strstr(field(r.json, "error"), needle),
              "%s -> %d %s (expected %d naming %s)", body, r.status, STR(r.text), status, needle);
    reply_free(&r);
}

static void test_api(void) {
    char root[600];
    snprintf(root, sizeof root, "%s/store", tmp);
    fake_bus b = {0};
    lt_sched_bus bus = {.ctx = &b,
                        .persist = fb_persist,
                        .wait = fb_wait,
                        .publish_job = fb_publish_job,
                        .publish_cancel = fb_publish_cancel};
    lt_submit_opts sub = {.storage_root = root, .check_dataset = 1};
    lt_sched s;
    lt_err err = {{0}};
    CHECK(lt_sched_init(&s, &bus, &sub, NULL, &err) == LT_OK);
    atomic_store(&s.ready, 1);

    /* a storage URI relative to the root; the default output */
    reply r = call(&s, "POST", "/v1/batch-inferences", "{\"model\":\"models/m\",\"dataset\":\"images\"}",
                   NULL, NULL);
    CHECK_MSG(r.status == 201 && !strncmp(field(r.json, "id"), "bi-", 3) &&
                  !strcmp(field(r.json, "state"), "QUEUED"),
              "submit -> %d %s", r.status, STR(r.text));
    char id[LT_JOB_ID_MAX], url[256], want[900];
    snprintf(id, sizeof id, "%s", field(r.json, "id"));
    reply_free(&r);
    CHECK(b.n_jobs == 1);
    lt_msg_job job;
    CHECK_MSG(b.n_jobs == 1 && lt_msg_job_decode(b.jobs[0], strlen(b.jobs[0]), &job, &err) == LT_OK, "%s",
              err.msg);
    CHECK(!strcmp(STR(job.type), "batch-inference") && !strcmp(job.id, id));
    snprintf(want, sizeof want, "%s/models/m", root);
    CHECK_MSG(!strcmp(STR(job.model), want), "model %s", STR(job.model));
    snprintf(want, sizeof want, "%s/images", root);
    CHECK(!strcmp(job.dataset, want));
    snprintf(want, sizeof want, "%s/batch-inferences/%s", root, id);
    CHECK_MSG(!strcmp(job.output, want), "output %s", job.output);
    lt_msg_job_free(&job);

    /* the record: its own routes only */
    snprintf(url, sizeof url, "/v1/batch-inferences/%s", id);
    r = call(&s, "GET", url, NULL, NULL, NULL);
    CHECK_MSG(r.status == 200 && !strcmp(field(r.json, "type"), "batch-inference") &&
                  !strcmp(field(r.json, "model"), "models/m") && !strcmp(field(r.json, "state"), "QUEUED"),
              "get -> %d %s", r.status, STR(r.text));
    reply_free(&r);
    snprintf(url, sizeof url, "/v1/trainings/%s", id);
    r = call(&s, "GET", url, NULL, NULL, NULL);
    CHECK(r.status == 404);
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings", NULL, NULL, NULL);
    CHECK(r.status == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "trainings")) == 0);
    reply_free(&r);
    r = call(&s, "GET", "/v1/batch-inferences", NULL, NULL, NULL);
    CHECK_MSG(r.status == 200 && cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "batch_inferences")) == 1,
              "list -> %d %s", r.status, STR(r.text));
    reply_free(&r);

    /* worker events: progress counts images */
    char ev[512];
    snprintf(ev, sizeof ev,
             "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"progress\",\"worker\":\"w\",\"attempt\":1,"
             "\"time\":\"2024-05-01T12:00:00Z\",\"step\":3,\"total_steps\":5,\"epoch\":0.6}",
             id);
    CHECK(lt_sched_fold_event(&s, ev, strlen(ev), NULL, &err) == LT_OK);
    snprintf(url, sizeof url, "/v1/batch-inferences/%s", id);
    r = call(&s, "GET", url, NULL, NULL, NULL);
    cJSON *p = cJSON_GetObjectItem(r.json, "progress");
    CHECK_MSG(!strcmp(field(r.json, "state"), "RUNNING") &&
                  cJSON_GetNumberValue(cJSON_GetObjectItem(p, "images_done")) == 3 &&
                  cJSON_GetNumberValue(cJSON_GetObjectItem(p, "images_total")) == 5,
              "after progress: %s", STR(r.text));
    /* the record survives the state topic's round trip */
    lt_job *back = NULL;
    CHECK(lt_job_from_json(r.json, &back, &err) == LT_OK && back && LT_JOB_IS_BATCH(back) &&
          back->step == 3 && back->total_steps == 5 && !strcmp(STR(back->model), "models/m"));
    lt_job_destroy(back);
    reply_free(&r);
    snprintf(url, sizeof url, "/v1/batch-inferences/%s/cancel", id);
    r = call(&s, "POST", url, NULL, NULL, NULL);
    CHECK(r.status == 200 && b.n_cancels == 1 &&
          cJSON_IsTrue(cJSON_GetObjectItem(r.json, "cancel_requested")));
    reply_free(&r);

    /* Idempotency-Key: the same request is the same job; another request with the key is refused */
    const char *body_k = "{\"model\":\"models/m\",\"dataset\":\"images\",\"output\":\"out/k\"}";
    r = call(&s, "POST", "/v1/batch-inferences", body_k, NULL, "key-1");
    CHECK(r.status == 201);
    snprintf(id, sizeof id, "%s", field(r.json, "id"));
    reply_free(&r);
    r = call(&s, "POST", "/v1/batch-inferences", body_k, NULL, "key-1");
    CHECK(r.status == 200 && !strcmp(field(r.json, "id"), id));
    reply_free(&r);
    r = call(&s, "POST", "/v1/batch-inferences", "{\"model\":\"models/m\",\"dataset\":\"images\"}", NULL,
             "key-1");
    CHECK(r.status == 422);
    reply_free(&r);

    /* bad submissions name the field */
    expect_status(&s, "not json", 400, "body");
    expect_status(&s, "{\"dataset\":\"images\"}", 400, "model");
    expect_status(&s, "{\"model\":\"models/m\"}", 400, "dataset");
    expect_status(&s, "{\"model\":\"models/m\",\"dataset\":\"images\",\"hyperparameters\":{}}", 400,
                  "hyperparameters");
    expect_status(&s, "{\"model\":\"models/m\",\"dataset\":\"images\",\"output\":5}", 400, "output");
    expect_status(&s, "{\"model\":\"images/a\",\"dataset\":\"images\"}", 400, "config.json");
    expect_status(&s, "{\"model\":\"models/m\",\"dataset\":\"models\"}", 400, "dataset"); /* no image */
    expect_status(&s, "{\"model\":\"cats\",\"dataset\":\"images\"}", 400, "model");       /* no registry */

    /* with a registry: names resolve, unknown ones are 404, a failing lookup 503 */
    s.submit.resolve_model = resolve;
    s.submit.resolve_model_ctx = model_dir;
    int before = b.n_jobs;
    r = call(&s, "POST", "/v1/batch-inferences", "{\"model\":\"cats\",\"dataset\":\"images\"}", NULL, NULL);
    CHECK_MSG(r.status == 201, "named model -> %d %s", r.status, STR(r.text));
    reply_free(&r);
    CHECK(b.n_jobs == before + 1 && strstr(b.jobs[before], model_dir));
    expect_status(&s, "{\"model\":\"dogs\",\"dataset\":\"images\"}", 404, "model");
    expect_status(&s, "{\"model\":\"broken\",\"dataset\":\"images\"}", 503, "model");

    /* auth like the trainings */
    lt_sched s2;
    CHECK(lt_sched_init(&s2, &bus, &sub, "secret", &err) == LT_OK);
    atomic_store(&s2.ready, 1);
    r = call(&s2, "GET", "/v1/batch-inferences", NULL, NULL, NULL);
    CHECK(r.status == 401);
    reply_free(&r);
    r = call(&s2, "GET", "/v1/batch-inferences", NULL, "Bearer secret", NULL);
    CHECK(r.status == 200);
    reply_free(&r);
    lt_sched_free(&s2);
    lt_sched_free(&s);
    for (int i = 0; i < b.n_jobs; i++)
        free(b.jobs[i]);
}

/* ---- through a worker ---- */

#define MAX_EVENTS 512

typedef struct {
    rd_kafka_t *rk;
    lt_msg_event ev[MAX_EVENTS];
    int n;
} events;

/* The first final state event of job at or after from (within timeout_s); -1 when none. */
static int wait_final(events *e, int from, const char *job, double timeout_s) {
    double until = test_now_s() + timeout_s;
    for (;;) {
        for (int i = from; i < e->n; i++)
            if (!strcmp(e->ev[i].job_id, job) && e->ev[i].type == LT_EV_STATE &&
                lt_job_state_is_final(e->ev[i].state))
                return i;
        if (test_now_s() > until) return -1;
        rd_kafka_message_t *m;
        while ((m = rd_kafka_consumer_poll(e->rk, 100)) != NULL) {
            if (!m->err && e->n < MAX_EVENTS &&
                lt_msg_event_decode(m->payload, m->len, &e->ev[e->n], NULL) == LT_OK)
                e->n++;
            rd_kafka_message_destroy(m);
        }
    }
}

/* "S:RUNNING P C R S:SUCCEEDED" for job's events in [from, to]. */
static void trace(const events *e, const char *job, int from, int to, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = from; i <= to && i < e->n && n + 24 < size; i++) {
        if (strcmp(e->ev[i].job_id, job)) continue;
        if (e->ev[i].type == LT_EV_STATE)
            n += (size_t)snprintf(buf + n, size - n, "S:%s ", lt_job_state_name(e->ev[i].state));
        else
            n += (size_t)snprintf(buf + n, size - n, "%c ", "SPLECR"[e->ev[i].type]);
    }
}

static void submit(lt_kafka_producer *p, const lt_kafka_config *c, const char *id, const char *model) {
    char topic[LT_KAFKA_TOPIC_MAX], output[256], *json = NULL;
    snprintf(output, sizeof output, "batch-inferences/%s", id);
    lt_msg_job j = {.type = "batch-inference",
                    .id = (char *)id,
                    .model = (char *)model,
                    .dataset = "images",
                    .output = output};
    lt_err err = {{0}};
    CHECK_MSG(lt_msg_job_encode(&j, &json, &err) == LT_OK, "encode: %s", err.msg);
    CHECK(lt_kafka_produce_sync(p, lt_kafka_topic(c, LT_TOPIC_JOBS, topic, sizeof topic), id, json,
                                strlen(json), NULL, 0, &err) == LT_OK);
    free(json);
}

/* The worker's side, started first: joining the group takes the mock a few seconds, which the other tests
 * use. */
static struct {
    lt_kafka_config c;
    lt_kafka_mock *mock;
    lt_kafka_producer *p;
    events ev;
    test_worker_thread w;
    char store[600], work[600];
} wk;

static void worker_begin(void) {
    char topic[LT_KAFKA_TOPIC_MAX];
    snprintf(wk.store, sizeof wk.store, "%s/store", tmp);
    snprintf(wk.work, sizeof wk.work, "%s/wwork", tmp);
    lt_err err = {{0}};
    lt_kafka_config_init(&wk.c, NULL);
    lt_kafka_config_set(&wk.c, NULL, "tb.", NULL);
    wk.c.jobs_partitions = 1;
    wk.mock = lt_kafka_mock_new(1, &wk.c, &err);
    CHECK_MSG(wk.mock != NULL, "mock: %s", err.msg);
    if (!wk.mock) return;
    lt_kafka_config_set(&wk.c, lt_kafka_mock_bootstraps(wk.mock), NULL, NULL);
    wk.p = lt_kafka_producer_new(&wk.c, "test", 10000, &err);
    wk.ev.rk = lt_kafka_reader_new(&wk.c, "test-events", &err);
    CHECK(wk.ev.rk &&
          lt_kafka_reader_assign_all(wk.ev.rk, lt_kafka_topic(&wk.c, LT_TOPIC_EVENTS, topic, sizeof topic), 1,
                                     5000, &err) == LT_OK);
    lt_worker_opts_init(&wk.w.o);
    wk.w.o.kafka = wk.c;
    wk.w.o.storage = wk.store;
    wk.w.o.work_dir = wk.work;
    wk.w.o.worker_id = "w1";
    wk.w.o.progress_interval_ms = 0;
    wk.w.o.batch_size = 2;
    wk.w.o.batch_checkpoint_images = 2;
    wk.w.o.retry_base_ms = 100;
    wk.w.o.max_attempts = 2;
    test_worker_go(&wk.w);
}

static void test_worker(lt_cls_model *ref) {
    char tr[512], path[900];
    const char *store = wk.store;
    lt_kafka_config c = wk.c;
    lt_kafka_producer *p = wk.p;
    events *evp = &wk.ev;
    if (!wk.mock) return;
    /* a job to SUCCEEDED: its files, a checkpoint on the way, the summary counts in the result */
    submit(p, &c, "bi-1", "models/m");
    int f1 = wait_final(evp, 0, "bi-1", 60);
    CHECK_MSG(f1 >= 0 && evp->ev[f1].state == LT_JOB_SUCCEEDED, "bi-1: %s",
              f1 >= 0 ? STR(evp->ev[f1].error) : "no final event");
    trace(evp, "bi-1", 0, f1, tr, sizeof tr);
    CHECK_MSG(!strncmp(tr, "S:RUNNING P ", 12) && strstr(tr, " C ") && strstr(tr, "R S:SUCCEEDED ") &&
                  !strcmp(strstr(tr, "R S:SUCCEEDED "), "R S:SUCCEEDED "),
              "bi-1 events: %s", tr);
    for (int i = 0; i < f1; i++)
        if (!strcmp(evp->ev[i].job_id, "bi-1") && evp->ev[i].type == LT_EV_RESULT) {
            const cJSON *m = evp->ev[i].metrics;
            CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(m, "total")) == N_IMAGES &&
                  cJSON_GetNumberValue(cJSON_GetObjectItem(m, "succeeded")) == N_IMAGES - 1 &&
                  cJSON_GetNumberValue(cJSON_GetObjectItem(m, "failed")) == 1);
            CHECK(strstr(STR(evp->ev[i].output), "batch-inferences/bi-1") != NULL);
        }
    snprintf(path, sizeof path, "%s/batch-inferences/bi-1/predictions.jsonl", store);
    check_predictions(path, ref, 0);
    snprintf(path, sizeof path, "%s/batch-inferences/bi-1/summary.json", store);
    check_summary_file(path);

    /* delivered again: not run again, its result re-emitted */
    int before = evp->n;
    submit(p, &c, "bi-1", "models/m");
    int f2 = wait_final(evp, before, "bi-1", 60);
    trace(evp, "bi-1", before, f2, tr, sizeof tr);
    CHECK_MSG(f2 >= 0 && !strcmp(tr, "R S:SUCCEEDED "), "redelivered bi-1: %s", tr);

    /* a bad model directory fails at once: no retry, no RUNNING */
    before = evp->n;
    submit(p, &c, "bi-2", "images");
    int f3 = wait_final(evp, before, "bi-2", 60);
    trace(evp, "bi-2", before, f3, tr, sizeof tr);
    CHECK_MSG(f3 >= 0 && evp->ev[f3].state == LT_JOB_FAILED && strstr(STR(evp->ev[f3].error), "model") &&
                  !strcmp(tr, "S:FAILED ") && evp->ev[f3].attempt == 1,
              "bi-2: %s (%s)", tr, f3 >= 0 ? STR(evp->ev[f3].error) : "");

    test_worker_stop(&wk.w);
    for (int i = 0; i < evp->n; i++)
        lt_msg_event_free(&evp->ev[i]);
    rd_kafka_consumer_close(evp->rk);
    rd_kafka_destroy(evp->rk);
    lt_kafka_producer_destroy(p);
    lt_kafka_mock_destroy(wk.mock);
}

int main(void) {
    if (!mkdtemp(tmp)) return 1;
    make_fixtures();
    worker_begin();
    lt_cls_model ref;
    lt_err err = {{0}};
    CHECK_MSG(lt_cls_model_load(&ref, model_dir, NULL, 0, 0, 42, NULL, &err) == LT_OK, "%s", err.msg);
    test_body(&ref);
    test_api();
    test_worker(&ref);
    lt_cls_model_free(&ref);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary("test_batch_inference");
}
