import KappaCore

enum GlobalOptions {
    static let state = Option.value("state", "DIR", help: "State directory (default: $KAPPA_STATE, else ./.kappa).")
    static let output = Option.value("output", short: "o", "FORMAT", help: "Output format: text or json (default: text).")

    /// Opens the state directory the arguments name.
    static func stateDirectory(_ args: ParsedArguments) throws -> StateDirectory {
        try StateDirectory(path: StateDirectory.resolve(flag: args.string("state")))
    }

    /// The embedded log in the state directory.
    static func log(_ args: ParsedArguments) throws -> SegmentLog {
        try SegmentLog(state: stateDirectory(args))
    }

    /// True for `--output json`.
    static func json(_ args: ParsedArguments) throws -> Bool {
        try args.choice("output", ["text", "json"], default: "text") == "json"
    }
}
