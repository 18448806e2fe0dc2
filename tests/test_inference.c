/* test_inference.c - the inference module: base64, the request parser on every bad input class, the
 * guide's own script output accepted as it is, the response shapes, the micro-batcher's batching (with a
 * fake predict function gated so the batches are deterministic), and a real model served through the
 * cache and the service, scoring as lt_cls_model_predict does. */
#include "check.h"

#include "inference/batcher.h"
#include "inference/model.h"
#include "inference/request.h"
#include "inference/response.h"
#include "inference/service.h"
#include "io/fsutil.h"
#include "tasks/cls_model.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

/* printf's %s of a string that may be NULL */
#define STR(s) ((s) ? (s) : "(null)")

static uint8_t *read_all(const char *path, size_t *n) {
    char *data = NULL;
    lt_err err = {{0}};
    if (lt_read_file(path, &data, n, 1 << 20, &err) != LT_OK) {
        CHECK_MSG(0, "cannot read %s: %s", path, err.msg);
        return NULL;
    }
    return (uint8_t *)data;
}

/* base64 of b; url: URL-safe alphabet; pad: '=' padding; wrap > 0: a "\n" (JSON-escaped when json) every
 * wrap characters. */
static char *b64(const uint8_t *b, size_t n, int url, int pad, int wrap, int json) {
    const char *abc = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                          : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *s = malloc(n * 3 + 16), *o = s;
    int col = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v =
            (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        int k = n - i >= 3 ? 4 : (int)(n - i) + 1;
        for (int j = 0; j < 4; j++) {
            if (wrap && col == wrap) {
                if (json) *o++ = '\\';
                *o++ = json ? 'n' : '\n';
                col = 0;
            }
            if (j < k)
                *o++ = abc[(v >> (18 - 6 * j)) & 63];
            else if (pad)
                *o++ = '=';
            col++;
        }
    }
    *o = 0;
    return s;
}

/* {"instances": [{"data": "<datas[0]>"}, ...]} */
static char *request_of(const char *const *datas, int n) {
    size_t len = 32;
    for (int i = 0; i < n; i++)
        len += strlen(datas[i]) + 16;
    char *s = malloc(len), *o = s;
    o += sprintf(o, "{\"instances\": [");
    for (int i = 0; i < n; i++)
        o += sprintf(o, "%s{\"data\": \"%s\"}", i ? ", " : "", datas[i]);
    sprintf(o, "]}");
    return s;
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

/* A PNG signature + IHDR (valid CRC) announcing w x h RGB + an empty IDAT: probes, never decodes. */
static void png_header(uint8_t out[45], uint32_t w, uint32_t h) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(out, sig, 8);
    uint8_t *c = out + 8;
    c[0] = c[1] = c[2] = 0, c[3] = 13;
    memcpy(c + 4, "IHDR", 4);
    uint8_t *d = c + 8;
    for (int i = 0; i < 4; i++)
        d[i] = (uint8_t)(w >> (24 - 8 * i)), d[4 + i] = (uint8_t)(h >> (24 - 8 * i));
    d[8] = 8, d[9] = 2, d[10] = d[11] = d[12] = 0;
    uint32_t crc = crc32_of(c + 4, 17);
    for (int i = 0; i < 4; i++)
        c[21 + i] = (uint8_t)(crc >> (24 - 8 * i));
    uint8_t *idat = out + 33;
    memset(idat, 0, 4);
    memcpy(idat + 4, "IDAT", 4);
    crc = crc32_of(idat + 4, 4);
    for (int i = 0; i < 4; i++)
        idat[8 + i] = (uint8_t)(crc >> (24 - 8 * i));
}

static const char *png_path = "tests/golden/inference_image.png";

/* Parses and decodes body; checks the status, the instance at fault, the class and a message needle. */
static void expect_error(const char *what, const char *body, size_t len, const lt_infer_limits *lim,
                         int status, int instance, lt_infer_error_class cls, const char *needle) {
    lt_infer_request req;
    lt_infer_error e = {0};
    int got = lt_infer_request_parse(body, len, lim, &req, &e);
    if (!got) got = lt_infer_request_decode(&req, lim, &e);
    lt_infer_request_free(&req);
    CHECK_MSG(got == status, "%s: status %d, want %d (%s)", what, got, status, e.msg);
    CHECK_MSG(e.http_status == status, "%s: e.http_status %d", what, e.http_status);
    CHECK_MSG(e.instance == instance, "%s: instance %d, want %d (%s)", what, e.instance, instance, e.msg);
    CHECK_MSG(e.cls == cls, "%s: class %s, want %s (%s)", what, lt_infer_error_class_str(e.cls),
              lt_infer_error_class_str(cls), e.msg);
    CHECK_MSG(strstr(e.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, e.msg, needle);
    if (instance >= 0) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "instance %d: ", instance);
        CHECK_MSG(!strncmp(e.msg, prefix, strlen(prefix)), "%s: message '%s' does not start with '%s'", what,
                  e.msg, prefix);
    }
}

/* ---- base64 ---- */

static void check_b64(const char *in, const char *want, size_t want_n) {
    uint8_t *out;
    size_t n;
    char why[128];
    long long pos = lt_infer_base64_decode(in, strlen(in), &out, &n, why, sizeof why);
    CHECK_MSG(pos == 0, "base64 '%s': failed at %lld: %s", in, pos, why);
    CHECK_MSG(n == want_n && (n == 0 || !memcmp(out, want, n)), "base64 '%s': %zu bytes, want %zu", in, n,
              want_n);
    free(out);
}

static void check_b64_bad(const char *in, long long want_pos, const char *needle) {
    uint8_t *out = (uint8_t *)1;
    size_t n = 7;
    char why[128] = "";
    long long pos = lt_infer_base64_decode(in, strlen(in), &out, &n, why, sizeof why);
    CHECK_MSG(pos == want_pos, "base64 '%s': position %lld, want %lld (%s)", in, pos, want_pos, why);
    CHECK_MSG(strstr(why, needle) != NULL, "base64 '%s': '%s' lacks '%s'", in, why, needle);
    CHECK(out == NULL && n == 0);
}

static void test_base64(void) {
    check_b64("", "", 0);
    check_b64("Zg==", "f", 1);
    check_b64("Zm8=", "fo", 2);
    check_b64("Zm9v", "foo", 3);
    check_b64("Zm9vYmFy", "foobar", 6);
    check_b64("Zg", "f", 1); /* unpadded */
    check_b64("Zm8", "fo", 2);
    check_b64("+/8=", "\xfb\xff", 2); /* standard alphabet */
    check_b64("-_8", "\xfb\xff", 2);  /* URL-safe, unpadded */
    check_b64(" Zm9v\r\nYm\tFy \n", "foobar", 6);
    check_b64("Zg=\n=", "f", 1); /* whitespace inside the padding */
    check_b64_bad("Zm9v*", 5, "'*'");
    check_b64_bad("Zm9v\x01", 5, "0x01");
    check_b64_bad("Zm9vY", 5, "dangling");
    check_b64_bad("Zg=", 3, "padding");
    check_b64_bad("Zm9v=", 5, "padding");
    check_b64_bad("Zg==Zg", 5, "after the '=' padding");
    check_b64_bad("Zm8==", 4, "padding");
}

/* ---- the parser ---- */

static void test_guide_request(void) {
    size_t n_png, n_json;
    uint8_t *png = read_all(png_path, &n_png);
    uint8_t *json = read_all("tests/golden/inference_request.json", &n_json);
    if (!png || !json) return;
    /* the fixture is the guide's script's output as it is: indent=4, sort_keys, padded standard base64 */
    CHECK(!memcmp(json, "{\n    \"instances\": [\n        {\n            \"data\": \"", 48));
    lt_infer_request req;
    lt_infer_error e = {0};
    CHECK_MSG(lt_infer_request_parse((const char *)json, n_json, NULL, &req, &e) == 0, "%s", e.msg);
    CHECK(req.n_instances == 1);
    if (req.n_instances == 1) {
        CHECK(req.instances[0].n_bytes == n_png && !memcmp(req.instances[0].bytes, png, n_png));
        CHECK_MSG(lt_infer_request_decode(&req, NULL, &e) == 0, "%s", e.msg);
        lt_image *im = &req.instances[0].image;
        CHECK(im->width == 7 && im->height == 5);
        int ok = 1;
        for (int y = 0; y < 5 && im->rgb; y++)
            for (int x = 0; x < 7; x++) {
                const uint8_t *p = im->rgb + (y * 7 + x) * 3;
                ok &= p[0] == x * 36 && p[1] == y * 60 && p[2] == (x + y) * 20;
            }
        CHECK_MSG(ok, "the guide's request decodes to other pixels");
    }
    lt_infer_request_free(&req);
    CHECK(req.instances == NULL && req.n_instances == 0);

    /* what users paste: URL-safe, unpadded, wrapped lines (JSON "\n" and raw CR LF), extra keys, a BOM */
    char *variants[6];
    variants[0] = b64(png, n_png, 1, 1, 0, 0);
    variants[1] = b64(png, n_png, 0, 0, 0, 0);
    variants[2] = b64(png, n_png, 0, 1, 76, 1);
    variants[3] = b64(png, n_png, 1, 0, 60, 1);
    variants[4] = b64(png, n_png, 0, 1, 0, 0);
    variants[5] = b64(png, n_png, 0, 1, 0, 0);
    for (int v = 0; v < 6; v++) {
        char *body = request_of((const char *const *)&variants[v], 1);
        if (v == 4) { /* extra keys, a BOM and surrounding whitespace */
            char *b2 = malloc(strlen(body) + 64);
            body[strlen(body) - 1] = 0; /* drop the closing '}' */
            sprintf(b2, "\xEF\xBB\xBF \n{\"signature_name\": \"x\", %s, \"k\": 1} \n", body + 1);
            free(body);
            body = b2;
        }
        if (v == 5) { /* several instances */
            const char *d[3] = {variants[5], variants[0], variants[1]};
            free(body);
            body = request_of(d, 3);
        }
        memset(&e, 0, sizeof e);
        int st = lt_infer_request_parse(body, strlen(body), NULL, &req, &e);
        CHECK_MSG(st == 0, "variant %d: %s", v, e.msg);
        for (int i = 0; i < req.n_instances; i++)
            CHECK_MSG(req.instances[i].n_bytes == n_png && !memcmp(req.instances[i].bytes, png, n_png),
                      "variant %d instance %d decodes to other bytes", v, i);
        CHECK(v != 5 || req.n_instances == 3);
        lt_infer_request_free(&req);
        free(body);
    }
    for (int v = 0; v < 6; v++)
        free(variants[v]);
    free(png);
    free(json);
}

static void test_bad_requests(void) {
    size_t n_png;
    uint8_t *png = read_all(png_path, &n_png);
    if (!png) return;
    char *good = b64(png, n_png, 0, 1, 0, 0);
    char buf[4096];
#define BAD(what, body, lim, status, inst, cls, needle)                                                      \
    expect_error(what, body, strlen(body), lim, status, inst, LT_INFER_ERR_##cls, needle)
    BAD("empty", "", NULL, 400, -1, INVALID_JSON, "empty request body");
    BAD("blank", " \n\t", NULL, 400, -1, INVALID_JSON, "empty request body");
    BAD("truncated", "{\"instances\": [", NULL, 400, -1, INVALID_JSON, "invalid JSON");
    BAD("syntax", "{\n  \"instances\": [}\n", NULL, 400, -1, INVALID_JSON, "(line 2, column");
    BAD("trailing", "{\"instances\": []} x", NULL, 400, -1, INVALID_JSON, "after the JSON value at byte 18");
    BAD("not json", "instances=1", NULL, 400, -1, INVALID_JSON, "at byte 0 (line 1, column 1)");
    BAD("array root", "[]", NULL, 400, -1, INVALID_REQUEST, "expected an object");
    BAD("no instances", "{\"instance\": []}", NULL, 400, -1, INVALID_REQUEST, "missing \"instances\"");
    BAD("instances object", "{\"instances\": {}}", NULL, 400, -1, INVALID_REQUEST,
        "must be an array, got an object");
    BAD("instances empty", "{\"instances\": []}", NULL, 400, -1, INVALID_REQUEST, "\"instances\" is empty");
    BAD("instance number", "{\"instances\": [1]}", NULL, 400, 0, INVALID_REQUEST, "expected an object");
    BAD("no data", "{\"instances\": [{\"b64\": \"Zm9v\"}]}", NULL, 400, 0, INVALID_REQUEST,
        "missing \"data\"");
    BAD("data number", "{\"instances\": [{\"data\": 5}]}", NULL, 400, 0, INVALID_REQUEST, "got a number");
    BAD("data null", "{\"instances\": [{\"data\": null}]}", NULL, 400, 0, INVALID_REQUEST, "got null");
    BAD("data empty", "{\"instances\": [{\"data\": \"\"}]}", NULL, 400, 0, INVALID_REQUEST,
        "\"data\" is empty");
    BAD("data blank", "{\"instances\": [{\"data\": \" \\n \"}]}", NULL, 400, 0, INVALID_REQUEST, "is empty");
    BAD("base64 char", "{\"instances\": [{\"data\": \"iVBO%w0K\"}]}", NULL, 400, 0, INVALID_BASE64,
        "invalid base64 character '%' at character 5");
    BAD("base64 dangling", "{\"instances\": [{\"data\": \"iVBORw0KG\"}]}", NULL, 400, 0, INVALID_BASE64,
        "dangling");
    BAD("data url", "{\"instances\": [{\"data\": \"data:image/png;base64,iVBORw0KGgo=\"}]}", NULL, 400, 0,
        INVALID_BASE64, "without the 'data:...;base64,' prefix");
    BAD("text", "{\"instances\": [{\"data\": \"aGVsbG8gd29ybGQ=\"}]}", NULL, 400, 0, NOT_AN_IMAGE,
        "not a PNG or JPEG image (it starts with bytes 68 65 6c 6c 6f 20 77 6f)");
    BAD("gif", "{\"instances\": [{\"data\": \"R0lGODlhAQABAAAAACw=\"}]}", NULL, 400, 0, NOT_AN_IMAGE,
        "a GIF image; only PNG and JPEG");
    /* the second instance is the bad one: the message names it */
    snprintf(buf, sizeof buf, "{\"instances\": [{\"data\": \"%s\"}, {\"data\": \"!!\"}]}", good);
    BAD("second bad", buf, NULL, 400, 1, INVALID_BASE64, "'!' at character 1");
    snprintf(buf, sizeof buf, "{\"instances\": [{\"data\": \"%s\"}, []]}", good);
    BAD("second not object", buf, NULL, 400, 1, INVALID_REQUEST, "got an array");

    /* corrupt images: a PNG cut after its header, a JPEG of garbage, a PNG whose IDAT is damaged */
    uint8_t hdr[45];
    png_header(hdr, 7, 5);
    char *d = b64(hdr, 45, 0, 1, 0, 0);
    snprintf(buf, sizeof buf, "{\"instances\": [{\"data\": \"%s\"}, {\"data\": \"%s\"}]}", good, d);
    BAD("png cut", buf, NULL, 400, 1, CORRUPT_IMAGE, "instance 1: corrupt PNG");
    free(d);
    uint8_t jpg[64] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0};
    for (int i = 11; i < 64; i++)
        jpg[i] = (uint8_t)(i * 37);
    d = b64(jpg, sizeof jpg, 0, 1, 0, 0);
    snprintf(buf, sizeof buf, "{\"instances\": [{\"data\": \"%s\"}]}", d);
    BAD("jpeg garbage", buf, NULL, 400, 0, CORRUPT_IMAGE, "instance 0: corrupt JPEG");
    free(d);
    uint8_t *broken = malloc(n_png);
    memcpy(broken, png, n_png);
    for (size_t i = 45; i < 60 && i < n_png; i++)
        broken[i] ^= 0x5A;
    d = b64(broken, n_png, 0, 1, 0, 0);
    snprintf(buf, sizeof buf, "{\"instances\": [{\"data\": \"%s\"}]}", d);
    BAD("png damaged", buf, NULL, 400, 0, CORRUPT_IMAGE, "instance 0: corrupt PNG");
    free(d);
    free(broken);

    /* the limits: 413 */
    snprintf(buf, sizeof buf, "{\"instances\": [{\"data\": \"%s\"}, {\"data\": \"%s\"}]}", good, good);
    lt_infer_limits lim = {.max_request_bytes = 100};
    BAD("request bytes", buf, &lim, 413, -1, TOO_LARGE, "over the limit of 100 bytes");
    lim = (lt_infer_limits){.max_instances = 1};
    BAD("instances", buf, &lim, 413, -1, TOO_LARGE, "2 instances, over the limit of 1");
    lim = (lt_infer_limits){.max_image_bytes = 150};
    BAD("image bytes", buf, &lim, 413, 0, TOO_LARGE, "the image is 151 bytes, over the limit of 150 bytes");
    lim = (lt_infer_limits){.max_pixels = 34};
    BAD("pixels", buf, &lim, 413, 0, TOO_LARGE, "7 x 5 pixels, over the limit of 34");
    lim = (lt_infer_limits){.max_pixels = 35};
    lt_infer_request req;
    lt_infer_error e = {0};
    CHECK(lt_infer_request_parse(buf, strlen(buf), &lim, &req, &e) == 0 &&
          lt_infer_request_decode(&req, &lim, &e) == 0);
    lt_infer_request_free(&req);
    /* a header announcing 100000 x 100000 under the default 50 megapixels: refused before any allocation */
    png_header(hdr, 100000, 100000);
    d = b64(hdr, 45, 0, 1, 0, 0);
    snprintf(buf, sizeof buf, "{\"instances\": [{\"data\": \"%s\"}]}", d);
    BAD("huge header", buf, NULL, 413, 0, TOO_LARGE, "100000 x 100000 pixels, over the limit of 50000000");
    free(d);

    /* hostile JSON: deep nesting (cJSON's limit), NUL bytes, a lone surrogate escape */
    char *deep = malloc(20001);
    memset(deep, '[', 20000);
    deep[20000] = 0;
    BAD("deep nesting", deep, NULL, 400, -1, INVALID_JSON, "invalid JSON");
    free(deep);
    expect_error("nul byte", "{\"instances\"\0: []}", 18, NULL, 400, -1, LT_INFER_ERR_INVALID_JSON,
                 "at byte 12");
    BAD("surrogate", "{\"instances\": [{\"data\": \"\\ud800\"}]}", NULL, 400, -1, INVALID_JSON,
        "invalid JSON");
#undef BAD
    free(good);
    free(png);
}

/* Replays the fuzz seeds (tests/fuzz/corpus_request/): valid_* and guide_* parse and decode, bad_* are
 * refused with a 4xx, and every refusal names its instance. */
static void test_fuzz_corpus(void) {
    const char *dir = "tests/fuzz/corpus_request";
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    if (!d) return;
    int seen = 0;
    for (struct dirent *ent; (ent = readdir(d));) {
        if (ent->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        size_t n;
        uint8_t *body = read_all(path, &n);
        if (!body) continue;
        lt_infer_request req;
        lt_infer_error e = {0};
        int st = lt_infer_request_parse((const char *)body, n, NULL, &req, &e);
        if (!st) st = lt_infer_request_decode(&req, NULL, &e);
        int want_bad = !strncmp(ent->d_name, "bad_", 4);
        CHECK_MSG(want_bad ? (st == 400 || st == 413) : st == 0, "%s: status %d (%s)", ent->d_name, st,
                  e.msg);
        if (st && e.instance >= 0) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "instance %d: ", e.instance);
            CHECK_MSG(!strncmp(e.msg, prefix, strlen(prefix)), "%s: '%s'", ent->d_name, e.msg);
        }
        lt_infer_request_free(&req);
        free(body);
        seen++;
    }
    closedir(d);
    CHECK_MSG(seen >= 20, "only %d seeds in %s", seen, dir);
}

/* ---- responses ---- */

static void test_responses(void) {
    char *labels[3] = {"cat", "dog", "bird"};
    float probs[6] = {0.2f, 0.7f, 0.1f, 0.3f, 0.3f, 0.4f};
    /* one instance: the guide's bare list, byte for byte what `lathe predict` prints */
    lt_cls_model fake = {0};
    fake.labels = labels;
    fake.n_labels = 3;
    cJSON *want = lt_cls_prediction_json(&fake, probs);
    char *want_s = cJSON_PrintUnformatted(want);
    char *s = lt_infer_cls_response(labels, 3, probs, 1);
    CHECK_MSG(s && !strcmp(s, want_s), "one instance: %s, want %s", STR(s), STR(want_s));
    const char *head = "[{\"score\":0.699999988079071,\"label\":\"dog\"},{\"score\":0.20000000298023224,";
    CHECK_MSG(s && !strncmp(s, head, strlen(head)), "one instance: %s", STR(s));
    free(s);
    /* several: {"predictions": [list, list]}, ties keep label order */
    s = lt_infer_cls_response(labels, 3, probs, 2);
    cJSON *j = cJSON_Parse(s);
    cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "predictions");
    CHECK(cJSON_GetArraySize(j) == 1 && cJSON_GetArraySize(p) == 2);
    char *first = cJSON_PrintUnformatted(cJSON_GetArrayItem(p, 0));
    CHECK_MSG(first && !strcmp(first, want_s), "predictions[0] %s", STR(first));
    cJSON *second = cJSON_GetArrayItem(p, 1);
    const char *order[3] = {"bird", "cat", "dog"};
    for (int i = 0; i < 3; i++) {
        cJSON *l = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(second, i), "label");
        CHECK_MSG(cJSON_IsString(l) && !strcmp(l->valuestring, order[i]), "tie order at %d", i);
    }
    free(first);
    cJSON_Delete(j);
    free(s);
    cJSON_Delete(want);
    free(want_s);

    /* segmentation: one label map per instance */
    int32_t m0[6] = {1, 1, 27, 27, 27, 1}, m1[2] = {0, 5};
    const int32_t *maps[2] = {m0, m1};
    int hs[2] = {2, 1}, ws[2] = {3, 2};
    s = lt_infer_seg_response(maps, hs, ws, 2);
    CHECK_MSG(s && !strcmp(s, "{\"predictions\":[[[1,1,27],[27,27,1]],[[0,5]]]}"), "seg: %s", STR(s));
    free(s);
    s = lt_infer_seg_response(maps, hs, ws, 1);
    CHECK_MSG(s && !strcmp(s, "{\"predictions\":[[[1,1,27],[27,27,1]]]}"), "seg n=1: %s", STR(s));
    free(s);

    /* detection: {label: {xmin, ymin, xmax, ymax}} in integer pixels */
    char *dl[2] = {"balloon", "cat"};
    lt_infer_box b0[2] = {{0, 0.9f, 292.6f, 325.2f, 361.0f, 374.5f}, {7, 0.6f, 1, 2, 3, 4}};
    const lt_infer_box *boxes[2] = {b0, NULL};
    int nb[2] = {2, 0};
    s = lt_infer_det_response(dl, 2, boxes, nb, 2);
    CHECK_MSG(
        s && !strcmp(s,
                     "{\"predictions\":[[{\"balloon\":{\"xmin\":293,\"ymin\":325,\"xmax\":361,\"ymax\":375}},"
                     "{\"7\":{\"xmin\":1,\"ymin\":2,\"xmax\":3,\"ymax\":4}}],[]]}"),
        "det: %s", STR(s));
    free(s);

    s = lt_infer_error_response("instance 0: \"data\" is empty");
    CHECK_MSG(s && !strcmp(s, "{\"error\":\"instance 0: \\\"data\\\" is empty\"}"), "error: %s", STR(s));
    free(s);
}

/* ---- the batcher, with a fake model ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int gate_open; /* 0: the first call waits until the test opens it */
    int entered;   /* calls started */
    int sizes[64]; /* n of each call */
    int n_calls;
} fake_model;

/* Predicts "probs[0] = width" so each caller can check it got its own image's answer; fails a batch
 * holding an image of width 99. */
static lt_status fake_predict(void *ctx, const lt_image *const *imgs, int n, lt_infer_prediction *out,
                              lt_err *err) {
    fake_model *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->entered++;
    if (f->n_calls < 64) f->sizes[f->n_calls] = n;
    f->n_calls++;
    pthread_cond_broadcast(&f->cond);
    while (!f->gate_open)
        pthread_cond_wait(&f->cond, &f->mu);
    pthread_mutex_unlock(&f->mu);
    for (int i = 0; i < n; i++)
        if (imgs[i]->width == 99) return lt_errorf(err, LT_ERR_ARG, "fake failure");
    for (int i = 0; i < n; i++) {
        out[i] = (lt_infer_prediction){0};
        out[i].probs = malloc(sizeof(float));
        out[i].probs[0] = (float)imgs[i]->width;
    }
    return LT_OK;
}

typedef struct {
    lt_infer_batcher *b;
    lt_image imgs[8];
    const lt_image *ptrs[8];
    int n;
    lt_status st;
    lt_err err;
    lt_infer_prediction out[8];
} submitter;

static void *submit_thread(void *arg) {
    submitter *s = arg;
    for (int i = 0; i < s->n; i++)
        s->ptrs[i] = &s->imgs[i];
    s->st = lt_infer_batcher_submit(s->b, s->ptrs, s->n, s->out, &s->err);
    return NULL;
}

static void wait_queued(lt_infer_batcher *b, int jobs) {
    lt_infer_batcher_stats st;
    for (int spin = 0; spin < 20000; spin++) {
        lt_infer_batcher_get_stats(b, &st);
        if (st.queued_jobs >= jobs) return;
        usleep(500);
    }
    CHECK_MSG(0, "jobs never queued: %d of %d", st.queued_jobs, jobs);
}

static void wait_entered(fake_model *f, int calls) {
    pthread_mutex_lock(&f->mu);
    while (f->entered < calls)
        pthread_cond_wait(&f->cond, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

static void set_gate(fake_model *f, int open) {
    pthread_mutex_lock(&f->mu);
    f->gate_open = open;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->mu);
}

/* Starts submitters one after another, each queued before the next starts (so the queue order is known):
 * job k has sizes[k] images of width base + k. The batcher must be blocked in a call. */
static void start_jobs(lt_infer_batcher *b, submitter *subs, pthread_t *th, const int *sizes, int n,
                       int base) {
    for (int k = 0; k < n; k++) {
        subs[k] = (submitter){.b = b, .n = sizes[k]};
        for (int i = 0; i < sizes[k]; i++)
            subs[k].imgs[i].width = base + k;
        pthread_create(&th[k], NULL, submit_thread, &subs[k]);
        wait_queued(b, k + 1);
    }
}

/* Starts one job of one image of width w and waits until the fake model is inside its call (blocked on the
 * closed gate), so the jobs started next queue up behind it. */
static void start_blocker(lt_infer_batcher *b, fake_model *f, submitter *s, pthread_t *th, int w) {
    *s = (submitter){.b = b, .n = 1};
    s->imgs[0].width = w;
    int before = f->entered;
    pthread_create(th, NULL, submit_thread, s);
    wait_entered(f, before + 1);
}

static void *destroy_thread(void *b) {
    lt_infer_batcher_destroy(b);
    return NULL;
}

static void check_answers(submitter *subs, pthread_t *th, int n, int base, const char *what) {
    for (int k = 0; k < n; k++) {
        pthread_join(th[k], NULL);
        CHECK_MSG(subs[k].st == LT_OK, "%s: job %d failed: %s", what, k, subs[k].err.msg);
        for (int i = 0; subs[k].st == LT_OK && i < subs[k].n; i++) {
            CHECK_MSG(subs[k].out[i].probs[0] == (float)(base + k), "%s: job %d got another job's answer",
                      what, k);
            lt_infer_prediction_free(&subs[k].out[i]);
        }
    }
}

static void test_batcher(void) {
    fake_model f = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    lt_infer_batcher *b = NULL;
    lt_err err = {{0}};
    lt_infer_batcher_opts o = {.max_batch = 4, .max_delay_ms = 20, .max_queue = 64};
    CHECK(lt_infer_batcher_create(fake_predict, &f, &o, &b, &err) == LT_OK);
    if (!b) return;
    submitter subs[16];
    pthread_t th[16];

    /* one job blocks the model; ten single-image jobs queue meanwhile and then go in batches of 4, 4, 2 */
    start_blocker(b, &f, &subs[0], &th[0], 100);
    int ones[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    start_jobs(b, subs + 1, th + 1, ones, 10, 1);
    set_gate(&f, 1);
    pthread_join(th[0], NULL);
    CHECK(subs[0].st == LT_OK && subs[0].out[0].probs && subs[0].out[0].probs[0] == 100.0f);
    lt_infer_prediction_free(&subs[0].out[0]);
    check_answers(subs + 1, th + 1, 10, 1, "singles");
    CHECK_MSG(f.n_calls == 4 && f.sizes[0] == 1 && f.sizes[1] == 4 && f.sizes[2] == 4 && f.sizes[3] == 2,
              "batches %d: %d %d %d %d", f.n_calls, f.sizes[0], f.sizes[1], f.sizes[2], f.sizes[3]);

    /* jobs are never split: 3, 3, 1 queued behind a blocked call go as [3] then [3, 1]; a job of 6 >
     * max_batch runs alone */
    set_gate(&f, 0);
    f.n_calls = 0;
    f.entered = 0;
    start_blocker(b, &f, &subs[0], &th[0], 200);
    int mixed[4] = {3, 3, 1, 6};
    start_jobs(b, subs + 1, th + 1, mixed, 4, 10);
    set_gate(&f, 1);
    check_answers(subs, th, 1, 200, "blocker");
    check_answers(subs + 1, th + 1, 4, 10, "mixed");
    CHECK_MSG(f.n_calls == 4 && f.sizes[1] == 3 && f.sizes[2] == 4 && f.sizes[3] == 6, "batches %d: %d %d %d",
              f.n_calls, f.sizes[1], f.sizes[2], f.sizes[3]);

    /* a failing batch fails each of its jobs with the model's message */
    submitter s = {.b = b, .n = 2};
    s.imgs[0].width = 99;
    s.imgs[1].width = 1;
    submit_thread(&s);
    CHECK_MSG(s.st == LT_ERR_ARG && strstr(s.err.msg, "fake failure"), "failure: %d %s", s.st, s.err.msg);

    lt_infer_batcher_stats stats;
    lt_infer_batcher_get_stats(b, &stats);
    CHECK(stats.queued_jobs == 0 && stats.queued_images == 0 && stats.jobs == 17 && stats.batches == 9);
    lt_infer_batcher_destroy(b);

    /* a full queue refuses at once (503 upstream); destroy answers what is queued before it returns */
    f.n_calls = f.entered = 0;
    set_gate(&f, 0);
    o = (lt_infer_batcher_opts){.max_batch = 1, .max_delay_ms = 0, .max_queue = 2};
    CHECK(lt_infer_batcher_create(fake_predict, &f, &o, &b, &err) == LT_OK);
    start_blocker(b, &f, &subs[0], &th[0], 300);
    int two[2] = {1, 1};
    start_jobs(b, subs + 1, th + 1, two, 2, 301);
    submitter full = {.b = b, .n = 1};
    submit_thread(&full);
    CHECK_MSG(full.st == LT_ERR_STATE && strstr(full.err.msg, "busy"), "full queue: %d %s", full.st,
              full.err.msg);
    pthread_t destroyer;
    pthread_create(&destroyer, NULL, destroy_thread, b);
    set_gate(&f, 1);
    pthread_join(destroyer, NULL);
    check_answers(subs, th, 3, 300, "drained at destroy");
    CHECK(f.n_calls == 3);
}

/* ---- a real model ---- */

static lt_image pattern_image(int w, int h, int seed) {
    lt_image im = {w, h, malloc((size_t)w * h * 3)};
    for (int i = 0; i < w * h * 3; i++)
        im.rgb[i] = (uint8_t)((i * 31 + seed * 97) ^ (i >> 3));
    return im;
}

static void test_model(const char *tmp) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/model", tmp);
    char *labels[3] = {"cat", "dog", "bird"};
    lt_err err = {{0}};
    lt_cls_model ref;
    if (lt_cls_model_create(&ref, labels, 3, 32, 7, &err) != LT_OK ||
        lt_cls_model_save(&ref, dir, NULL, &err) != LT_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    lt_infer_algorithm algo = LT_INFER_ALGORITHM_COUNT;
    CHECK(lt_infer_model_probe(dir, &algo, &err) == LT_OK && algo == LT_INFER_CLASSIFICATION);

    lt_infer_cache *cache = lt_infer_cache_create(4);
    lt_infer_model *m = NULL, *m2 = NULL;
    CHECK_MSG(lt_infer_cache_get(cache, dir, &m, &err) == LT_OK, "%s", err.msg);
    CHECK(lt_infer_cache_get(cache, dir, &m2, &err) == LT_OK && m2 == m && lt_infer_cache_size(cache) == 1);
    lt_infer_cache_release(cache, m2);
    if (!m) return;
    int n_labels = 0;
    lt_infer_model_labels(m, &n_labels);
    CHECK(n_labels == 3 && lt_infer_model_algorithm(m) == LT_INFER_CLASSIFICATION);

    /* 7 images of different sizes run as 4 + 2 + 1 and score like lt_cls_model_predict, one by one */
    lt_image imgs[7];
    const lt_image *ptrs[7];
    for (int i = 0; i < 7; i++) {
        imgs[i] = pattern_image(20 + 5 * i, 30 - 2 * i, i);
        ptrs[i] = &imgs[i];
    }
    lt_infer_prediction preds[7];
    CHECK_MSG(lt_infer_model_predict(m, ptrs, 7, preds, &err) == LT_OK, "%s", err.msg);
    float want[7][3];
    for (int i = 0; i < 7; i++) {
        CHECK(lt_cls_model_predict(&ref, &imgs[i], want[i], &err) == LT_OK);
        CHECK_CLOSE("batched probs", preds[i].probs, want[i], 3, 1e-5, 1e-4);
    }
    /* the batch-1 graph is the same as lt_cls_model_predict's: the same bits, so the same response bytes */
    CHECK(!memcmp(preds[6].probs, want[6], sizeof want[6]));
    char *resp = lt_infer_model_response(m, &preds[6], 1);
    cJSON *wj = lt_cls_prediction_json(&ref, want[6]);
    char *ws = cJSON_PrintUnformatted(wj);
    CHECK_MSG(resp && !strcmp(resp, ws), "response %s, want %s", STR(resp), STR(ws));
    free(resp);
    free(ws);
    cJSON_Delete(wj);
    for (int i = 0; i < 7; i++)
        lt_infer_prediction_free(&preds[i]);

    /* the service: the guide's request (the fixture, a 7 x 5 PNG) answered as one bare list */
    lt_infer_service *svc = NULL;
    lt_infer_service_opts so = {.batch = {.max_batch = 4, .max_delay_ms = 1}};
    CHECK(lt_infer_service_create(m, &so, &svc, &err) == LT_OK);
    size_t n_json, n_png;
    uint8_t *json = read_all("tests/golden/inference_request.json", &n_json);
    uint8_t *png = read_all(png_path, &n_png);
    if (svc && json && png) {
        lt_image im = {0};
        CHECK(lt_image_decode(png, n_png, "png", NULL, &im, &err) == LT_OK);
        float p[3];
        CHECK(lt_cls_model_predict(&ref, &im, p, &err) == LT_OK);
        wj = lt_cls_prediction_json(&ref, p);
        ws = cJSON_PrintUnformatted(wj);
        char *out = NULL;
        int status = lt_infer_service_handle(svc, (const char *)json, n_json, &out);
        CHECK_MSG(status == 200 && out && !strcmp(out, ws), "service: %d %s, want %s", status, STR(out),
                  STR(ws));
        free(out);
        /* three instances: {"predictions": [...]} whose lists match one by one */
        char *d = b64(png, n_png, 0, 1, 0, 0);
        const char *ds[3] = {d, d, d};
        char *body = request_of(ds, 3);
        status = lt_infer_service_handle(svc, body, strlen(body), &out);
        cJSON *j = cJSON_Parse(out);
        cJSON *pr = cJSON_GetObjectItemCaseSensitive(j, "predictions");
        CHECK_MSG(status == 200 && cJSON_GetArraySize(pr) == 3, "3 instances: %d %s", status, STR(out));
        for (int i = 0; i < cJSON_GetArraySize(pr); i++) {
            cJSON *l = cJSON_GetArrayItem(pr, i);
            cJSON *top = cJSON_GetArrayItem(l, 0), *want_top = cJSON_GetArrayItem(wj, 0);
            CHECK(cJSON_GetArraySize(l) == 3);
            CHECK(!strcmp(cJSON_GetObjectItem(top, "label")->valuestring,
                          cJSON_GetObjectItem(want_top, "label")->valuestring));
            CHECK_NEAR(cJSON_GetObjectItem(top, "score")->valuedouble,
                       cJSON_GetObjectItem(want_top, "score")->valuedouble, 1e-5, 0);
        }
        cJSON_Delete(j);
        free(out);
        /* a bad request: the 4xx and {"error": ...} naming the instance */
        free(body);
        const char *bad[2] = {d, "@@"};
        body = request_of(bad, 2);
        status = lt_infer_service_handle(svc, body, strlen(body), &out);
        CHECK_MSG(status == 400 && out && strstr(out, "{\"error\":\"instance 1: invalid base64"),
                  "bad: %d %s", status, out);
        free(out);
        free(body);
        char *metrics = lt_infer_service_metrics_text(svc);
        CHECK(metrics && strstr(metrics, "lathe_inference_requests_total{code=\"200\"} 2\n") &&
              strstr(metrics, "lathe_inference_errors_total{class=\"invalid_base64\"} 1\n") &&
              strstr(metrics, "lathe_inference_instances_total 4\n") &&
              strstr(metrics, "lathe_inference_request_duration_seconds_count 3\n"));
        free(metrics);
        free(d);
        free(ws);
        cJSON_Delete(wj);
        lt_image_free(&im);
    }
    free(json);
    free(png);
    lt_infer_service_destroy(svc);
    for (int i = 0; i < 7; i++)
        lt_image_free(&imgs[i]);

    /* eviction waits for the last reference; a failed load is not cached */
    CHECK(lt_infer_cache_evict(cache, dir) == 1 && lt_infer_cache_size(cache) == 0);
    lt_infer_cache_release(cache, m);
    lt_infer_model *none = NULL;
    char missing[600];
    snprintf(missing, sizeof missing, "%s/none", tmp);
    CHECK(lt_infer_cache_get(cache, missing, &none, &err) != LT_OK && !none &&
          strstr(err.msg, "config.json"));
    CHECK(lt_infer_cache_size(cache) == 0);
    lt_infer_cache_destroy(cache);
    lt_cls_model_free(&ref);

    /* the algorithm switch: a SegFormer directory is recognized, and refused until its backend exists */
    char seg[600], cfg[700];
    snprintf(seg, sizeof seg, "%s/seg", tmp);
    snprintf(cfg, sizeof cfg, "%s/config.json", seg);
    lt_mkdir_p(seg, &err);
    FILE *fp = fopen(cfg, "w");
    if (fp) {
        fputs("{\"model_type\": \"segformer\"}", fp);
        fclose(fp);
    }
    CHECK(lt_infer_model_probe(seg, &algo, &err) == LT_OK && algo == LT_INFER_SEGMENTATION);
    CHECK(lt_infer_model_load(seg, 1, &none, &err) == LT_ERR_ARG && strstr(err.msg, "not supported yet"));
    fp = fopen(cfg, "w");
    if (fp) {
        fputs("{\"lathe\": {\"algorithm\": \"image-captioning\"}, \"model_type\": \"resnet\"}", fp);
        fclose(fp);
    }
    CHECK(lt_infer_model_probe(seg, &algo, &err) == LT_ERR_ARG && strstr(err.msg, "image-captioning"));
}

int main(void) {
    test_base64();
    test_guide_request();
    test_bad_requests();
    test_fuzz_corpus();
    test_responses();
    test_batcher();
    char tmp[] = "/tmp/lathe-test-inference-XXXXXX";
    if (mkdtemp(tmp)) {
        test_model(tmp);
        lt_remove_tree(tmp, NULL);
    }
    return check_summary("test_inference");
}
