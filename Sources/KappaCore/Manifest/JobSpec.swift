/// A validated job manifest: what one version of a job computes and how it is run.
public struct JobSpec: Sendable, Equatable {
    public var job: String
    public var version: Int
    public var source: Source
    public var output: Output
    public var transform: Transform
    /// Most records per transaction.
    public var batch: Int
    public var catchUp: CatchUp
    /// How a replay may use the host and the store (`replay`).
    public var replay = Replay()
    public var promote: Promote
    public var retire: Retire
    public var onBadRecord: BadRecordPolicy
    /// How long the job may take over one batch (`transform.timeout`): an exec program to
    /// answer, a SQL job's statements to run (summed over the attempts at the batch).
    public var timeoutMs: Int64 = 30_000
    /// For exec transforms: variables set for the program (`transform.env`), besides the few
    /// JobHost passes on (`ExecProcess.isInherited`).
    public var execEnvironment: [String: String] = [:]
    /// Under `deadLetter`: the largest share of the records read that may be dead letters
    /// (`deadLetter.maxFraction`) beyond the first `deadLetterAllowance`.
    public var deadLetterMaxFraction: Double = 0.01
    /// Dead letters a version may always have, whatever the fraction (a short replay's few).
    public static let deadLetterAllowance = 10

    public struct Source: Sendable, Equatable {
        public var topic: String
        /// `source.allowGaps`: a recorded gap in the embedded log (offsets `kappactl topic repair`
        /// gave up as lost) is skipped, and the skip recorded in the version's history; by
        /// default a version that reaches one fails naming the range.
        public var allowGaps: Bool = false
        /// `source.fields`: members of each record's JSON value decoded once, in Swift, into
        /// typed columns of `batch` (`TypedBatch`); empty: the job reads `value` itself.
        public var fields: [Column] = []

        public init(topic: String, allowGaps: Bool = false, fields: [Column] = []) {
            self.topic = topic
            self.allowGaps = allowGaps
            self.fields = fields
        }

        /// `batch`'s own columns, which no field may be named.
        public static let batchColumns: Set<String> = ["partition", "offset", "timestamp", "key", "value", "key_bytes"]
        /// At most this many fields.
        public static let maxFields = 200
    }

    public struct Output: Sendable, Equatable {
        /// The reader-facing view; each version's table is `<table>__v<N>`.
        public var table: String
        public var columns: [Column]
        public var primaryKey: [String]
    }

    public struct Column: Sendable, Equatable {
        public var name: String
        public var type: ColumnType
    }

    /// Column types both SQLite and PostgreSQL accept (mapped per backend).
    public enum ColumnType: String, Sendable, CaseIterable {
        case text = "TEXT"
        case integer = "INTEGER"
        case bigint = "BIGINT"
        case real = "REAL"
        case double = "DOUBLE"
        case numeric = "NUMERIC"
        case boolean = "BOOLEAN"
        case blob = "BLOB"
    }

    public enum Transform: Sendable, Equatable {
        /// SQL run per batch, reading `batch` and writing `output`.
        case sql(String)
        /// A program fed JSON lines (see the README's exec protocol).
        case exec([String])
    }

    public struct CatchUp: Sendable, Equatable {
        /// Caught up when the total lag is at most this many records…
        public var maxLag: Int64
        /// …and not growing, for this long (milliseconds)…
        public var holdForMs: Int64
        /// …and the oldest unprocessed record is at most this old (milliseconds; nil: no bound).
        public var maxTimeLagMs: Int64? = nil

        public init(maxLag: Int64, holdForMs: Int64, maxTimeLagMs: Int64? = nil) {
            self.maxLag = maxLag
            self.holdForMs = holdForMs
            self.maxTimeLagMs = maxTimeLagMs
        }
    }

    public struct Replay: Sendable, Equatable {
        /// At most this many records a second over all partitions while the version replays
        /// (each partition an equal share); nil: as fast as it goes.
        public var maxRate: Double? = nil

        public init(maxRate: Double? = nil) { self.maxRate = maxRate }
    }

    public struct Promote: Sendable, Equatable {
        public enum Mode: String, Sendable { case manual, auto }
        public var mode: Mode
        /// SQL boolean expressions over `old` and `new` that must hold before a switch.
        public var checks: [String]
        /// Watched after the switch (`promote.analysis`); nil: not watched.
        public var analysis: Analysis? = nil

        public init(mode: Mode, checks: [String], analysis: Analysis? = nil) {
            self.mode = mode
            self.checks = checks
            self.analysis = analysis
        }
    }

    /// Analysis after promotion: every `intervalMs` during `bakeMs` after the switch the
    /// controller evaluates `checks` (SQL boolean expressions over `new`, `old`, `lag` and
    /// `errors`); the serving lag past `catchUp.maxTimeLag` counts as a failure too. At
    /// `failureLimit` failures it rolls back to the version that served before.
    public struct Analysis: Sendable, Equatable {
        public var checks: [String]
        public var intervalMs: Int64
        public var bakeMs: Int64
        public var failureLimit: Int

        public init(checks: [String], intervalMs: Int64 = 10_000, bakeMs: Int64 = 60_000, failureLimit: Int = 1) {
            self.checks = checks
            self.intervalMs = intervalMs
            self.bakeMs = bakeMs
            self.failureLimit = failureLimit
        }

        /// Evaluations in a whole bake.
        public var evaluations: Int { max(1, Int(bakeMs / max(1, intervalMs))) }
    }

    public struct Retire: Sendable, Equatable {
        /// How long a standby version is kept before it is retired; nil: until retired by command.
        public var afterMs: Int64?
    }

    public enum BadRecordPolicy: String, Sendable {
        case fail
        case deadLetter
    }

    /// `<table>__v<N>`: this version's own table.
    public var versionTable: String { Self.versionTable(view: output.table, version: version) }
    /// `<table>__v<N>__dead`: records the job could not handle, under `deadLetter`.
    public var deadLetterTable: String { Self.deadLetterTable(versionTable: versionTable) }

    /// `<view>__v<N>`: the one place a version's table is named.
    public static func versionTable(view: String, version: Int) -> String { "\(view)__v\(version)" }

    /// `<view>__v<N>__dead`: the version's dead-letter table.
    public static func deadLetterTable(versionTable: String) -> String { "\(versionTable)__dead" }
}

/// A manifest that cannot be used, with the file and the key path of the problem.
public struct ManifestError: Error, Sendable, CustomStringConvertible, Equatable {
    public var file: String?
    /// Dotted key path (`output.columns.price`); empty for the whole document.
    public var path: String
    public var message: String

    public var description: String {
        [file, path.isEmpty ? nil : path].compactMap { $0 }.map { $0 + ": " }.joined() + message
    }
}
