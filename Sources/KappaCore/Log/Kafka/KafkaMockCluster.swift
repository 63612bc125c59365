#if Kafka
import CRdKafka
import Foundation
import Synchronization

/// librdkafka's mock cluster (`rdkafka_mock.h`): brokers in this process that speak the Kafka
/// protocol on 127.0.0.1, for tests and for trying `--log kafka://` without a cluster
/// (`kappactl kafka-mock`). librdkafka 2.0.2's mock has no CreateTopics or DeleteTopics and
/// creates unknown topics when asked for them by name, so topics are created here.
public final class KafkaMockCluster: @unchecked Sendable {
    private let handle: OpaquePointer
    private let cluster: OpaquePointer
    /// `host:port,host:port…` of the brokers.
    public let bootstrapServers: String
    /// How many brokers (their ids are 1…brokers).
    public let brokers: Int

    public init(brokers: Int = 1) throws {
        var error = [CChar](repeating: 0, count: 512)
        let conf = rd_kafka_conf_new()
        // The mock's own handle never connects anywhere; silence its "no bootstrap.servers" warning.
        _ = rd_kafka_conf_set(conf, "log_level", "3", &error, error.count)
        guard let rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &error, error.count) else {
            throw LogError(.io, "Kafka mock cluster: \(KafkaHandle.text(error))")
        }
        guard let mc = rd_kafka_mock_cluster_new(rk, Int32(brokers)) else {
            rd_kafka_destroy(rk)
            throw LogError(.io, "Kafka mock cluster: cannot start \(brokers) brokers")
        }
        handle = rk
        cluster = mc
        self.brokers = brokers
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(mc))
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(handle)
    }

    /// `kafka://…` for `--log`.
    public var url: String { "kafka://\(bootstrapServers)" }

    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws {
        let err = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor))
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw LogError(.invalidArgument, "Kafka mock cluster: topic \"\(name)\": \(KafkaHandle.describe(err))", topic: name)
        }
    }

    /// Takes every broker down at once, as a cluster that lost its power or its network: open
    /// connections close and new ones are refused until `setBrokersUp()`. Records stay (in memory).
    public func setBrokersDown() throws {
        try everyBroker("down") { rd_kafka_mock_broker_set_down($0, $1) }
    }

    /// Brings every broker back: clients reconnect by themselves.
    public func setBrokersUp() throws {
        try everyBroker("up") { rd_kafka_mock_broker_set_up($0, $1) }
    }

    /// One call per broker, all at once: each waits for the mock's thread to take it, which
    /// one after another would leave some brokers up for a second.
    private func everyBroker(_ what: String, _ call: @Sendable (OpaquePointer, Int32) -> rd_kafka_resp_err_t) throws {
        let errors = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: brokers) { i in
            let err = call(self.cluster, Int32(i + 1))
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { errors.withLock { $0.append("broker \(i + 1) \(what): \(KafkaHandle.describe(err))") } }
        }
        if let first = errors.withLock({ $0.first }) { throw LogError(.io, "Kafka mock cluster: \(first)") }
    }
}
#endif
