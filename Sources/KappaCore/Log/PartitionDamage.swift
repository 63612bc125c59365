/// Damage to the acknowledged part of a `SegmentLog` partition, found when it is opened (or
/// when a reader meets it): what is missing or unreadable, in which file, at which offsets.
///
/// The head is the truth about what was acknowledged: bytes beyond it are a torn tail that
/// recovery cuts off, but anything below it that is missing or damaged is loss, never repaired
/// silently. A damaged partition refuses appends (handing out an offset that a reader already
/// consumed would make it skip the new records silently); reads below `from` still work, a
/// read in the damaged range throws `error`. Operator tools describe and repair from this value.
public struct PartitionDamage: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// The head file is missing or unreadable while segments exist: what was acknowledged
        /// is unknown, so a torn tail cannot be told from lost records.
        case headMissing
        /// A segment file that held acknowledged offsets is gone (deleted or renamed).
        case segmentMissing
        /// A segment ends before the offsets it must hold (truncated, perhaps at a frame boundary).
        case segmentShort
        /// Bytes that should be a frame are not one, or fail their checksum.
        case badFrame
        /// A frame holds other offsets than its place requires (a segment renamed or reordered).
        case misplacedFrame
    }

    public var topic: String
    public var partition: Int
    public var kind: Kind
    /// The file missing or damaged (for `headMissing`, the head file).
    public var file: String
    /// The first offset missing or unreadable.
    public var from: Int64
    /// The end (exclusive) of the damaged range when known: offsets from here on read again.
    /// Nil when unknown (head missing, or damage found by a reader).
    public var to: Int64?
    /// The end offset the head acknowledged; nil when the head is missing.
    public var acknowledgedEnd: Int64?
    /// What was found, e.g. "checksum mismatch at byte 4096".
    public var detail: String
    /// Where reads below `from` end (the intact prefix), when recovery knows it.
    var readable: PartitionHead?

    /// The damaged offsets as text: "4558…4999", or "4558…" when the end is unknown.
    public var range: String {
        guard let to else { return "\(from)…" }
        return to > from ? "\(from)…\(to - 1)" : "\(from)"
    }

    public var description: String {
        let place = "topic \"\(topic)\" partition \(partition)"
        let refused = "writes to the partition are refused until it is repaired"
        switch kind {
        case .headMissing:
            let holds = from > (readable?.earliest ?? from)
                ? "offsets \(readable?.earliest ?? 0)…\(from - 1) (\(from - (readable?.earliest ?? 0)) records)" : "no readable records"
            return "\(place): the head file \(file) is missing or unreadable (\(detail)); the segments hold \(holds); "
                + "without the head a torn tail cannot be told from lost acknowledged records, so \(refused)"
        default:
            let acknowledged = acknowledgedEnd.map { " (the head's acknowledged end is \($0))" } ?? ""
            return "\(place): offsets \(range) are missing or damaged in \(file)\(acknowledged): \(detail); \(refused)"
        }
    }

    /// The error a reader in the damaged range, or an append, gets.
    public var error: LogError {
        LogError(.corrupt, description, topic: topic, partition: partition, offset: from, file: file)
    }

    /// True when a read at `offset` falls in the damaged range.
    func covers(_ offset: Int64) -> Bool {
        offset >= from && (to.map { offset < $0 } ?? true)
    }
}
