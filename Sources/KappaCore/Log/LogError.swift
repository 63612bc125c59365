/// An error from the unified log, with the topic, partition, offset and file it concerns.
public struct LogError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case topicNotFound
        case topicExists
        case partitionNotFound
        case invalidArgument
        case offsetBelowEarliest
        case offsetBeyondEnd
        case corrupt
        /// The offset lies in a recorded gap (`PartitionGap`): lost, given up by a repair;
        /// `gapEnd` is where the log reads on.
        case gap
        case io
        case outOfSpace
        /// A mirror's write refused: another mirror, holding a newer lease epoch, wrote the
        /// archive's manifest since (this one lost its lease).
        case fenced
    }

    public var code: Code
    public var message: String
    public var topic: String?
    public var partition: Int?
    public var offset: Int64?
    public var file: String?
    /// What the failing append wrote before it failed (the partitions it reached), so that a
    /// producer can report it: an append across partitions is not one atomic write.
    public var appended: [AppendResult] = []
    /// For `.gap`: the first offset after the gap.
    public var gapEnd: Int64?

    public init(_ code: Code, _ message: String, topic: String? = nil, partition: Int? = nil,
                offset: Int64? = nil, file: String? = nil) {
        self.code = code
        self.message = message
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.file = file
    }

    public var description: String { message }

    static func topicNotFound(_ topic: String) -> LogError {
        LogError(.topicNotFound, "topic \"\(topic)\" does not exist", topic: topic)
    }

    static func partitionNotFound(_ topic: String, _ partition: Int, count: Int) -> LogError {
        LogError(.partitionNotFound,
                 "topic \"\(topic)\" has no partition \(partition) (it has \(count): 0…\(count - 1))",
                 topic: topic, partition: partition)
    }

    /// Wraps a failed system call, keeping the path; a full disk gets its own code.
    static func io(_ error: IOError, topic: String, partition: Int? = nil) -> LogError {
        let place = partition.map { "topic \"\(topic)\" partition \($0)" } ?? "topic \"\(topic)\""
        return LogError(error.isOutOfSpace ? .outOfSpace : .io, "\(place): \(error)",
                        topic: topic, partition: partition, file: error.path)
    }
}
