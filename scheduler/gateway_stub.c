/* gateway_stub.c - PLACEHOLDER for the real gateway (scheduler/gateway.c, rtpath branch) so this branch's
 * scheduler links. DELETE THIS FILE when gateway.c lands: every call but new/free fails, so endpoints go
 * FAILED with a message saying why. */
#include "gateway.h"

#include <stdlib.h>

struct lt_gateway {
    int unused;
};

static lt_status not_built(lt_err *err) {
    return lt_errorf(err, LT_ERR_STATE,
                     "real-time inference is not built into this scheduler (gateway stub)");
}

lt_status lt_gateway_new(lt_gateway **out, const lt_kafka_options *kopts, const char *topic_prefix,
                         lt_err *err) {
    (void)kopts;
    (void)topic_prefix;
    if (!(*out = calloc(1, sizeof **out))) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    return LT_OK;
}

void lt_gateway_free(lt_gateway *gw) {
    free(gw);
}

lt_status lt_gateway_create_endpoint(lt_gateway *gw, const char *endpoint, int partitions, lt_err *err) {
    (void)gw, (void)endpoint, (void)partitions;
    return not_built(err);
}

lt_status lt_gateway_delete_endpoint(lt_gateway *gw, const char *endpoint, lt_err *err) {
    (void)gw, (void)endpoint;
    return not_built(err);
}

lt_status lt_gateway_load(lt_gateway *gw, const char *endpoint, const char *stage, const char *model_uri,
                          int timeout_ms, lt_err *err) {
    (void)gw, (void)endpoint, (void)stage, (void)model_uri, (void)timeout_ms;
    return not_built(err);
}

lt_status lt_gateway_infer(lt_gateway *gw, const char *endpoint, const char *stage, const char *model_uri,
                           const char *body, size_t len, int timeout_ms, int *http_status, char **resp_body,
                           size_t *resp_len, lt_err *err) {
    (void)gw, (void)endpoint, (void)stage, (void)model_uri, (void)body, (void)len, (void)timeout_ms;
    *http_status = 0;
    *resp_body = NULL;
    *resp_len = 0;
    return not_built(err);
}
