/* http.h - the API's HTTP transport: libmicrohttpd, one thread per connection (handlers block on Kafka
 * deliveries and data set listings), feeding requests to lt_sched_handle. */
#ifndef LT_SCHED_HTTP_H
#define LT_SCHED_HTTP_H

#include "core.h"

typedef struct lt_http lt_http;

#define LT_HTTP_MAX_BODY (1 << 20) /* larger request bodies get 413 */

/* Listens on bind:port (bind NULL or "" = every IPv4 address; port 0 = any free port) and serves s until
 * lt_http_stop. LT_ERR_IO naming the address when it can't listen. */
lt_http *lt_http_start(lt_sched *s, const char *bind, int port, lt_err *err);
/* The port actually listened on. */
int lt_http_port(const lt_http *h);
/* Stops listening, waits for the connection threads, frees. NULL is a no-op. */
void lt_http_stop(lt_http *h);

#endif
