/* service.h - for tests that talk to a running service: one HTTP request, JSON string fields, a clock. */
#ifndef LT_TEST_SERVICE_H
#define LT_TEST_SERVICE_H

#include <cjson/cJSON.h>

/* One HTTP request to 127.0.0.1:port (JSON content type, "Authorization: Bearer <token>" unless token is
 * NULL, 30 s timeout). Returns the status (0 when no answer) and, when out is not NULL, the parsed JSON body
 * (NULL when it is not JSON); the caller deletes it. */
long test_http(int port, const char *method, const char *path, const char *body, const char *token,
               cJSON **out);

/* The string member name of o, or "" when there is none. */
const char *test_json_str(const cJSON *o, const char *name);

/* Seconds on the monotonic clock. */
double test_now_s(void);
void test_sleep_ms(int ms);

#endif
