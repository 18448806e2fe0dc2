/* service.c - parse, decode, batch-predict and answer one request. */
#include "service.h"

#include "inference/response.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct lt_infer_service {
    lt_infer_model *model;     /* not owned */
    lt_infer_limits limits;    /* resolved */
    lt_infer_batcher *batcher; /* owned */
    lt_infer_metrics *metrics; /* owned */
};

lt_status lt_infer_service_create(lt_infer_model *model, const lt_infer_service_opts *opts,
                                  lt_infer_service **out, lt_err *err) {
    *out = NULL;
    lt_infer_service *s = calloc(1, sizeof *s);
    if (!s || !(s->metrics = lt_infer_metrics_create())) {
        free(s);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    s->model = model;
    s->limits = lt_infer_limits_resolve(opts ? &opts->limits : NULL);
    lt_status st = lt_infer_batcher_create(lt_infer_batcher_model_fn, model, opts ? &opts->batch : NULL,
                                           &s->batcher, err);
    if (st != LT_OK) {
        lt_infer_metrics_destroy(s->metrics);
        free(s);
        return st;
    }
    *out = s;
    return LT_OK;
}

void lt_infer_service_destroy(lt_infer_service *s) {
    if (!s) return;
    lt_infer_batcher_destroy(s->batcher);
    lt_infer_metrics_destroy(s->metrics);
    free(s);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int lt_infer_service_handle(lt_infer_service *s, const char *body, size_t len, char **response) {
    double t0 = now_s();
    lt_infer_error e = {0};
    lt_infer_request req = {0};
    const lt_image **imgs = NULL;
    lt_infer_prediction *preds = NULL;
    *response = NULL;
    int status = lt_infer_request_parse(body, len, &s->limits, &req, &e);
    if (!status) status = lt_infer_request_decode(&req, &s->limits, &e);
    int n = req.n_instances;
    if (!status) {
        imgs = malloc((size_t)n * sizeof *imgs);
        preds = calloc((size_t)n, sizeof *preds);
        if (!imgs || !preds) status = lt_infer_fail(&e, LT_INFER_ERR_INTERNAL, -1, "out of memory");
    }
    if (!status) {
        for (int i = 0; i < n; i++)
            imgs[i] = &req.instances[i].image;
        lt_err err = {{0}};
        lt_status st = lt_infer_batcher_submit(s->batcher, imgs, n, preds, &err);
        if (st == LT_ERR_STATE || st == LT_ERR_CANCELLED)
            status = lt_infer_fail(&e, LT_INFER_ERR_UNAVAILABLE, -1, "%s", err.msg);
        else if (st != LT_OK)
            status = lt_infer_fail(&e, LT_INFER_ERR_INTERNAL, -1, "inference failed: %s", err.msg);
    }
    if (!status) {
        *response = lt_infer_model_response(s->model, preds, n);
        if (!*response) status = lt_infer_fail(&e, LT_INFER_ERR_INTERNAL, -1, "out of memory");
        for (int i = 0; i < n; i++)
            lt_infer_prediction_free(&preds[i]);
    }
    if (status) *response = lt_infer_error_response(e.msg);
    lt_infer_metrics_observe(s->metrics, status ? status : 200, status ? e.cls : LT_INFER_ERR_NONE,
                             now_s() - t0, status ? 0 : n);
    free(imgs);
    free(preds);
    lt_infer_request_free(&req);
    return status ? status : 200;
}

void lt_infer_service_observe(lt_infer_service *s, int http_status, lt_infer_error_class cls) {
    lt_infer_metrics_observe(s->metrics, http_status, cls, -1, 0);
}

lt_infer_model *lt_infer_service_model(lt_infer_service *s) {
    return s->model;
}

lt_infer_limits lt_infer_service_limits(const lt_infer_service *s) {
    return s->limits;
}

char *lt_infer_service_metrics_text(lt_infer_service *s) {
    lt_infer_batcher_stats bs;
    lt_infer_batcher_get_stats(s->batcher, &bs);
    return lt_infer_metrics_render(s->metrics, &bs);
}
