/// The exit codes of `kappactl` and `JobHost`, documented in the README.
public enum ExitCode: Int32, Sendable {
    case ok = 0
    /// Any error not listed below.
    case failure = 1
    /// Wrong usage: unknown command or option, malformed value.
    case usage = 2
    /// A topic, partition, job or version that does not exist.
    case notFound = 3
    /// Refused by state (e.g. promoting a version that has not caught up).
    case refused = 4
    /// A wait ran out of time.
    case timeout = 5
    /// The version waited for failed (`wait`, `deploy --wait`).
    case versionFailed = 6

    /// The exit code for an error that ended a command.
    public static func of(_ error: any Error) -> ExitCode {
        switch error {
        case is UsageError: return .usage
        case let e as LogError where e.code == .topicNotFound || e.code == .partitionNotFound: return .notFound
        case let e as CatalogError:
            switch e.code {
            case .jobNotFound, .versionNotFound: return .notFound
            case .stateConflict, .checkFailed, .versionNotAbove: return .refused
            default: return .failure
            }
        case let e as LifecycleRefusal: return e.code == .notFound ? .notFound : .refused
        case is WaitTimeout: return .timeout
        case is VersionFailedError: return .versionFailed
        case let e as ProduceInterrupted: return of(e.error)
        default: return .failure
        }
    }
}

/// A wait (`deploy --wait --timeout`) ran out of time.
public struct WaitTimeout: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
