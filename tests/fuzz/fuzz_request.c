/* fuzz_request.c - libFuzzer target for the inference request path (inference/request.c): any body must
 * parse, decode and answer or be refused with a 400/413 naming the instance, never crash, leak or read out
 * of bounds. The whole path runs: JSON (cJSON), base64, the magic-byte check, PNG/JPEG decoding under small
 * limits, and the classification response builder on the decoded images (a fake model: no weights needed).
 * The raw input also goes through the base64 decoder alone. Seeds: tests/fuzz/corpus_request/ (written by
 * tests/fuzz/make_corpus_request.py); dictionary: tests/fuzz/request.dict. Build: tests/fuzz/CMakeLists.txt.
 */
#include "inference/request.h"
#include "inference/response.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* small limits keep each run fast while reaching every refusal */
    lt_infer_limits lim = {
        .max_request_bytes = 1 << 20, .max_instances = 8, .max_image_bytes = 1 << 18, .max_pixels = 1 << 20};
    lt_infer_request req;
    lt_infer_error e = {0};
    int status = lt_infer_request_parse((const char *)data, size, &lim, &req, &e);
    if (!status) status = lt_infer_request_decode(&req, &lim, &e);
    if (status) {
        if (status != 400 && status != 413 && status != 500) abort();
        if (e.http_status != status || !e.msg[0] || e.instance < -1) abort();
        if (e.instance >= 0) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "instance %d: ", e.instance);
            if (strncmp(e.msg, prefix, strlen(prefix)) != 0) abort(); /* every message names its instance */
        }
        char *body = lt_infer_error_response(e.msg);
        cJSON *j = body ? cJSON_Parse(body) : NULL;
        if (body && !j) abort(); /* the error body is always JSON */
        cJSON_Delete(j);
        free(body);
    } else {
        if (req.n_instances < 1 || req.n_instances > lim.max_instances) abort();
        /* a fake classifier over two labels: scores from the image size; the response must be JSON */
        char *labels[2] = {"wide", "tall"};
        float *probs = malloc((size_t)req.n_instances * 2 * sizeof *probs);
        for (int i = 0; i < req.n_instances; i++) {
            const lt_image *im = &req.instances[i].image;
            if (im->width < 1 || im->height < 1 || (int64_t)im->width * im->height > lim.max_pixels) abort();
            probs[2 * i] = (float)im->width / (float)(im->width + im->height);
            probs[2 * i + 1] = 1.0f - probs[2 * i];
        }
        char *body = lt_infer_cls_response(labels, 2, probs, req.n_instances);
        cJSON *j = body ? cJSON_Parse(body) : NULL;
        if (!j) abort();
        cJSON_Delete(j);
        free(body);
        free(probs);
    }
    lt_infer_request_free(&req);

    uint8_t *out;
    size_t n;
    char why[128];
    long long pos = lt_infer_base64_decode((const char *)data, size, &out, &n, why, sizeof why);
    if (pos < -1 || pos > (long long)size || (pos && out)) abort();
    if (!pos && n > size) abort();
    free(out);
    return 0;
}
