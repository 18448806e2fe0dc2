/* cmd_client.c - `lathe submit`, `lathe status`, `lathe list`, `lathe cancel`, `lathe models`, `lathe
 * endpoints`: the scheduler's API for people (libcurl). Each prints the API's JSON answer on stdout; a failed
 * request also prints one line on stderr and exits 1. The server is --url or $LATHE_URL (default
 * http://127.0.0.1:8080); the token $LATHE_API_TOKEN. */
#define _GNU_SOURCE
#include "commands.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define DEFAULT_URL "http://127.0.0.1:8080"

typedef struct {
    char *data; /* (len) NUL-terminated */
    size_t len;
} body_buf;

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
    body_buf *b = ctx;
    size_t add = size * n;
    char *d = realloc(b->data, b->len + add + 1);
    if (!d) return 0;
    memcpy(d + b->len, p, add);
    b->len += add;
    d[b->len] = 0;
    b->data = d;
    return add;
}

typedef struct {
    const char *url;   /* server base URL */
    const char *token; /* bearer token or NULL */
} client;

/* One request; returns the HTTP status (0 when none came: *why says why) and the body in *out. */
static long request(const client *c, const char *method, const char *path, const char *body,
                    const char *idem_key, body_buf *out, char *why, size_t why_len) {
    out->data = NULL;
    out->len = 0;
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(why, why_len, "out of memory");
        return 0;
    }
    char url[4096], auth[1100], key[400];
    snprintf(url, sizeof url, "%s%s", c->url, path);
    size_t ul = strlen(c->url);
    if (ul && c->url[ul - 1] == '/') snprintf(url, sizeof url, "%.*s%s", (int)(ul - 1), c->url, path);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (body) hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (c->token && c->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (idem_key) {
        snprintf(key, sizeof key, "Idempotency-Key: %s", idem_key);
        hdrs = curl_slist_append(hdrs, key);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    else if (!strcmp(method, "POST"))
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(why, why_len, "%.200s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return status;
}

/* Prints a body as indented JSON (as received when it isn't JSON). */
static void print_body(const body_buf *b) {
    cJSON *j = b->data ? cJSON_Parse(b->data) : NULL;
    char *s = j ? cJSON_Print(j) : NULL;
    if (s)
        printf("%s\n", s);
    else if (b->data)
        printf("%s\n", b->data);
    free(s);
    cJSON_Delete(j);
    fflush(stdout);
}

/* Reports a failed request on stderr (the server's "error" when it sent one). Returns 1. */
static int report(const char *cmd, long status, const body_buf *b, const char *why) {
    if (status == 0) {
        fprintf(stderr, "lathe %s: cannot reach the scheduler: %s (is it running? set --url or LATHE_URL)\n",
                cmd, why);
        return 1;
    }
    cJSON *j = b->data ? cJSON_Parse(b->data) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    fprintf(stderr, "lathe %s: HTTP %ld: %s\n", cmd, status,
            cJSON_IsString(e) ? e->valuestring : "(no message)");
    cJSON_Delete(j);
    return 1;
}

/* ---- argument parsing shared by the four commands ---- */

typedef struct {
    const char *name;   /* flag without "--" */
    int takes_value;    /* 0 for switches */
    const char **value; /* where a value goes (the last wins) */
    int *flag;          /* where a switch goes */
} flag_spec;

/* Parses argv[1..]: --name value, --name=value, switches, and positional arguments into pos (at most
 * max_pos). --hp may repeat: its values are collected in hps. Returns 0, or 2 after printing a usage error;
 * -1 when --help was asked. */
static int parse_args(const char *cmd, int argc, char **argv, const flag_spec *flags, int n_flags,
                      const char **pos, int max_pos, int *n_pos, const char ***hps, int *n_hps) {
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
        if (strncmp(a, "--", 2) || !a[2]) {
            if (*n_pos >= max_pos) return cli_usage_error(cmd, "unexpected argument '%s'", a);
            pos[(*n_pos)++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        int matched = 0;
        if (hps && nl == 2 && !strncmp(name, "hp", 2)) {
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) return cli_usage_error(cmd, "--hp needs NAME=VALUE");
            const char **grown = realloc(*hps, (size_t)(*n_hps + 1) * sizeof **hps);
            if (!grown) return cli_usage_error(cmd, "out of memory");
            *hps = grown;
            (*hps)[(*n_hps)++] = v;
            continue;
        }
        for (int k = 0; k < n_flags && !matched; k++) {
            if (strlen(flags[k].name) != nl || strncmp(flags[k].name, name, nl)) continue;
            matched = 1;
            if (!flags[k].takes_value) {
                if (eq) return cli_usage_error(cmd, "--%s takes no value", flags[k].name);
                *flags[k].flag = 1;
            } else {
                const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
                if (!v) return cli_usage_error(cmd, "--%s needs a value", flags[k].name);
                *flags[k].value = v;
            }
        }
        if (!matched) return cli_usage_error(cmd, "unknown option '%.*s'", (int)nl + 2, a);
    }
    return 0;
}

static client make_client(const char *url) {
    client c = {.url = url, .token = getenv("LATHE_API_TOKEN")};
    if (!c.url || !c.url[0]) c.url = getenv("LATHE_URL");
    if (!c.url || !c.url[0]) c.url = DEFAULT_URL;
    return c;
}

static const char common_help[] =
    "  --url URL             the scheduler [env LATHE_URL; default " DEFAULT_URL "]\n"
    "The bearer token, when the scheduler demands one, comes from the environment: LATHE_API_TOKEN.\n";

static int valid_id(const char *id) {
    if (!id[0] || strlen(id) > 128) return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._-", *p)))
            return 0;
    return 1;
}

/* ---- submit ---- */

static const char submit_help[] =
    "usage: lathe submit --algorithm A --dataset URI [--output URI] [--hp NAME=VALUE ...] [--name N] "
    "[--wait]\n\n"
    "Submits a training (POST /v1/trainings) and prints {\"id\", \"state\"}. With --wait, polls the "
    "training\n"
    "until it ends and prints its record; the exit status is 0 only when it SUCCEEDED.\n\n"
    "options:\n"
    "  --algorithm A         image-classification (semantic-segmentation, object-detection: later)\n"
    "  --dataset URI         data set folder: s3://bucket/prefix, an absolute path, or a path relative to\n"
    "                        the scheduler's LATHE_STORAGE\n"
    "  --output URI          where the model goes [default: <LATHE_STORAGE>/trainings/<id>]\n"
    "  --hp NAME=VALUE       a hyperparameter (repeat); see the algorithms guide for names and ranges\n"
    "  --name N              a label for people\n"
    "  --idempotency-key K   resubmitting with the same K returns the same training [default: a random key,\n"
    "                        so this command's own retries never submit twice]\n"
    "  --wait                wait for the final state\n"
    "  --poll S              seconds between polls with --wait [default 2]\n"
    "  --timeout S           give up waiting after S seconds (exit 1; the training goes on) [default: "
    "none]\n";

/* Adds NAME=VALUE to obj, as a number when VALUE reads as one (the scheduler judges the rest). */
static int add_hp(cJSON *obj, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment || !eq[1]) return 0;
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(eq - assignment), assignment);
    char *end;
    double v = strtod(eq + 1, &end);
    cJSON *item = *end == 0 ? cJSON_CreateNumber(v) : cJSON_CreateString(eq + 1);
    if (!item) return 0;
    cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
    cJSON_AddItemToObject(obj, name, item);
    return 1;
}

static void random_key(char *buf, size_t size) {
    unsigned char r[12] = {0};
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        memcpy(r, &ts, sizeof r < sizeof ts ? sizeof r : sizeof ts);
    }
    size_t o = (size_t)snprintf(buf, size, "cli-");
    for (size_t i = 0; i < sizeof r && o + 2 < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%02x", r[i]);
}

static int wait_final(const client *c, const char *id, double poll_s, double timeout_s) {
    char path[300], why[512];
    snprintf(path, sizeof path, "/v1/trainings/%s", id);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char last[64] = "";
    for (;;) {
        body_buf b;
        long st = request(c, "GET", path, NULL, NULL, &b, why, sizeof why);
        if (st == 200) {
            cJSON *j = cJSON_Parse(b.data);
            const cJSON *state = cJSON_GetObjectItemCaseSensitive(j, "state");
            const char *s = cJSON_IsString(state) ? state->valuestring : "?";
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "progress");
            const cJSON *step = cJSON_GetObjectItemCaseSensitive(p, "step");
            const cJSON *total = cJSON_GetObjectItemCaseSensitive(p, "total_steps");
            char now[64];
            snprintf(now, sizeof now, "%s %d/%d", s, cJSON_IsNumber(step) ? step->valueint : 0,
                     cJSON_IsNumber(total) ? total->valueint : 0);
            if (strcmp(now, last)) {
                fprintf(stderr, "lathe submit: %s %s\n", id, now);
                snprintf(last, sizeof last, "%s", now);
            }
            int final = !strcmp(s, "SUCCEEDED") || !strcmp(s, "FAILED") || !strcmp(s, "CANCELLED");
            int ok = !strcmp(s, "SUCCEEDED");
            cJSON_Delete(j);
            if (final) {
                print_body(&b);
                free(b.data);
                return ok ? 0 : 1;
            }
        } else if (st != 503 &&
                   st != 0) { /* 503 while the scheduler restarts, 0 while it is away: keep waiting */
            int rc = report("submit", st, &b, why);
            free(b.data);
            return rc;
        }
        free(b.data);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double elapsed = (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) * 1e-9;
        if (timeout_s > 0 && elapsed > timeout_s) {
            fprintf(stderr, "lathe submit: %s still %s after %.0f s; not waiting any longer\n", id, last,
                    timeout_s);
            return 1;
        }
        struct timespec d = {(time_t)poll_s, (long)((poll_s - (double)(time_t)poll_s) * 1e9)};
        nanosleep(&d, NULL);
    }
}

int cmd_submit(int argc, char **argv) {
    const char *url = NULL, *algorithm = NULL, *dataset = NULL, *output = NULL, *name = NULL, *key = NULL,
               *poll = NULL, *timeout = NULL, **hps = NULL, *pos[1];
    int wait = 0, n_pos = 0, n_hps = 0;
    const flag_spec flags[] = {
        {"url", 1, &url, NULL},       {"algorithm", 1, &algorithm, NULL}, {"dataset", 1, &dataset, NULL},
        {"output", 1, &output, NULL}, {"name", 1, &name, NULL},           {"idempotency-key", 1, &key, NULL},
        {"poll", 1, &poll, NULL},     {"timeout", 1, &timeout, NULL},     {"wait", 0, NULL, &wait}};
    int rc = parse_args("submit", argc, argv, flags, (int)(sizeof flags / sizeof *flags), pos, 0, &n_pos,
                        &hps, &n_hps);
    if (rc) {
        free(hps);
        if (rc < 0) printf("%s%s", submit_help, common_help);
        return rc < 0 ? 0 : rc;
    }
    if (!algorithm || !dataset) {
        free(hps);
        return cli_usage_error("submit", "--algorithm and --dataset are required");
    }
    double poll_s = poll ? atof(poll) : 2.0, timeout_s = timeout ? atof(timeout) : 0;
    if (poll_s <= 0 || poll_s > 3600) poll_s = 2.0;
    cJSON *body = cJSON_CreateObject(), *hp = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "algorithm", algorithm);
    cJSON_AddStringToObject(body, "dataset", dataset);
    if (output) cJSON_AddStringToObject(body, "output", output);
    if (name) cJSON_AddStringToObject(body, "name", name);
    for (int i = 0; i < n_hps; i++) {
        if (!add_hp(hp, hps[i])) {
            cJSON_Delete(body);
            cJSON_Delete(hp);
            rc = cli_usage_error("submit", "--hp '%s' is not NAME=VALUE", hps[i]);
            free(hps);
            return rc;
        }
    }
    free(hps);
    cJSON_AddItemToObject(body, "hyperparameters", hp);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    char auto_key[64];
    if (!key) {
        random_key(auto_key, sizeof auto_key);
        key = auto_key;
    }
    client c = make_client(url);
    body_buf b = {0};
    char why[512] = "";
    long st = 0;
    /* the same key on every try: a retry after a lost answer can't submit twice */
    for (int attempt = 0; attempt < 4; attempt++) {
        free(b.data);
        st = request(&c, "POST", "/v1/trainings", text, key, &b, why, sizeof why);
        if (st != 0 && st != 503) break;
        struct timespec d = {1 << attempt, 0};
        if (attempt < 3) nanosleep(&d, NULL);
    }
    free(text);
    if (st != 201 && st != 200) {
        if (b.data) print_body(&b);
        rc = report("submit", st, &b, why);
        free(b.data);
        return rc;
    }
    cJSON *j = cJSON_Parse(b.data);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    if (!wait || !cJSON_IsString(id)) {
        print_body(&b);
        cJSON_Delete(j);
        free(b.data);
        return 0;
    }
    char idbuf[256];
    snprintf(idbuf, sizeof idbuf, "%s", id->valuestring);
    fprintf(stderr, "lathe submit: %s queued\n", idbuf);
    cJSON_Delete(j);
    free(b.data);
    return wait_final(&c, idbuf, poll_s, timeout_s);
}

/* ---- status, list, cancel ---- */

static int simple(const char *cmd, const char *method, const char *path, const char *url) {
    client c = make_client(url);
    body_buf b;
    char why[512] = "";
    long st = request(&c, method, path, NULL, NULL, &b, why, sizeof why);
    if (b.data) print_body(&b);
    int rc = st >= 200 && st < 300 ? 0 : report(cmd, st, &b, why);
    free(b.data);
    return rc;
}

int cmd_status(int argc, char **argv) {
    const char *url = NULL, *pos[1];
    int n_pos = 0;
    const flag_spec flags[] = {{"url", 1, &url, NULL}};
    int rc = parse_args("status", argc, argv, flags, 1, pos, 1, &n_pos, NULL, NULL);
    if (rc < 0) {
        printf("usage: lathe status ID [--url URL]\n\nPrints a training's record (GET /v1/trainings/ID).\n\n"
               "options:\n%s",
               common_help);
        return 0;
    }
    if (rc) return rc;
    if (n_pos != 1 || !valid_id(pos[0])) return cli_usage_error("status", "needs one training id");
    char path[256];
    snprintf(path, sizeof path, "/v1/trainings/%s", pos[0]);
    return simple("status", "GET", path, url);
}

int cmd_list(int argc, char **argv) {
    const char *url = NULL, *state = NULL, *limit = NULL, *pos[1];
    int n_pos = 0;
    const flag_spec flags[] = {
        {"url", 1, &url, NULL}, {"state", 1, &state, NULL}, {"limit", 1, &limit, NULL}};
    int rc = parse_args("list", argc, argv, flags, 3, pos, 0, &n_pos, NULL, NULL);
    if (rc < 0) {
        printf("usage: lathe list [--state S] [--limit N] [--url URL]\n\nLists trainings, newest first "
               "(GET /v1/trainings).\n\noptions:\n"
               "  --state S             only QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED ones\n"
               "  --limit N             at most N (1..1000) [default 100]\n%s",
               common_help);
        return 0;
    }
    if (rc) return rc;
    char path[256] = "/v1/trainings";
    size_t o = strlen(path);
    for (const char *p = state; p && *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return cli_usage_error("list", "bad --state");
    for (const char *p = limit; p && *p; p++)
        if (*p < '0' || *p > '9') return cli_usage_error("list", "bad --limit");
    if (state) o += (size_t)snprintf(path + o, sizeof path - o, "?state=%.32s", state);
    if (limit) snprintf(path + o, sizeof path - o, "%slimit=%.8s", state ? "&" : "?", limit);
    return simple("list", "GET", path, url);
}

int cmd_cancel(int argc, char **argv) {
    const char *url = NULL, *pos[1];
    int n_pos = 0;
    const flag_spec flags[] = {{"url", 1, &url, NULL}};
    int rc = parse_args("cancel", argc, argv, flags, 1, pos, 1, &n_pos, NULL, NULL);
    if (rc < 0) {
        printf("usage: lathe cancel ID [--url URL]\n\nCancels a training (POST /v1/trainings/ID/cancel): a "
               "queued "
               "one at once, a running one at its next step.\n\noptions:\n%s",
               common_help);
        return 0;
    }
    if (rc) return rc;
    if (n_pos != 1 || !valid_id(pos[0])) return cli_usage_error("cancel", "needs one training id");
    char path[256];
    snprintf(path, sizeof path, "/v1/trainings/%s/cancel", pos[0]);
    return simple("cancel", "POST", path, url);
}

/* ---- models, endpoints ---- */

/* `lathe models [NAME]`, `lathe endpoints [NAME]`: GET the collection or one of its records. */
static int get_named(const char *cmd, const char *what, int argc, char **argv) {
    const char *url = NULL, *pos[1];
    int n_pos = 0;
    const flag_spec flags[] = {{"url", 1, &url, NULL}};
    int rc = parse_args(cmd, argc, argv, flags, 1, pos, 1, &n_pos, NULL, NULL);
    if (rc < 0) {
        printf("usage: lathe %s [NAME] [--url URL]\n\nLists the %s (GET /v1/%s), or prints one (GET "
               "/v1/%s/NAME).\n\noptions:\n%s",
               cmd, what, cmd, cmd, common_help);
        return 0;
    }
    if (rc) return rc;
    if (n_pos == 1 && !valid_id(pos[0])) return cli_usage_error(cmd, "bad name '%s'", pos[0]);
    char path[256];
    snprintf(path, sizeof path, "/v1/%s%s%s", cmd, n_pos ? "/" : "", n_pos ? pos[0] : "");
    return simple(cmd, "GET", path, url);
}

int cmd_models(int argc, char **argv) {
    return get_named("models", "models", argc, argv);
}

int cmd_endpoints(int argc, char **argv) {
    return get_named("endpoints", "endpoints with their states and stages", argc, argv);
}
