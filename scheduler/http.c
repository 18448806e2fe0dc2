/* http.c - libmicrohttpd glue: collect the body, hand the request to lt_sched_handle, send its answer. */
#include "http.h"

#include "registry.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct lt_http {
    struct MHD_Daemon *d;
    lt_sched *s; /* borrowed */
    int port;
};

/* What one request collects before it is answered. */
typedef struct {
    char *body; /* (len) upload so far */
    size_t len, cap;
    size_t limit;  /* LT_HTTP_MAX_BODY, or the registry's limit for inference requests */
    int too_large; /* the body passed limit; the rest is dropped */
    int64_t t0_us; /* when the request arrived */
} request_ctx;

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int append(request_ctx *rc, const char *data, size_t n) {
    if (rc->too_large || rc->len + n > rc->limit) {
        rc->too_large = 1;
        return 1;
    }
    if (rc->len + n > rc->cap) {
        size_t cap = rc->cap ? rc->cap : 1024;
        while (cap < rc->len + n)
            cap *= 2;
        char *b = realloc(rc->body, cap);
        if (!b) return 0;
        rc->body = b;
        rc->cap = cap;
    }
    memcpy(rc->body + rc->len, data, n);
    rc->len += n;
    return 1;
}

static enum MHD_Result send_answer(struct MHD_Connection *c, lt_sched_response *rs) {
    struct MHD_Response *r = MHD_create_response_from_buffer(rs->body_len, rs->body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(rs->body);
        return MHD_NO;
    }
    rs->body = NULL; /* MHD frees it with the response */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            rs->content_type ? rs->content_type : "text/plain");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (rs->allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, rs->allow);
    if (rs->www_auth) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, rs->www_auth);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)rs->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    lt_http *h = cls;
    request_ctx *rc = *con_cls;
    if (!rc) { /* first call: headers only */
        if (!(rc = calloc(1, sizeof *rc))) return MHD_NO;
        rc->t0_us = mono_us();
        rc->limit = lt_registry_max_body(h->s->registry, url, LT_HTTP_MAX_BODY);
        *con_cls = rc;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!append(rc, upload_data, *upload_data_size)) return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    lt_sched_response rs;
    if (rc->too_large) {
        memset(&rs, 0, sizeof rs);
        rs.status = 413;
        rs.content_type = "application/json";
        rs.route = LT_ROUTE_OTHER;
        if (asprintf(&rs.body, "{\"error\":\"body: larger than %zu bytes\"}", rc->limit) < 0) return MHD_NO;
        rs.body_len = strlen(rs.body);
    } else {
        lt_sched_request rq = {
            .method = method,
            .path = url,
            .state = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state"),
            .limit = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit"),
            .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
            .idempotency_key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key"),
            .body = rc->body ? rc->body : "",
            .body_len = rc->len,
        };
        lt_sched_handle(h->s, &rq, &rs);
    }
    lt_sched_count_time(h->s, rs.route, mono_us() - rc->t0_us);
    return send_answer(c, &rs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    request_ctx *rc = *con_cls;
    if (!rc) return;
    free(rc->body);
    free(rc);
    *con_cls = NULL;
}

lt_http *lt_http_start(lt_sched *s, const char *bind, int port, lt_err *err) {
    if (port < 0 || port > 65535) {
        lt_errorf(err, LT_ERR_ARG, "port: %d is not in [0, 65535]", port);
        return NULL;
    }
    lt_http *h = calloc(1, sizeof *h);
    if (!h) {
        lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->s = s;
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    int have_addr = 0, flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (bind && bind[0]) {
        struct addrinfo hints = {.ai_flags = AI_NUMERICSERV | AI_PASSIVE, .ai_socktype = SOCK_STREAM},
                        *ai = NULL;
        char port_s[16];
        snprintf(port_s, sizeof port_s, "%d", port);
        int rc = getaddrinfo(bind, port_s, &hints, &ai);
        if (rc || !ai) {
            lt_errorf(err, LT_ERR_ARG, "bind: cannot resolve '%s': %s", bind, gai_strerror(rc));
            free(h);
            return NULL;
        }
        memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
        if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
        freeaddrinfo(ai);
        have_addr = 1;
    }
    h->d = have_addr
               ? MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT,
                                  (unsigned)120, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000,
                                  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_END)
               : MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT,
                                  (unsigned)120, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000, MHD_OPTION_END);
    if (!h->d) {
        lt_errorf(err, LT_ERR_IO, "cannot listen on %s:%d (in use, or not allowed)",
                  have_addr ? bind : "0.0.0.0", port);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : port;
    return h;
}

int lt_http_port(const lt_http *h) {
    return h->port;
}

void lt_http_stop(lt_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    free(h);
}
