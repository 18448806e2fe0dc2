/* http.h - the HTTP front of `lathe serve` (libmicrohttpd, one thread per connection):
 *   POST /inference, POST /v1/models/default/inference   the guide's request -> the algorithm's response
 *   GET  /v1/health                                       {"status": "ok", "algorithm": ..., "labels": n}
 *   GET  /metrics                                         Prometheus text (metrics.h)
 * Anything else: 404 (unknown path) or 405 (known path, other method), with {"error": "..."}. A body over
 * the request limit is refused with 413 from its Content-Length, before it is read. */
#ifndef LT_INFER_HTTP_H
#define LT_INFER_HTTP_H

#include "inference/service.h"

typedef struct {
    const char *host;    /* address to bind, numeric IPv4 or IPv6 or a name (default 127.0.0.1) */
    int port;            /* 0: any free port (see lt_infer_http_port) */
    int max_connections; /* concurrent connections, each a thread (default 256) */
    int timeout_s;       /* idle connection timeout (default 60) */
} lt_infer_http_opts;

typedef struct lt_infer_http lt_infer_http;

/* Starts listening; requests are answered by svc (not owned; it must outlive the server). */
lt_status lt_infer_http_start(lt_infer_service *svc, const lt_infer_http_opts *opts, lt_infer_http **out,
                              lt_err *err);
/* The port it listens on. */
int lt_infer_http_port(const lt_infer_http *h);
/* Stops accepting connections, lets the requests in progress finish, and frees. NULL is a no-op. */
void lt_infer_http_stop(lt_infer_http *h);

#endif
