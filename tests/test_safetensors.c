/* Tests of the safetensors reader/writer and the parameter-store loader: round trips, the reference
 * writer's exact bytes, dtype conversion against torch, a table of malformed headers, truncation at every
 * length, random byte flips (never a crash; run under ASan in build-asan) and the load report. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "golden.h"
#include "core/params.h"
#include "core/rng.h"
#include "io/params_io.h"
#include "io/safetensors.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512]; /* a few live at once per call site */
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static const char *golden_path(const char *name) {
    static char buf[1024];
    const char *dir = getenv("LATHE_GOLDEN_DIR");
    snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "tests/golden", name);
    return buf;
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    return buf;
}

static int write_all(const char *path, const uint8_t *buf, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t k = fwrite(buf, 1, len, fp);
    fclose(fp);
    return k == len ? 0 : -1;
}

/* A file image: 8-byte length, the header text as given, then data_len bytes counting up from 1. The
 * buffer is exactly that long, so ASan catches any read past it. */
static uint8_t *make_image(const char *json, size_t json_len, size_t data_len, size_t *len) {
    *len = 8 + json_len + data_len;
    uint8_t *buf = malloc(*len);
    uint64_t n = json_len;
    memcpy(buf, &n, 8);
    memcpy(buf + 8, json, json_len);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + json_len + i] = (uint8_t)(i + 1);
    return buf;
}

/* ---- round trip through the parameter store ---- */

/* Scalars pass a non-NULL shape: lt_params_add memcpy's ndim (0) dimensions from it, which UBSan flags
 * for NULL. */
static const int64_t s_scalar[1] = {0};

static void declare_model(lt_params *p) {
    static const int64_t s_conv[4] = {4, 3, 3, 3}, s_bias[1] = {4}, s_fc[2] = {5, 7}, s_empty[2] = {0, 3};
    lt_err err = {{0}};
    CHECK(lt_params_add(p, "embed.conv.weight", s_conv, 4, LT_PARAM_TRAINABLE, &err));
    CHECK(lt_params_add(p, "embed.conv.bias", s_bias, 1, LT_PARAM_TRAINABLE, &err));
    CHECK(lt_params_add(p, "bn.running_mean", s_bias, 1, LT_PARAM_BUFFER, &err));
    CHECK(lt_params_add(p, "fc.weight", s_fc, 2, LT_PARAM_TRAINABLE, &err));
    CHECK(lt_params_add(p, "frozen.scale", s_scalar, 0, LT_PARAM_FROZEN, &err));
    CHECK(lt_params_add(p, "zero.sized", s_empty, 2, LT_PARAM_TRAINABLE, &err));
    CHECK(lt_params_alloc(p, &err) == LT_OK);
}

static void test_roundtrip(void) {
    lt_params a, b;
    lt_params_init(&a);
    lt_params_init(&b);
    declare_model(&a);
    declare_model(&b);
    lt_rng r;
    lt_rng_seed(&r, 7, 1);
    for (int64_t i = 0; i < a.numel; i++)
        a.data[i] = lt_rng_normal(&r);
    a.data[0] = -0.0f;
    a.data[1] = NAN;
    a.data[2] = INFINITY;
    a.data[3] = 1e-42f; /* subnormal */
    lt_err err = {{0}};
    const char *path = tmp_path("roundtrip.safetensors");
    CHECK_MSG(lt_params_save_safetensors(&a, path, 1, &err) == LT_OK, "%s", err.msg);
    CHECK(access(tmp_path("roundtrip.safetensors.tmp"), F_OK) != 0);
    lt_load_report rep = {0};
    CHECK_MSG(lt_params_load_safetensors(&b, path, &rep, &err) == LT_OK, "%s", err.msg);
    CHECK(memcmp(a.data, b.data, (size_t)a.numel * sizeof(float)) == 0);
    CHECK(rep.n_loaded == 6 && rep.n_missing == 0 && rep.n_unexpected == 0 && rep.n_mismatched == 0);
    lt_load_report_free(&rep);

    /* the file itself: 8-aligned header padded with spaces, {"format": "pt"} first, sorted names */
    size_t len;
    uint8_t *buf = read_all(path, &len);
    uint64_t n;
    memcpy(&n, buf, 8);
    CHECK(n % 8 == 0 && 8 + n <= len);
    CHECK(memcmp(buf + 8, "{\"__metadata__\":{\"format\":\"pt\"},\"bn.running_mean\":", 50) == 0);
    size_t close_at = 8 + n - 1;
    while (buf[close_at] == ' ')
        close_at--;
    CHECK(buf[close_at] == '}' && 8 + n - 1 - close_at < 8);
    lt_st_file *f = NULL;
    CHECK(lt_st_parse(buf, len, "roundtrip", &f, &err) == LT_OK);
    if (f) {
        CHECK(lt_st_count(f) == 6);
        CHECK(strcmp(lt_st_metadata_get(f, "format"), "pt") == 0);
        const char *order[6] = {"bn.running_mean", "embed.conv.bias", "embed.conv.weight",
                                "fc.weight",       "frozen.scale",    "zero.sized"};
        for (int i = 0; i < 6; i++) {
            const lt_st_entry *e = lt_st_entry_at(f, i);
            CHECK_MSG(strcmp(e->name, order[i]) == 0 && e->dtype == LT_ST_F32, "entry %d is %s", i, e->name);
            CHECK(lt_st_find(f, order[i]) == e);
            CHECK((8 + n + e->begin) % 4 == 0); /* float data stays aligned in the file */
        }
        CHECK(lt_st_find(f, "nope") == NULL && lt_st_entry_at(f, 6) == NULL);
        const lt_st_entry *fr = lt_st_find(f, "frozen.scale");
        CHECK(fr->ndim == 0 && fr->numel == 1);
        lt_st_close(f);
    }
    free(buf);

    /* without buffers, the running mean is missing on load and keeps its value */
    CHECK(lt_params_save_safetensors(&a, path, 0, &err) == LT_OK);
    lt_tensor *rm = lt_params_find(&b, "bn.running_mean");
    rm->data[0] = 42.0f;
    CHECK(lt_params_load_safetensors(&b, path, &rep, &err) == LT_OK);
    CHECK(rep.n_missing == 1 && rep.n_missing == 1 && strcmp(rep.missing[0], "bn.running_mean") == 0);
    CHECK(rm->data[0] == 42.0f);
    lt_load_report_free(&rep);
    lt_params_free(&a);
    lt_params_free(&b);
}

/* ---- exact bytes of the reference writer ---- */

/* From huggingface/safetensors' own serializer tests (tensor.rs: test_serialization,
 * test_serialization_forced_alignement, test_empty). */
static void test_reference_bytes(void) {
    static const uint8_t attn_dot0[] = {
        64,  0,   0,   0,   0,   0,  0,  0,  123, 34, 97,  116, 116, 110, 46,  48,  34,  58,  123, 34,
        100, 116, 121, 112, 101, 34, 58, 34, 70,  51, 50,  34,  44,  34,  115, 104, 97,  112, 101, 34,
        58,  91,  49,  44,  50,  44, 51, 93, 44,  34, 100, 97,  116, 97,  95,  111, 102, 102, 115, 101,
        116, 115, 34,  58,  91,  48, 44, 50, 52,  93, 125, 125, 0,   0,   0,   0,   0,   0,   128, 63,
        0,   0,   0,   64,  0,   0,  64, 64, 0,   0,  128, 64,  0,   0,   160, 64};
    static const uint8_t attn0[] = {
        72,  0,   0,   0,  0,  0,  0,  0,  123, 34,  97, 116, 116, 110, 48,  34,  58,  123, 34,  100, 116,
        121, 112, 101, 34, 58, 34, 70, 51, 50,  34,  44, 34,  115, 104, 97,  112, 101, 34,  58,  91,  49,
        44,  49,  44,  50, 44, 51, 93, 44, 34,  100, 97, 116, 97,  95,  111, 102, 102, 115, 101, 116, 115,
        34,  58,  91,  48, 44, 50, 52, 93, 125, 125, 32, 32,  32,  32,  32,  32,  32,  0,   0,   0,   0,
        0,   0,   128, 63, 0,  0,  0,  64, 0,   0,   64, 64,  0,   0,   128, 64,  0,   0,   160, 64};
    static const uint8_t empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    static const uint8_t empty_meta[] = {40,  0,   0,   0,   0,   0,   0,   0,   123, 34,  95,  95,
                                         109, 101, 116, 97,  100, 97,  116, 97,  95,  95,  34,  58,
                                         123, 34,  102, 114, 97,  109, 101, 119, 111, 114, 107, 34,
                                         58,  34,  112, 116, 34,  125, 125, 32,  32,  32,  32,  32};
    static const float vals[6] = {0, 1, 2, 3, 4, 5};
    static const int64_t s123[3] = {1, 2, 3}, s1123[4] = {1, 1, 2, 3};
    static const char *const framework[2] = {"framework", "pt"};
    struct {
        const char *what;
        lt_st_tensor_ref t;
        int n, n_meta;
        const uint8_t *want;
        size_t want_len;
    } cases[] = {
        {"attn.0", {"attn.0", vals, s123, 3, NULL}, 1, 0, attn_dot0, sizeof attn_dot0},
        {"attn0", {"attn0", vals, s1123, 4, NULL}, 1, 0, attn0, sizeof attn0},
        {"empty", {0}, 0, 0, empty, sizeof empty},
        {"empty+metadata", {0}, 0, 1, empty_meta, sizeof empty_meta},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lt_err err = {{0}};
        const char *path = tmp_path("ref.safetensors");
        CHECK_MSG(lt_st_write(path, &cases[c].t, cases[c].n, framework, cases[c].n_meta, &err) == LT_OK,
                  "%s: %s", cases[c].what, err.msg);
        size_t len;
        uint8_t *got = read_all(path, &len);
        CHECK_MSG(got && len == cases[c].want_len && memcmp(got, cases[c].want, len) == 0,
                  "%s: bytes differ from the reference writer", cases[c].what);
        free(got);
        lt_st_file *f = NULL;
        CHECK_MSG(lt_st_parse(cases[c].want, cases[c].want_len, cases[c].what, &f, &err) == LT_OK, "%s",
                  err.msg);
        if (f && cases[c].n) {
            float back[6];
            CHECK(lt_st_read_f32(f, lt_st_entry_at(f, 0), back, 6, &err) == LT_OK);
            CHECK(memcmp(back, vals, sizeof vals) == 0);
            CHECK(lt_st_read_f32(f, lt_st_entry_at(f, 0), back, 5, &err) == LT_ERR_SHAPE);
        }
        lt_st_close(f);
    }
}

/* The file tools/golden/safetensors_fixtures.py writes in the reference layout (names needing JSON
 * escapes, a scalar, a zero-size tensor): lathe's writer must produce the same bytes. */
static void test_python_layout(void) {
    static const int64_t s_w[2] = {2, 3}, s_b[1] = {3}, s_e[2] = {0, 4}, s_o[3] = {1, 1, 2};
    static const char *names[5] = {"b.weight", "a.bias", "scalar", "empty", "odd \"name\"\\ \xc3\xa9\n\x01"};
    const int64_t *shapes[5] = {s_w, s_b, NULL, s_e, s_o};
    int ndims[5] = {2, 1, 0, 2, 3};
    float vals[5][6];
    lt_st_tensor_ref t[5];
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < 6; i++)
            vals[k][i] = (float)(i * 3 % 7) - 2.5f + (float)k;
        t[k] = (lt_st_tensor_ref){names[k], vals[k], shapes[k], ndims[k], NULL};
    }
    static const char *const meta[2] = {"format", "pt"};
    lt_err err = {{0}};
    const char *path = tmp_path("layout.safetensors");
    CHECK_MSG(lt_st_write(path, t, 5, meta, 1, &err) == LT_OK, "%s", err.msg);
    size_t got_len, want_len;
    uint8_t *got = read_all(path, &got_len),
            *want = read_all(golden_path("safetensors_ref_f32.safetensors"), &want_len);
    CHECK_MSG(want != NULL, "missing fixture: run tools/golden/safetensors_fixtures.py");
    CHECK_MSG(got && want && got_len == want_len && memcmp(got, want, got_len) == 0,
              "lt_st_write differs from the Python reference layout (%zu vs %zu bytes)", got_len, want_len);
    lt_st_file *f = NULL;
    CHECK(lt_st_open(path, &f, &err) == LT_OK);
    if (f) {
        const lt_st_entry *e = lt_st_find(f, names[4]);
        float back[2];
        CHECK(e && e->ndim == 3 && lt_st_read_f32(f, e, back, 2, &err) == LT_OK && back[1] == vals[4][1]);
        e = lt_st_find(f, "empty");
        CHECK(e && e->numel == 0 && e->begin == e->end && lt_st_read_f32(f, e, NULL, 0, &err) == LT_OK);
        lt_st_close(f);
    }
    free(got);
    free(want);
}

/* ---- dtype conversion ---- */

static int same_float(float a, float b) {
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

static void test_dtypes(void) {
    lt_err err = {{0}};
    lt_st_file *f = NULL;
    CHECK_MSG(lt_st_open(golden_path("safetensors_mixed.safetensors"), &f, &err) == LT_OK, "%s", err.msg);
    golden_file g;
    if (!f || golden_load(&g, "safetensors.txt") != 0) {
        CHECK_MSG(0, "missing fixture: run tools/golden/safetensors_fixtures.py");
        lt_st_close(f);
        return;
    }
    CHECK(lt_st_count(f) == 8 && lt_st_metadata_count(f) == 1);
    const char *k, *v;
    CHECK(lt_st_metadata_at(f, 0, &k, &v) == 0 && strcmp(k, "format") == 0 && strcmp(v, "pt") == 0);
    CHECK(lt_st_metadata_at(f, 1, &k, &v) == -1 && lt_st_metadata_get(f, "nope") == NULL);
    for (int i = 0; i < g.n; i++) {
        const lt_st_entry *e = lt_st_find(f, g.t[i].name);
        CHECK_MSG(e != NULL, "%s missing", g.t[i].name);
        if (!e) continue;
        CHECK(e->numel == g.t[i].numel && e->ndim == g.t[i].ndim);
        float got[16];
        CHECK_MSG(lt_st_read_f32(f, e, got, e->numel, &err) == LT_OK, "%s", err.msg);
        int bad = -1;
        for (int64_t j = 0; j < e->numel; j++)
            if (!same_float(got[j], g.t[i].data[j])) bad = (int)j;
        CHECK_MSG(bad < 0, "%s (%s)[%d] = %.9g, torch says %.9g", e->name, lt_st_dtype_name(e->dtype), bad,
                  bad < 0 ? 0 : got[bad], bad < 0 ? 0 : g.t[i].data[bad]);
    }
    /* known F16 values, independent of the golden file */
    const lt_st_entry *h = lt_st_find(f, "half");
    float hv[15];
    if (h && h->dtype == LT_ST_F16 && lt_st_read_f32(f, h, hv, 15, &err) == LT_OK) {
        CHECK(hv[0] == 0.0f && !signbit(hv[0]));
        CHECK(hv[1] == 0.0f && signbit(hv[1])); /* -0 */
        CHECK(hv[2] == 0x1p-24f);               /* smallest subnormal */
        CHECK(hv[3] == 1023 * 0x1p-24f);        /* largest subnormal */
        CHECK(hv[4] == -0x1p-24f);
        CHECK(hv[5] == 0x1p-14f); /* smallest normal */
        CHECK(hv[6] == 1.0f && hv[7] == -2.0f && hv[8] == 65504.0f && hv[9] == -65504.0f);
        CHECK(isinf(hv[10]) && hv[10] > 0 && isinf(hv[11]) && hv[11] < 0 && isnan(hv[12]));
        CHECK(hv[14] == 1.5f);
    } else {
        CHECK_MSG(0, "half tensor unreadable");
    }
    const lt_st_entry *bf = lt_st_find(f, "brain");
    float bv[10];
    if (bf && bf->dtype == LT_ST_BF16 && lt_st_read_f32(f, bf, bv, 10, &err) == LT_OK) {
        CHECK(signbit(bv[1]) && bv[1] == 0.0f && bv[2] == 0x1p-133f && bv[3] == 1.0f && bv[4] == -3.0f);
        CHECK(isinf(bv[5]) && isnan(bv[7]) && bv[8] == 0x1.fep127f);
    }
    const lt_st_entry *nb = lt_st_find(f, "bn.num_batches_tracked");
    CHECK(nb && nb->dtype == LT_ST_I64 && nb->ndim == 0 && nb->numel == 1);
    golden_free(&g);
    lt_st_close(f);

    /* F8 tensors validate but don't convert */
    const char *j8 = "{\"q\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}";
    size_t len;
    uint8_t *img = make_image(j8, strlen(j8), 2, &len);
    CHECK(lt_st_parse(img, len, "f8", &f, &err) == LT_OK);
    float tmp[2];
    if (f)
        CHECK(lt_st_read_f32(f, lt_st_entry_at(f, 0), tmp, 2, &err) == LT_ERR_FORMAT &&
              strstr(err.msg, "F8_E4M3"));
    lt_st_close(f);
    free(img);
}

/* Every F16 and BF16 bit pattern against a naive decoder of the IEEE layout; 70,000 elements so the
 * converters take their parallel path. */
static float naive_half(uint16_t h, int exp_bits, int man_bits) {
    int bias = (1 << (exp_bits - 1)) - 1, e = (h >> man_bits) & ((1 << exp_bits) - 1);
    int m = h & ((1 << man_bits) - 1);
    float mag = e == 0                     ? ldexpf((float)m, 1 - bias - man_bits)
                : e == (1 << exp_bits) - 1 ? (m ? NAN : INFINITY)
                                           : ldexpf((float)(m + (1 << man_bits)), e - bias - man_bits);
    return (h & 0x8000) ? -mag : mag;
}

static void test_all_half_patterns(void) {
    enum { N = 70000 };
    static const char *const j[2] = {
        "{\"h\":{\"dtype\":\"F16\",\"shape\":[70000],\"data_offsets\":[0,140000]}}",
        "{\"h\":{\"dtype\":\"BF16\",\"shape\":[70000],\"data_offsets\":[0,140000]}}"};
    float *got = malloc(N * sizeof *got);
    for (int k = 0; k < 2; k++) {
        size_t len;
        uint8_t *img = make_image(j[k], strlen(j[k]), 2 * N, &len);
        uint8_t *data = img + len - 2 * N;
        for (int i = 0; i < N; i++) {
            uint16_t b = (uint16_t)(i & 0xffff);
            memcpy(data + 2 * i, &b, 2);
        }
        lt_err err = {{0}};
        lt_st_file *f = NULL;
        CHECK(lt_st_parse(img, len, "halves", &f, &err) == LT_OK);
        if (f && lt_st_read_f32(f, lt_st_entry_at(f, 0), got, N, &err) == LT_OK) {
            int bad = -1;
            for (int i = 0; i < N && bad < 0; i++)
                if (!same_float(got[i],
                                k == 0 ? naive_half((uint16_t)i, 5, 10) : naive_half((uint16_t)i, 8, 7)))
                    bad = i;
            CHECK_MSG(bad < 0, "%s bits 0x%04x decode to %.9g", k ? "BF16" : "F16", bad & 0xffff,
                      bad < 0 ? 0.0 : got[bad]);
        } else {
            CHECK_MSG(0, "%s", err.msg);
        }
        lt_st_close(f);
        free(img);
    }
    free(got);
}

/* ---- malformed headers ---- */

#define T(dt, shape, b, e) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

typedef struct {
    const char *json; /* header text */
    size_t data_len;  /* bytes of data after it */
    const char *want; /* a piece of the error message that names the field or tensor */
} bad_case;

static const bad_case bad_cases[] = {
    {"{\"a\":", 0, "not valid JSON"},
    {"[1]", 0, "does not start with '{'"},
    {" {}", 0, "does not start with '{'"},
    {"{} x", 0, "unexpected data after"},
    {"{}{}", 0, "unexpected data after"},
    {"{\"w\":5}", 0, "tensor 'w': entry is not a JSON object"},
    {"{\"w\":[1,2]}", 0, "tensor 'w': entry is not a JSON object"},
    {"{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing field 'dtype'"},
    {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing field 'shape'"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w': missing field 'data_offsets'"},
    {"{\"w\":" T("F17", "[1]", 0, 4) "}", 4, "tensor 'w': unknown dtype 'F17'"},
    {"{\"w\":" T("f32", "[1]", 0, 4) "}", 4, "tensor 'w': unknown dtype 'f32'"},
    {"{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': unknown dtype"},
    {"{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'w': field 'dtype' appears twice"},
    {"{\"w\":" T("F32", "3", 0, 12) "}", 12, "tensor 'w': shape is not a list"},
    {"{\"w\":" T("F32", "{}", 0, 4) "}", 4, "tensor 'w': shape is not a list"},
    {"{\"w\":" T("F32", "[-1]", 0, 4) "}", 4, "tensor 'w': shape[0] is not a non-negative integer"},
    {"{\"w\":" T("F32", "[2,1.5]", 0, 12) "}", 12, "tensor 'w': shape[1] is not a non-negative integer"},
    {"{\"w\":" T("F32", "[\"2\"]", 0, 8) "}", 8, "tensor 'w': shape[0] is not"},
    {"{\"w\":" T("F32", "[null]", 0, 4) "}", 4, "tensor 'w': shape[0] is not"},
    {"{\"w\":" T("F32", "[1e999]", 0, 4) "}", 4, "tensor 'w': shape[0] is not"},
    {"{\"w\":" T("F32", "[18446744073709551616]", 0, 4) "}", 4, "tensor 'w': shape[0] is not"},
    {"{\"w\":" T("F32", "[4294967296,4294967296,4294967296]", 0, 4) "}", 4,
     "tensor 'w': shape's element count"},
    {"{\"w\":" T("F64", "[2147483648,2147483648]", 0, 4) "}", 4, "tensor 'w': byte size overflows"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "tensor 'w': data_offsets is not"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
     "tensor 'w': data_offsets is not"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4, "tensor 'w': data_offsets is not"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4,
     "tensor 'w': data_offsets is not"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}}", 4,
     "tensor 'w': data_offsets is not"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 4,
     "tensor 'w': data_offsets is not"},
    {"{\"w\":" T("F32", "[1]", 4, 0) "}", 4, "tensor 'w': data_offsets [4, 0] end before"},
    {"{\"w\":" T("F32", "[100]", 0, 400) "}", 4, "tensor 'w': data_offsets [0, 400] run past the 4-byte"},
    {"{\"w\":" T("F32", "[2]", 0, 4) "}", 4, "tensor 'w': dtype F32 and shape (2) need 8 bytes"},
    {"{\"w\":" T("BF16", "[3]", 0, 8) "}", 8, "tensor 'w': dtype BF16 and shape (3) need 6 bytes"},
    {"{\"a\":" T("F32", "[1]", 0, 4) ",\"b\":" T("F32", "[1]", 8, 12) "}", 12, "tensor 'b'"},
    {"{\"a\":" T("F32", "[1]", 0, 4) ",\"b\":" T("F32", "[1]", 8, 12) "}", 12,
     "leave a gap after tensor 'a'"},
    {"{\"a\":" T("F32", "[1]", 4, 8) "}", 8,
     "tensor 'a': data_offsets [4, 8] leave a gap at the buffer start"},
    {"{\"a\":" T("F32", "[2]", 0, 8) ",\"b\":" T("F32", "[1]", 4, 8) "}", 8, "tensor 'b'"},
    {"{\"a\":" T("F32", "[2]", 0, 8) ",\"b\":" T("F32", "[1]", 4, 8) "}", 8, "overlap tensor 'a'"},
    {"{\"a\":" T("F32", "[1]", 0, 4) ",\"b\":" T("F32", "[1]", 0, 4) "}", 4, "tensor 'b'"},
    {"{\"a\":" T("F32", "[1]", 0, 4) "}", 8,
     "tensors cover 4 bytes but the data buffer after the header holds 8"},
    {"{}", 1, "tensors cover 0 bytes"},
    {"{\"a\":" T("F32", "[1]", 0, 4) ",\"a\":" T("F32", "[1]", 4, 8) "}", 8, "tensor 'a' appears twice"},
    {"{\"__metadata__\":{\"format\":1}}", 0, "__metadata__ value for key 'format' is not a string"},
    {"{\"__metadata__\":{\"format\":null}}", 0, "key 'format' is not a string"},
    {"{\"__metadata__\":{\"format\":{\"a\":\"b\"}}}", 0, "key 'format' is not a string"},
    {"{\"__metadata__\":[\"pt\"]}", 0, "__metadata__ is not a JSON object"},
    {"{\"__metadata__\":\"pt\"}", 0, "__metadata__ is not a JSON object"},
    {"{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "__metadata__ key 'k' appears twice"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice"},
    {"{\"a\":" T("F32", "[1]", 0, 4) "} \x01", 4, "unexpected data after"},
    {"{\"caf\xc3\xa9\":" T("F32", "[3]", 0, 4) "}", 4, "tensor 'caf\xc3\xa9'"},
};

/* Cases whose bytes a C string can't carry, or that concern the 8-byte length. */
static void check_bad(const uint8_t *img, size_t len, const char *want, const char *label) {
    lt_err err = {{0}};
    lt_st_file *f = (lt_st_file *)1;
    lt_status st = lt_st_parse(img, len, "case.safetensors", &f, &err);
    CHECK_MSG(st == LT_ERR_FORMAT && f == NULL, "%s: status %d, expected a format error", label, (int)st);
    CHECK_MSG(strncmp(err.msg, "case.safetensors: ", 18) == 0 && strstr(err.msg, want),
              "%s: message \"%s\" lacks \"%s\"", label, err.msg, want);
}

static void test_malformed(void) {
    for (size_t c = 0; c < sizeof bad_cases / sizeof bad_cases[0]; c++) {
        size_t len;
        uint8_t *img = make_image(bad_cases[c].json, strlen(bad_cases[c].json), bad_cases[c].data_len, &len);
        char label[64];
        snprintf(label, sizeof label, "bad_cases[%zu]", c);
        check_bad(img, len, bad_cases[c].want, label);
        free(img);
    }
    size_t len;
    uint8_t *img;
    /* the 8-byte length: too short a file, over the 100 MB limit, past the end of the file */
    static const uint8_t five[5] = {0};
    check_bad(five, 5, "5 bytes, too short", "5-byte file");
    check_bad(NULL, 0, "0 bytes, too short", "empty file");
    img = make_image("{}", 2, 0, &len);
    uint64_t n = LT_ST_MAX_HEADER + 1;
    memcpy(img, &n, 8);
    check_bad(img, len, "exceeds the 100000000-byte limit", "huge length");
    n = UINT64_MAX;
    memcpy(img, &n, 8);
    check_bad(img, len, "exceeds", "u64 max length");
    n = 3;
    memcpy(img, &n, 8);
    check_bad(img, len, "header length 3 runs past the end of the 10-byte file", "length past end");
    n = 0;
    memcpy(img, &n, 8);
    check_bad(img, len, "does not start with '{'", "zero length");
    free(img);
    /* bytes inside the header */
    static const char nul[] = "{\"a\0\":{}}";
    img = make_image(nul, sizeof nul - 1, 0, &len);
    check_bad(img, len, "NUL byte at header byte 3", "NUL");
    free(img);
    static const char *bad_utf8[] = {"{\"\xff\":1}",         "{\"\xc0\x80\":1}",
                                     "{\"\xed\xa0\x80\":1}", "{\"\xf4\x90\x80\x80\":1}",
                                     "{\"\xe2\x82\":1}",     "{\"a\":1}\xc3"};
    for (int i = 0; i < 6; i++) {
        img = make_image(bad_utf8[i], strlen(bad_utf8[i]), 0, &len);
        check_bad(img, len, "not valid UTF-8", bad_utf8[i]);
        free(img);
    }
    /* nesting far past cJSON's limit fails cleanly, without recursing off the stack */
    size_t depth = 20000;
    char *deep = malloc(2 * depth + 16);
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"a\":");
    for (size_t i = 0; i < depth; i++)
        deep[k++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    img = make_image(deep, k, 0, &len);
    check_bad(img, len, "not valid JSON", "deep nesting");
    free(img);
    free(deep);
    /* a header of millions of tiny values is refused before cJSON spends gigabytes on it */
    size_t nz = LT_ST_MAX_JSON_VALUES + 10;
    char *wide = malloc(2 * nz + 64);
    k = (size_t)sprintf(wide, "{\"z\":{\"dtype\":\"F32\",\"shape\":[");
    for (size_t i = 0; i < nz; i++) {
        wide[k++] = '0';
        wide[k++] = ',';
    }
    static const char tail[] = "],\"data_offsets\":[0,0]}}";
    memcpy(wide + k - 1, tail, sizeof tail - 1); /* over the last ',' */
    k += sizeof tail - 2;
    img = make_image(wide, k, 0, &len);
    check_bad(img, len, "JSON values, over the 8000000", "many values");
    free(img);
    free(wide);
}

/* Headers that look odd but are valid, as the reference reads them. */
static void test_valid_corners(void) {
    static const struct {
        const char *json;
        size_t data_len;
        int count;
    } ok[] = {
        {"{}", 0, 0},
        {"{}      \n\t\r", 0, 0},
        {"{\"__metadata__\":{}}", 0, 0},
        /* out of offset order, unknown field, zero-size tensors sharing an offset */
        {"{\"b\":" T("F32", "[1]", 4,
                     8) ",\"a\":{\"extra\":[1,{}],\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}"
                        ",\"z1\":" T("F32", "[0,5]", 4, 4) ",\"z2\":" T("I64", "[3,0]", 4, 4) "}",
         8, 4},
        {"{\n  \"s\" : { \"dtype\" : \"U8\", \"shape\" : [ ], \"data_offsets\" : [ 0 , 1 ] }\n}", 1, 1},
        {"{\"\\u00e9\\n\":" T("BOOL", "[1]", 0, 1) "}", 1, 1},
    };
    for (size_t c = 0; c < sizeof ok / sizeof ok[0]; c++) {
        size_t len;
        uint8_t *img = make_image(ok[c].json, strlen(ok[c].json), ok[c].data_len, &len);
        lt_err err = {{0}};
        lt_st_file *f = NULL;
        CHECK_MSG(lt_st_parse(img, len, "ok", &f, &err) == LT_OK, "valid case %zu: %s", c, err.msg);
        if (f) {
            CHECK(lt_st_count(f) == ok[c].count);
            for (int i = 0; i < lt_st_count(f); i++) {
                const lt_st_entry *e = lt_st_entry_at(f, i);
                float buf[8];
                CHECK(lt_st_find(f, e->name) == e);
                CHECK(lt_st_read_f32(f, e, buf, e->numel, &err) == LT_OK);
                if (i > 0) CHECK(lt_st_entry_at(f, i - 1)->end <= e->begin);
            }
            lt_st_close(f);
        }
        free(img);
    }
    /* unicode escapes in names decode to UTF-8 */
    size_t len;
    const char *j = "{\"\\u00e9\\n\":" T("BOOL", "[1]", 0, 1) "}";
    uint8_t *img = make_image(j, strlen(j), 1, &len);
    lt_st_file *f = NULL;
    lt_err err = {{0}};
    CHECK(lt_st_parse(img, len, "ok", &f, &err) == LT_OK && f && lt_st_find(f, "\xc3\xa9\n"));
    lt_st_close(f);
    free(img);
}

/* ---- damaged files ---- */

/* A small valid image: two dtypes, metadata, padding. */
static uint8_t *small_valid(size_t *len) {
    const char *j = "{\"__metadata__\":{\"format\":\"pt\"},\"w\":" T("F32", "[2,2]", 0, 16) ",\"h\":" T(
        "F16", "[3]", 16, 22) ",\"n\":" T("I64", "[]", 22, 30) "}  ";
    return make_image(j, strlen(j), 30, len);
}

static void test_truncated(void) {
    size_t full;
    uint8_t *img = small_valid(&full);
    lt_err err = {{0}};
    lt_st_file *f = NULL;
    CHECK(lt_st_parse(img, full, "full", &f, &err) == LT_OK);
    lt_st_close(f);
    const char *path = tmp_path("trunc.safetensors");
    int fails = 0;
    for (size_t len = 0; len < full; len++) {
        uint8_t *cut = malloc(len ? len : 1); /* exactly len bytes: any overread is an ASan error */
        memcpy(cut, img, len);
        f = NULL;
        if (lt_st_parse(cut, len, "cut", &f, &err) != LT_ERR_FORMAT || f) fails++;
        /* the same through a file and mmap */
        if (write_all(path, cut, len) != 0 || lt_st_open(path, &f, &err) != LT_ERR_FORMAT || f) fails++;
        lt_st_close(f);
        free(cut);
    }
    CHECK_MSG(fails == 0, "%d truncated lengths were accepted", fails);
    free(img);
}

static void test_byte_flips(void) {
    size_t len;
    uint8_t *img = small_valid(&len);
    lt_rng r;
    lt_rng_seed(&r, 2024, 3);
    int accepted = 0, rejected = 0, bad_read = 0;
    for (int it = 0; it < 4000; it++) {
        uint8_t *m = malloc(len);
        memcpy(m, img, len);
        int flips = 1 + (int)lt_rng_below(&r, 4);
        for (int k = 0; k < flips; k++) {
            uint32_t at = lt_rng_below(&r, (uint32_t)len);
            if (lt_rng_below(&r, 2))
                m[at] ^= (uint8_t)(1u << lt_rng_below(&r, 8));
            else
                m[at] = (uint8_t)lt_rng_below(&r, 256);
        }
        lt_err err = {{0}};
        lt_st_file *f = NULL;
        if (lt_st_parse(m, len, "flipped", &f, &err) == LT_OK) {
            accepted++;
            for (int i = 0; i < lt_st_count(f); i++) {
                const lt_st_entry *e = lt_st_entry_at(f, i);
                if (e->numel > 64) {
                    bad_read++; /* the data buffer is 30 bytes: validation can't allow more */
                    continue;
                }
                float buf[64];
                lt_status st = lt_st_read_f32(f, e, buf, e->numel, &err);
                if (st != LT_OK && e->dtype != LT_ST_F8_E4M3 && e->dtype != LT_ST_F8_E5M2) bad_read++;
            }
            lt_st_close(f);
        } else {
            rejected++;
            if (!err.msg[0]) bad_read++; /* every failure explains itself */
        }
        free(m);
    }
    CHECK_MSG(bad_read == 0, "%d flipped files misbehaved", bad_read);
    CHECK(accepted > 0 && rejected > 0); /* flips in tensor data are harmless; most in the header are not */
    free(img);
}

/* Every file in tests/fuzz/corpus parses without crashing; valid_* ones parse. */
static void test_fuzz_corpus(void) {
    DIR *d = opendir("tests/fuzz/corpus");
    CHECK_MSG(d != NULL, "tests/fuzz/corpus not found (run from the source root)");
    if (!d) return;
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "tests/fuzz/corpus/%s", de->d_name);
        lt_err err = {{0}};
        lt_st_file *f = NULL;
        lt_status st = lt_st_open(path, &f, &err);
        if (strncmp(de->d_name, "valid_", 6) == 0)
            CHECK_MSG(st == LT_OK, "%s", err.msg);
        else
            CHECK_MSG(st == LT_ERR_FORMAT, "%s: expected a format error, got %d", path, (int)st);
        lt_st_close(f);
        n++;
    }
    closedir(d);
    CHECK(n >= 4);
}

/* ---- loading into a store: report, mismatches ---- */

static void init_store(lt_params *p, int with_counter) {
    static const int64_t s23[2] = {2, 3}, s3[1] = {3}, s10_4[2] = {10, 4}, s10[1] = {10}, s5[1] = {5};
    lt_err err = {{0}};
    lt_params_init(p);
    lt_params_add(p, "backbone.w", s23, 2, LT_PARAM_TRAINABLE, &err);
    lt_params_add(p, "backbone.b", s3, 1, LT_PARAM_TRAINABLE, &err);
    lt_params_add(p, "classifier.weight", s10_4, 2, LT_PARAM_TRAINABLE, &err);
    lt_params_add(p, "classifier.bias", s10, 1, LT_PARAM_TRAINABLE, &err);
    lt_params_add(p, "new.head", s5, 1, LT_PARAM_TRAINABLE, &err);
    if (with_counter) lt_params_add(p, "bn.num_batches_tracked", s_scalar, 0, LT_PARAM_BUFFER, &err);
    CHECK(lt_params_alloc(p, &err) == LT_OK);
    for (int64_t i = 0; i < p->numel; i++)
        p->data[i] = -7.0f;
}

static int all_equal(const lt_tensor *t, float v) {
    for (int64_t i = 0; i < t->numel; i++)
        if (t->data[i] != v) return 0;
    return 1;
}

static void test_load_report(void) {
    /* a checkpoint with a 7-class head, a pooler the model lacks, and BN's I64 counter */
    const char *j =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"backbone.w\":" T("F32", "[2,3]", 0, 24) ",\"backbone.b\":" T(
            "F32", "[3]", 24,
            36) ","
                "\"classifier.bias\":" T("F32", "[7]", 36, 64) ",\"classifier.weight\":" T(
                    "F32", "[7,4]", 64,
                    176) ","
                         "\"pooler.dense\":" T("F32", "[2,2]", 176, 192) ",\"bn.num_batches_tracked\":" T(
                             "I64", "[]", 192, 200) "}";
    size_t len;
    uint8_t *img = make_image(j, strlen(j), 200, &len);
    for (int i = 0; i < 48; i++) { /* floats 0.5 * i in the F32 tensors, 12345 in the counter */
        float v = 0.5f * (float)i;
        memcpy(img + len - 200 + 4 * i, &v, 4);
    }
    int64_t counter = 12345;
    memcpy(img + len - 8, &counter, 8);
    const char *path = tmp_path("ckpt.safetensors");
    CHECK(write_all(path, img, len) == 0);
    free(img);

    lt_params p;
    init_store(&p, 0);
    lt_err err = {{0}};
    lt_load_report rep = {0};
    /* strict: the first mismatch is an error naming the tensor and both shapes; nothing is written */
    CHECK(lt_params_load_safetensors(&p, path, &rep, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "ckpt.safetensors: tensor 'classifier.weight' has shape (7, 4) in the file but "
                              "(10, 4) in the model"),
              "%s", err.msg);
    CHECK(all_equal(lt_params_find(&p, "backbone.w"), -7.0f));
    lt_load_report_free(&rep);

    /* a re-initialized head: classifier.* mismatches are allowed and reported */
    static const char *const prefixes[1] = {"classifier."};
    lt_load_opts opts = {prefixes, 1};
    CHECK_MSG(lt_params_load_safetensors_opts(&p, path, &opts, &rep, &err) == LT_OK, "%s", err.msg);
    CHECK(rep.n_loaded == 2 && rep.n_ignored == 1);
    CHECK(rep.n_missing == 1 && strcmp(rep.missing[0], "new.head") == 0);
    CHECK(rep.n_unexpected == 1 && strcmp(rep.unexpected[0], "pooler.dense") == 0);
    CHECK(rep.n_mismatched == 2);
    if (rep.n_mismatched == 2) {
        CHECK(strcmp(rep.mismatched[0].name, "classifier.weight") == 0);
        CHECK(strcmp(rep.mismatched[0].detail, "file (7, 4), model (10, 4)") == 0);
        CHECK(strcmp(rep.mismatched[1].name, "classifier.bias") == 0);
    }
    lt_tensor *w = lt_params_find(&p, "backbone.w"), *b = lt_params_find(&p, "backbone.b");
    CHECK(w->data[0] == 0.0f && w->data[5] == 2.5f && b->data[0] == 3.0f && b->data[2] == 4.0f);
    CHECK(all_equal(lt_params_find(&p, "classifier.weight"), -7.0f));
    CHECK(all_equal(lt_params_find(&p, "new.head"), -7.0f));
    lt_load_report_free(&rep);
    CHECK(rep.n_missing == 0 && rep.missing == NULL);
    lt_params_free(&p);

    /* a store that declares the counter loads it as a float; NULL report is fine */
    init_store(&p, 1);
    CHECK(lt_params_load_safetensors_opts(&p, path, &opts, NULL, &err) == LT_OK);
    CHECK(lt_params_find(&p, "bn.num_batches_tracked")->data[0] == 12345.0f);
    /* a prefix that doesn't cover the mismatch still fails */
    static const char *const other[1] = {"classifier.weight"};
    lt_load_opts narrow = {other, 1};
    CHECK(lt_params_load_safetensors_opts(&p, path, &narrow, &rep, &err) == LT_ERR_SHAPE);
    CHECK(strstr(err.msg, "'classifier.bias' has shape (7) in the file but (10) in the model") != NULL);
    lt_load_report_free(&rep);
    /* I/O and format errors pass through */
    CHECK(lt_params_load_safetensors(&p, tmp_path("absent.safetensors"), &rep, &err) == LT_ERR_IO);
    CHECK(strstr(err.msg, "absent.safetensors") != NULL);
    CHECK(write_all(tmp_path("junk.safetensors"), (const uint8_t *)"\x02\0\0\0\0\0\0\0[]", 10) == 0);
    CHECK(lt_params_load_safetensors(&p, tmp_path("junk.safetensors"), &rep, &err) == LT_ERR_FORMAT);
    lt_load_report_free(&rep);
    lt_params_free(&p);
    lt_params_init(&p);
    CHECK(lt_params_load_safetensors(&p, path, &rep, &err) == LT_ERR_STATE);
    CHECK(lt_params_save_safetensors(&p, path, 1, &err) == LT_ERR_STATE);
    lt_params_free(&p);
}

/* ---- writer arguments ---- */

static void test_write_errors(void) {
    static const float v[4] = {1, 2, 3, 4};
    static const int64_t s2[1] = {2}, sneg[1] = {-1};
    lt_err err = {{0}};
    const char *path = tmp_path("w.safetensors");
    lt_st_tensor_ref dup[2] = {{"x", v, s2, 1, NULL}, {"x", v + 2, s2, 1, NULL}};
    CHECK(lt_st_write(path, dup, 2, NULL, 0, &err) == LT_ERR_ARG && strstr(err.msg, "'x' given twice"));
    lt_st_tensor_ref meta_name = {"__metadata__", v, s2, 1, NULL};
    CHECK(lt_st_write(path, &meta_name, 1, NULL, 0, &err) == LT_ERR_ARG);
    lt_st_tensor_ref null_data = {"y", NULL, s2, 1, NULL};
    CHECK(lt_st_write(path, &null_data, 1, NULL, 0, &err) == LT_ERR_ARG && strstr(err.msg, "'y'"));
    lt_st_tensor_ref neg = {"z", v, sneg, 1, NULL};
    CHECK(lt_st_write(path, &neg, 1, NULL, 0, &err) == LT_ERR_ARG && strstr(err.msg, "'z'"));
    lt_st_tensor_ref bad_utf8 = {"\xff", v, s2, 1, NULL};
    CHECK(lt_st_write(path, &bad_utf8, 1, NULL, 0, &err) == LT_ERR_ARG);
    static const char *const dup_meta[4] = {"k", "a", "k", "b"};
    lt_st_tensor_ref ok = {"ok", v, s2, 1, NULL};
    CHECK(lt_st_write(path, &ok, 1, dup_meta, 2, &err) == LT_ERR_ARG && strstr(err.msg, "'k' given twice"));
    CHECK(access(path, F_OK) != 0); /* nothing written by the failures */
    /* an unwritable place: error naming the temporary file, nothing left behind */
    const char *nodir = tmp_path("no/such/dir/w.safetensors");
    CHECK(lt_st_write(nodir, &ok, 1, NULL, 0, &err) == LT_ERR_IO && strstr(err.msg, "w.safetensors.tmp"));
    /* an existing file is replaced whole; the caller's order is kept in memory, sorted in the file */
    lt_st_tensor_ref two[2] = {{"zz", v, s2, 1, NULL}, {"aa", v + 2, s2, 1, NULL}};
    CHECK(lt_st_write(path, &ok, 1, NULL, 0, &err) == LT_OK);
    CHECK(lt_st_write(path, two, 2, NULL, 0, &err) == LT_OK && strcmp(two[0].name, "zz") == 0);
    lt_st_file *f = NULL;
    CHECK(lt_st_open(path, &f, &err) == LT_OK);
    if (f) {
        CHECK(lt_st_count(f) == 2 && strcmp(lt_st_entry_at(f, 0)->name, "aa") == 0 &&
              lt_st_metadata_count(f) == 0);
        float got[2];
        CHECK(lt_st_read_f32(f, lt_st_find(f, "aa"), got, 2, &err) == LT_OK && got[0] == 3.0f &&
              got[1] == 4.0f);
        lt_st_close(f);
    }
    CHECK(lt_st_open(tmpdir, &f, &err) == LT_ERR_IO && f == NULL); /* a directory */
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        unlink(tmp_path(de->d_name));
    }
    closedir(d);
    rmdir(tmpdir);
}

/* Every running_var gets PyTorch's I64 num_batches_tracked beside it (transformers lists them as missing
 * otherwise); they are not written without buffers, and the file loads back with nothing unexpected. */
static void test_num_batches_tracked(void) {
    static const int64_t s_c[1] = {3};
    lt_params a;
    lt_params_init(&a);
    lt_err err = {{0}};
    const char *names[4] = {"x.bn.weight", "x.bn.running_mean", "x.bn.running_var", "y.norm.running_var"};
    for (int i = 0; i < 4; i++)
        CHECK(lt_params_add(&a, names[i], s_c, 1, i ? LT_PARAM_BUFFER : LT_PARAM_TRAINABLE, &err));
    CHECK(lt_params_alloc(&a, &err) == LT_OK);
    a.batches_tracked = 1234567;
    const char *path = tmp_path("nbt.safetensors");
    CHECK_MSG(lt_params_save_safetensors(&a, path, 1, &err) == LT_OK, "%s", err.msg);
    lt_st_file *f = NULL;
    CHECK(lt_st_open(path, &f, &err) == LT_OK);
    if (f) {
        CHECK(lt_st_count(f) == 6);
        const char *nbt[2] = {"x.bn.num_batches_tracked", "y.norm.num_batches_tracked"};
        for (int i = 0; i < 2; i++) {
            const lt_st_entry *e = lt_st_find(f, nbt[i]);
            CHECK_MSG(e && e->dtype == LT_ST_I64 && e->ndim == 0 && e->numel == 1, "%s", nbt[i]);
            int64_t v = 0;
            if (e) memcpy(&v, lt_st_entry_bytes(f, e), sizeof v);
            CHECK_MSG(v == 1234567, "%s = %lld", nbt[i], (long long)v);
        }
        lt_st_close(f);
    }
    lt_load_report rep = {0};
    CHECK_MSG(lt_params_load_safetensors(&a, path, &rep, &err) == LT_OK, "%s", err.msg);
    CHECK(rep.n_loaded == 4 && rep.n_missing == 0 && rep.n_unexpected == 0);
    lt_load_report_free(&rep);
    CHECK(lt_params_save_safetensors(&a, path, 0, &err) == LT_OK);
    CHECK(lt_st_open(path, &f, &err) == LT_OK);
    if (f) {
        CHECK(lt_st_count(f) == 1 && lt_st_find(f, "x.bn.num_batches_tracked") == NULL);
        lt_st_close(f);
    }
    lt_params_free(&a);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/lathe_st_XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_roundtrip();
    test_reference_bytes();
    test_python_layout();
    test_dtypes();
    test_all_half_patterns();
    test_malformed();
    test_valid_corners();
    test_truncated();
    test_byte_flips();
    test_fuzz_corpus();
    test_load_report();
    test_write_errors();
    test_num_batches_tracked();
    remove_tmpdir();
    return check_summary("test_safetensors");
}
