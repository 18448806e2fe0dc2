/* gateway_double.h - a stand-in for scheduler/gateway.c in the registry's tests: no Kafka, behaviour set by
 * the test. Loads of a model URI containing "bad-model" fail (LT_ERR_FORMAT); an endpoint named
 * "fail-topic..." cannot get its topic. Inference answers 200 with
 * {"endpoint", "stage", "model_uri", "bytes"} so a test sees which stage served it. */
#ifndef LT_GATEWAY_DOUBLE_H
#define LT_GATEWAY_DOUBLE_H

typedef enum { GWD_INFER_OK = 0, GWD_INFER_TIMEOUT, GWD_INFER_UNAVAILABLE } gwd_infer_mode;

/* While held, lt_gateway_load (resp. lt_gateway_infer) blocks until released. */
void gwd_hold_loads(int hold);
void gwd_hold_infers(int hold);
/* Number of lt_gateway_infer calls blocked right now. */
int gwd_infers_waiting(void);
void gwd_set_infer_mode(gwd_infer_mode m);
/* Calls so far. */
int gwd_creates(void);
int gwd_deletes(void);
int gwd_loads(void);

#endif
