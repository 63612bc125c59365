/// Declarative commands for Kappa's executables: the parser and the help text come from the
/// same declarations (the shape of swift-argument-parser, without the package).
public struct Command: Sendable {
    public var name: String
    public var abstract: String
    public var discussion: String?
    public var options: [Option]
    public var arguments: [Argument]
    public var subcommands: [Command]
    /// The action of a leaf command; nil for a group, which needs a subcommand.
    public var run: (@Sendable (ParsedArguments) async throws -> Void)?

    public init(_ name: String, abstract: String, discussion: String? = nil, options: [Option] = [],
                arguments: [Argument] = [], subcommands: [Command] = [],
                run: (@Sendable (ParsedArguments) async throws -> Void)? = nil) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.options = options
        self.arguments = arguments
        self.subcommands = subcommands
        self.run = run
    }
}

/// A `--long` option (with an optional `-s` short form): a flag, or one that takes a value.
public struct Option: Sendable {
    public var long: String
    public var short: Character?
    /// The value's placeholder (`N`, `DIR`); nil for a flag.
    public var value: String?
    public var help: String
    public var required: Bool
    /// May be given several times (values accumulate).
    public var repeated: Bool
    /// Applies to the subcommands too (a global option); false for one that belongs to its own
    /// command only, such as the top level's `--version`.
    public var inherited: Bool = true

    public static func flag(_ long: String, short: Character? = nil, help: String, inherited: Bool = true) -> Option {
        Option(long: long, short: short, value: nil, help: help, required: false, repeated: false, inherited: inherited)
    }

    public static func value(_ long: String, short: Character? = nil, _ value: String, help: String,
                             required: Bool = false, repeated: Bool = false) -> Option {
        Option(long: long, short: short, value: value, help: help, required: required, repeated: repeated)
    }
}

/// A positional argument.
public struct Argument: Sendable {
    public var name: String
    public var help: String
    public var optional: Bool

    public init(_ name: String, help: String, optional: Bool = false) {
        self.name = name
        self.help = help
        self.optional = optional
    }
}

/// Wrong usage: an unknown command or option, a missing or malformed value. Exit code 2.
public struct UsageError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// The help of the command concerned, printed after the message.
    public var usage: String

    public init(_ message: String, usage: String = "") {
        self.message = message
        self.usage = usage
    }

    public var description: String { message }
}

/// The result of parsing: option values and positional arguments, with typed accessors that
/// turn malformed values into `UsageError`s naming the option.
public struct ParsedArguments: Sendable {
    /// The command names from the root to the command that runs (`["kappactl", "topic", "create"]`).
    public var path: [String]
    var values: [String: [String]]
    var flags: Set<String>
    var positional: [String: String]
    var usage: String

    /// Whether a flag was given.
    public func flag(_ long: String) -> Bool { flags.contains(long) }

    /// The last value of an option, if given.
    public func string(_ long: String) -> String? { values[long]?.last }

    /// Every value of a repeated option, in order.
    public func strings(_ long: String) -> [String] { values[long] ?? [] }

    /// A positional argument's value.
    public func argument(_ name: String) -> String? { positional[name] }

    /// An integer option, checked against `range`.
    public func int(_ long: String, in range: ClosedRange<Int64> = Int64.min...Int64.max) throws -> Int64? {
        guard let text = string(long) else { return nil }
        guard let n = Int64(text.replacingUnderscores()) else {
            throw UsageError("--\(long): \"\(text)\" is not a whole number", usage: usage)
        }
        guard range.contains(n) else {
            throw UsageError("--\(long): \(n) is out of range (\(range.lowerBound)…\(range.upperBound))", usage: usage)
        }
        return n
    }

    /// A duration option (`500ms`, `30s`, `5m`, `2h`, `7d`), in milliseconds.
    public func duration(_ long: String) throws -> Int64? {
        guard let text = string(long) else { return nil }
        do {
            return try DurationText.milliseconds(text)
        } catch let error as ValueParseError {
            throw UsageError("--\(long): \(error.message)", usage: usage)
        }
    }

    /// A choice among fixed words.
    public func choice(_ long: String, _ allowed: [String], default fallback: String) throws -> String {
        guard let text = string(long) else { return fallback }
        guard allowed.contains(text) else {
            throw UsageError("--\(long): \"\(text)\" is not one of \(allowed.joined(separator: ", "))", usage: usage)
        }
        return text
    }

    /// A usage error about this command, with its help attached.
    public func usageError(_ message: String) -> UsageError { UsageError(message, usage: usage) }
}

extension String {
    fileprivate func replacingUnderscores() -> String { split(separator: "_").joined() }
}
