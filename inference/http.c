/* http.c - libmicrohttpd glue: routes, body accumulation with a size limit, JSON answers. */
#include "http.h"

#include "inference/response.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct lt_infer_http {
    struct MHD_Daemon *daemon;
    lt_infer_service *svc; /* not owned */
    size_t max_body;       /* the service's max_request_bytes */
    int port;
};

typedef enum { ROUTE_NONE = 0, ROUTE_INFERENCE, ROUTE_HEALTH, ROUTE_METRICS } route;

/* One request's state across the access handler's calls. */
typedef struct {
    route r;
    char *body; /* (cap) the body so far */
    size_t len, cap;
    int too_large; /* the body passed the limit: the rest is discarded and 413 answered */
    int oom;       /* growing the body failed: 500 */
} conn_state;

static route find_route(const char *url) {
    if (!strcmp(url, "/inference") || !strcmp(url, "/v1/models/default/inference")) return ROUTE_INFERENCE;
    if (!strcmp(url, "/v1/health")) return ROUTE_HEALTH;
    if (!strcmp(url, "/metrics")) return ROUTE_METRICS;
    return ROUTE_NONE;
}

/* Queues body (taken over: freed by MHD) with status and content type; allow (may be NULL) is the Allow
 * header of a 405. */
static enum MHD_Result answer(struct MHD_Connection *c, int status, char *body, const char *type,
                              const char *allow) {
    static const char oom_body[] = "{\"error\":\"out of memory\"}";
    struct MHD_Response *r;
    if (body) {
        r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    } else {
        status = 500;
        type = "application/json";
        r = MHD_create_response_from_buffer(sizeof oom_body - 1, (void *)oom_body, MHD_RESPMEM_PERSISTENT);
    }
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result answer_error(lt_infer_http *h, struct MHD_Connection *c, lt_infer_error_class cls,
                                    int status, const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static enum MHD_Result answer_error(lt_infer_http *h, struct MHD_Connection *c, lt_infer_error_class cls,
                                    int status, const char *allow, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lt_infer_service_observe(h->svc, status, cls);
    return answer(c, status, lt_infer_error_response(msg), "application/json", allow);
}

static char *health_json(lt_infer_http *h) {
    lt_infer_model *m = lt_infer_service_model(h->svc);
    int n_labels = 0;
    lt_infer_model_labels(m, &n_labels);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "algorithm", lt_infer_algorithm_str(lt_infer_model_algorithm(m)));
    cJSON_AddStringToObject(o, "model", lt_infer_model_dir(m));
    cJSON_AddNumberToObject(o, "labels", n_labels);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Appends data to the body unless that passes the limit. */
static void body_append(conn_state *st, size_t max, const char *data, size_t n) {
    if (st->too_large || st->oom) return;
    if (n > max - st->len) {
        st->too_large = 1;
        free(st->body);
        st->body = NULL;
        return;
    }
    if (st->len + n + 1 > st->cap) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap < st->len + n + 1)
            cap = cap > max / 2 ? max + 1 : cap * 2;
        char *p = realloc(st->body, cap);
        if (!p) {
            st->oom = 1;
            return;
        }
        st->body = p;
        st->cap = cap;
    }
    memcpy(st->body + st->len, data, n);
    st->len += n;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    lt_infer_http *h = cls;
    conn_state *st = *con_cls;
    if (!st) { /* the headers: pick the route, refuse what we can before reading a body */
        st = calloc(1, sizeof *st);
        if (!st) return MHD_NO;
        *con_cls = st;
        st->r = find_route(url);
        int post = !strcmp(method, MHD_HTTP_METHOD_POST);
        int get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
        if (st->r == ROUTE_NONE)
            return answer_error(h, c, LT_INFER_ERR_NOT_FOUND, 404, NULL,
                                "no route %.64s %.200s (POST /inference, GET /v1/health, GET /metrics)",
                                method, url);
        if (st->r == ROUTE_INFERENCE && !post)
            return answer_error(h, c, LT_INFER_ERR_NOT_FOUND, 405, "POST", "%.64s %s: use POST", method, url);
        if (st->r != ROUTE_INFERENCE && !get)
            return answer_error(h, c, LT_INFER_ERR_NOT_FOUND, 405, "GET", "%.64s %s: use GET", method, url);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (post && cl && strtoull(cl, NULL, 10) > h->max_body)
            return answer_error(h, c, LT_INFER_ERR_TOO_LARGE, 413, NULL,
                                "the request is %llu bytes, over the limit of %zu bytes",
                                strtoull(cl, NULL, 10), h->max_body);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        body_append(st, h->max_body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    switch (st->r) {
    case ROUTE_HEALTH:
        return answer(c, 200, health_json(h), "application/json", NULL);
    case ROUTE_METRICS:
        return answer(c, 200, lt_infer_service_metrics_text(h->svc), "text/plain; version=0.0.4", NULL);
    case ROUTE_INFERENCE:
        break;
    case ROUTE_NONE:
        return MHD_NO; /* answered on the first call */
    }
    if (st->too_large)
        return answer_error(h, c, LT_INFER_ERR_TOO_LARGE, 413, NULL,
                            "the request is over the limit of %zu bytes", h->max_body);
    if (st->oom) return answer_error(h, c, LT_INFER_ERR_INTERNAL, 500, NULL, "out of memory");
    char *resp = NULL;
    int status = lt_infer_service_handle(h->svc, st->body ? st->body : "", st->len, &resp);
    return answer(c, status, resp, "application/json", NULL);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    conn_state *st = *con_cls;
    if (!st) return;
    free(st->body);
    free(st);
    *con_cls = NULL;
}

lt_status lt_infer_http_start(lt_infer_service *svc, const lt_infer_http_opts *opts, lt_infer_http **out,
                              lt_err *err) {
    *out = NULL;
    lt_infer_http_opts o = opts ? *opts : (lt_infer_http_opts){0};
    if (!o.host) o.host = "127.0.0.1";
    if (o.max_connections <= 0) o.max_connections = 256;
    if (o.timeout_s <= 0) o.timeout_s = 60;
    if (o.port < 0 || o.port > 65535)
        return lt_errorf(err, LT_ERR_ARG, "port must be 0..65535, got %d", o.port);
    char port[16];
    snprintf(port, sizeof port, "%d", o.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    int gai = getaddrinfo(o.host, port, &hints, &ai);
    if (gai != 0)
        return lt_errorf(err, LT_ERR_ARG, "cannot resolve host '%s': %s", o.host, gai_strerror(gai));
    lt_infer_http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    h->svc = svc;
    h->max_body = lt_infer_service_limits(svc).max_request_bytes;
    /* ITC: lets MHD_quiesce_daemon stop the listening thread at shutdown */
    unsigned flags =
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, (uint16_t)o.port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
                                 ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)o.max_connections,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o.timeout_s,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->daemon) {
        free(h);
        return lt_errorf(err, LT_ERR_IO,
                         "cannot listen on %s:%d (in use, or not an address of this machine?)", o.host,
                         o.port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : o.port;
    *out = h;
    return LT_OK;
}

int lt_infer_http_port(const lt_infer_http *h) {
    return h->port;
}

void lt_infer_http_stop(lt_infer_http *h) {
    if (!h) return;
    MHD_socket fd = MHD_quiesce_daemon(h->daemon); /* no new connections; the ones in progress finish */
    MHD_stop_daemon(h->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd); /* a quiesced listening socket is the caller's to close */
    free(h);
}
