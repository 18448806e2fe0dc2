/* mock.h - librdkafka's mock Kafka cluster (rdkafka_mock.h) with lathe's topics, and fault injection.
 *
 * The mock cluster speaks the real Kafka protocol on localhost ports: producers, idempotence, consumer
 * groups and offset commits work as against a real cluster (no CreateTopics, so the topics are made here).
 * Used in-process by tests and `lathe standalone`, and in its own process by `lathe mock-kafka`.
 *
 * Fault injection commands (lt_kafka_mock_command; also the lines of mock-kafka's --control-file):
 *   down <broker|all>                   disconnect a broker (ids 1..N) and refuse connections
 *   up <broker|all>                     accept connections again
 *   rtt <broker|all> <ms>               delay every response of a broker
 *   error <api> <count> <error>         fail the next <count> requests of <api> (Produce, Fetch, Metadata,
 *                                       OffsetCommit, OffsetFetch, FindCoordinator, JoinGroup, Heartbeat,
 *                                       SyncGroup, LeaveGroup, InitProducerId, or a number) with <error>
 *                                       (a Kafka error name such as NOT_LEADER_FOR_PARTITION, or a number;
 *                                       _TRANSPORT disconnects)
 *   leader <topic> <partition> <broker> move a partition's leadership
 *   topic <name> <partitions>           create a topic
 * Blank lines and lines starting with '#' are ignored. */
#ifndef LT_KAFKA_MOCK_H
#define LT_KAFKA_MOCK_H

#include "kafka.h"

typedef struct lt_kafka_mock lt_kafka_mock;

/* Starts a cluster of `brokers` brokers (1..16) and creates lathe's five topics with c's prefix and
 * partition counts (c->jobs_partitions for jobs and events), replicated min(3, brokers) times. */
lt_kafka_mock *lt_kafka_mock_new(int brokers, const lt_kafka_config *c, lt_err *err);
/* Stops the cluster; every client connected to it sees the brokers vanish. NULL is a no-op. */
void lt_kafka_mock_destroy(lt_kafka_mock *m);
/* The bootstrap servers ("127.0.0.1:port,..."), valid until destroy. */
const char *lt_kafka_mock_bootstraps(const lt_kafka_mock *m);
int lt_kafka_mock_brokers(const lt_kafka_mock *m);
/* Runs one command (above). LT_ERR_ARG naming what is wrong with a bad command. */
lt_status lt_kafka_mock_command(lt_kafka_mock *m, const char *line, lt_err *err);

#endif
