/// The state of a job version. `pending → replaying → caughtUp → serving → standby → retired`,
/// and `failed` from any running state.
public enum VersionState: String, Sendable, Codable, CaseIterable {
    case pending
    case replaying
    case caughtUp
    case serving
    case standby
    case retired
    case failed
    /// Stopped by `kappactl pause`: no workers; offsets and table kept; never promoted.
    case paused

    /// States whose workers run (their tables are kept current).
    public var isRunning: Bool { [.replaying, .caughtUp, .serving, .standby].contains(self) }
}

/// A job: a name and the reader-facing view its serving version backs.
public struct JobRecord: Sendable, Equatable, Codable {
    public var name: String
    public var view: String
    public var topic: String
    public var createdAt: Int64
    /// Why the controller's decisions for the job fail now (shown by status), if they do.
    public var decisionError: String? = nil
}

/// One version of a job as the catalog holds it.
public struct VersionRecord: Sendable, Equatable {
    public var job: String
    public var version: Int
    public var state: VersionState
    /// The manifest as it was submitted.
    public var manifest: String
    public var spec: JobSpec
    public var createdAt: Int64
    public var updatedAt: Int64
    /// Why the version failed, when it did.
    public var error: String?
    /// The incarnation of its source topic when it was deployed (`TopicMetadata.incarnation`):
    /// its offsets mean nothing in a topic deleted and created again. nil when the log cannot
    /// tell incarnations apart.
    public var sourceIncarnation: String? = nil
}

/// One transition in a job's history.
public struct HistoryEntry: Sendable, Equatable, Codable {
    public var id: Int64
    public var job: String
    public var version: Int
    /// Milliseconds since the epoch.
    public var at: Int64
    /// nil for the entry that registered the version.
    public var from: VersionState?
    public var to: VersionState
    public var reason: String
    /// Who caused it (`kappactl@host`, `JobHost@host`).
    public var actor: String
}

/// A catalog operation that cannot be done, with what the user needs to know.
public struct CatalogError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case jobNotFound, versionNotFound, versionNotAbove, conflictingOutput, invalidJob, stateConflict, checkFailed, newerSchema, notACatalog
        /// A value in the catalog is not what its schema says (the message names table, column and row).
        case damagedCatalog
        /// The catalog's server cannot be reached now (it is retried).
        case unreachable
    }

    public var code: Code
    public var message: String
    public var description: String { message }

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}

// Rules and messages every catalog backend shares.
extension CatalogError {
    static func conflictingView(job: String, serves view: String, asked: String) -> CatalogError {
        CatalogError(.conflictingOutput, "job \"\(job)\" serves the view \"\(view)\"; every version must keep output.table \"\(view)\" (this one says \"\(asked)\")")
    }

    static func viewTaken(_ view: String, by job: String) -> CatalogError {
        CatalogError(.conflictingOutput, "the view \"\(view)\" already belongs to job \"\(job)\"")
    }

    static func notAbove(_ spec: JobSpec, latest: Int64) -> CatalogError {
        CatalogError(.versionNotAbove, "version \(spec.version) of job \"\(spec.job)\" is not above its latest version \(latest); use version \(latest + 1) or higher")
    }

    static func noVersion(_ job: String, _ version: Int) -> CatalogError {
        CatalogError(.versionNotFound, "job \"\(job)\" has no version \(version)")
    }

    static func stateMoved(_ job: String, _ version: Int, is state: String, not expected: VersionState) -> CatalogError {
        CatalogError(.stateConflict, "job \"\(job)\" version \(version) is \(state), not \(expected.rawValue)")
    }
}
