#if Kafka
import CRdKafka
import Synchronization

/// Whether a `KafkaLog`'s brokers answer, as its clients (the producer and every consumer lane)
/// see them together; logged once per change, not once per failed connection or per call.
///
/// librdkafka says when every broker is down (its "N/N brokers are down" line), and a request
/// may go unanswered; only an answer (offsets, metadata, an acknowledged record) says the brokers
/// are back: records fetched ahead before an outage prove nothing. While the brokers are down,
/// librdkafka's own lines about each failed connection (one per broker, client and reconnect
/// attempt, and more with each failed request) are dropped: `kafka unreachable` stands for
/// them, and `kafka reachable again` says how long the outage lasted and how many it dropped.
final class KafkaReachability: Sendable {
    private struct State {
        var downSince: Int64?
        /// When an answer last ended an outage.
        var recoveredAt: Int64 = 0
        var dropped = 0
        var lastProbe: Int64 = 0
        /// librdkafka's lines about failed connections so far (logged or not).
        var connectionFailures = 0
    }

    private let state = Mutex(State())
    private let logger: EventLogger
    /// `kafka://…` (never the `-X` values).
    let brokers: String

    init(logger: EventLogger, brokers: String) {
        self.logger = logger
        self.brokers = brokers
    }

    /// Whether the brokers are down as last seen.
    var isDown: Bool { state.withLock { $0.downSince != nil } }

    /// The brokers stopped answering: logged if they were answering.
    /// - Parameter fromLibrdkafka: librdkafka's line, which a client still reconnecting may log
    ///   just after another one's answer ended the outage: not believed within a second of that
    ///   (the line repeats with every reconnection that fails, so a new outage is not missed).
    func lost(_ reason: String, fromLibrdkafka: Bool = false) {
        state.withLock { s in lost(&s, reason, fromLibrdkafka: fromLibrdkafka) }
    }

    /// Under the lock, which also orders the lines: none of librdkafka's passes after the outage
    /// was said, or is said after its end.
    private func lost(_ s: inout State, _ reason: String, fromLibrdkafka: Bool) {
        let now = currentTimeMillis()
        guard s.downSince == nil, !fromLibrdkafka || now - s.recoveredAt >= 1_000 else { return }
        s.downSince = now
        s.dropped = 0
        logger.log(.error, "kafka unreachable", ["brokers": brokers, "reason": reason])
    }

    /// A broker answered: logged if the brokers were down.
    func answered() {
        let now = currentTimeMillis()
        state.withLock { s in
            guard let since = s.downSince else { return }
            s.downSince = nil
            s.recoveredAt = now
            logger.log(.info, "kafka reachable again", ["brokers": brokers, "after": "\(now - since)ms", "linesDropped": "\(s.dropped)"])
        }
    }

    /// Passes on one of librdkafka's log lines (called on librdkafka's threads) through `emit`,
    /// or drops it.
    func pass(facility: String, message: String, _ emit: () -> Void) {
        if facility == "ERROR" && message.hasSuffix("brokers are down") {
            // "[thrd:host:port/bootstrap]: 3/3 brokers are down": the thread is librdkafka's own.
            let reason = message.range(of: "]: ").map { String(message[$0.upperBound...]) } ?? message
            state.withLock { s in lost(&s, reason, fromLibrdkafka: true) }
            return
        }
        // While the brokers are down: a failed connection (FAIL), or a request's error that
        // librdkafka logs for want of an error callback and that lists the connections that
        // failed (ERROR). A request's failure reaches its caller as an error of its own.
        guard facility == "FAIL" || facility == "ERROR" else { return emit() }
        state.withLock { s in
            if facility == "FAIL" { s.connectionFailures += 1 }
            guard s.downSince != nil else { return emit() }
            s.dropped += 1
        }
    }

    /// Whether a read that found nothing while the brokers are down should ask them whether they
    /// are back (at most once a second for the whole log).
    func probeDue() -> Bool {
        let now = currentTimeMillis()
        return state.withLock { s in
            guard s.downSince != nil, now - s.lastProbe >= 1_000 else { return false }
            s.lastProbe = now
            return true
        }
    }

    /// Runs `request`, a blocking librdkafka call given a timeout, within `timeoutMs` in all: in
    /// rounds of growing timeouts (0.5 s, 1 s, 2 s, …) that stop once connections to the brokers
    /// fail (librdkafka says so at once, while it says that every broker is down only after
    /// trying each of them again, a second or two later), so that a caller asking every tick
    /// (the controller's lag) waits about half a second per call in an outage, not the whole
    /// timeout: it asks again next time. An answer marks the brokers reachable; no answer within
    /// `timeoutMs` marks them down.
    /// - Throws: the last `KafkaCallError`.
    func ask<T>(timeoutMs: Int64 = 10_000, _ request: (Int32) throws -> T) throws -> T {
        let deadline = currentTimeMillis() + timeoutMs
        var round: Int64 = 500
        while true {
            let failuresBefore = state.withLock { $0.connectionFailures }
            do {
                let result = try request(Int32(max(1, min(round, deadline - currentTimeMillis()))))
                answered()
                return result
            } catch var error as KafkaCallError where error.isUnanswered {
                if isDown || state.withLock({ $0.connectionFailures }) > failuresBefore {
                    error.noBroker = true
                    throw error
                }
                if currentTimeMillis() >= deadline {
                    lost("no answer within \(timeoutMs / 1000) s: \(KafkaHandle.describe(error.err))")
                    error.noBroker = true
                    throw error
                }
                round *= 2
            }
        }
    }
}

/// A librdkafka call that failed, with its error code: the caller words the `LogError`.
struct KafkaCallError: Error {
    /// What was asked: "metadata", "offsets".
    var what: String
    var err: rd_kafka_resp_err_t
    var partition: Int?
    /// Set by `KafkaReachability.ask`: the brokers are down or their connections fail.
    var noBroker = false

    /// No broker answered (in time): the call may succeed once they do.
    var isUnanswered: Bool {
        [RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
         RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
         RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT].contains(err)
    }

    /// `topic "t" partition 1: Kafka offsets: Local: Timed out (_TIMED_OUT); no broker of kafka://… answers`.
    func logError(topic: String?, reachability: KafkaReachability) -> LogError {
        let place = topic.map { t in "topic \"\(t)\"" + (partition.map { " partition \($0)" } ?? "") + ": " } ?? ""
        let down = noBroker || reachability.isDown ? "; no broker of \(reachability.brokers) answers" : ""
        return LogError(.io, "\(place)Kafka \(what): \(KafkaHandle.describe(err))\(down)", topic: topic, partition: partition)
    }
}
#endif
