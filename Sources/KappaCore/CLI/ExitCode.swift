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

    /// The exit code for an error that ended a command.
    public static func of(_ error: any Error) -> ExitCode {
        switch error {
        case is UsageError: return .usage
        case let e as LogError where e.code == .topicNotFound || e.code == .partitionNotFound: return .notFound
        default: return .failure
        }
    }
}
