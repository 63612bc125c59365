#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* rd_kafka_producev is variadic, which Swift cannot call: one non-variadic wrapper. */
static inline rd_kafka_resp_err_t kappa_rd_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                                                   const void *value, size_t value_len,
                                                   const void *key, size_t key_len,
                                                   int64_t timestamp, void *opaque) {
    return rd_kafka_producev(rk,
                             RD_KAFKA_V_TOPIC(topic),
                             RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_VALUE((void *)value, value_len),
                             RD_KAFKA_V_KEY(key, key_len),
                             RD_KAFKA_V_TIMESTAMP(timestamp),
                             RD_KAFKA_V_OPAQUE(opaque),
                             RD_KAFKA_V_END);
}

/* The same with headers (may be NULL; owned by librdkafka once the call succeeds, else still the
   caller's). A NULL value is a tombstone; an empty value needs a non-NULL pointer. */
static inline rd_kafka_resp_err_t kappa_rd_produce_headers(rd_kafka_t *rk, const char *topic, int32_t partition,
                                                           const void *value, size_t value_len,
                                                           const void *key, size_t key_len,
                                                           int64_t timestamp, rd_kafka_headers_t *headers, void *opaque) {
    if (headers == NULL) return kappa_rd_produce(rk, topic, partition, value, value_len, key, key_len, timestamp, opaque);
    return rd_kafka_producev(rk,
                             RD_KAFKA_V_TOPIC(topic),
                             RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_VALUE((void *)value, value_len),
                             RD_KAFKA_V_KEY(key, key_len),
                             RD_KAFKA_V_TIMESTAMP(timestamp),
                             RD_KAFKA_V_HEADERS(headers),
                             RD_KAFKA_V_OPAQUE(opaque),
                             RD_KAFKA_V_END);
}
