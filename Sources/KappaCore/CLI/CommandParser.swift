/// What the command line asked for.
public enum ParsedCommand: Sendable {
    /// Run `command` with `arguments`.
    case run(Command, ParsedArguments)
    /// Print help text and exit 0.
    case help(String)
}

extension Command {
    /// Parses `arguments` (without the program name) against this command tree. Options of a
    /// command apply to its subcommands too, so global options may come anywhere.
    /// - Throws: `UsageError` with the concerned command's help.
    public func parse(_ arguments: [String]) throws -> ParsedCommand {
        var chain: [Command] = [self]
        var values: [String: [String]] = [:]
        var flags: Set<String> = []
        var positionals: [String] = []
        var wantsHelp = false
        var i = 0
        var onlyPositional = false
        func current() -> Command { chain.last! }
        // The innermost command first: its own option shadows an inherited one of the same name
        // (`retire --version N` against the top level's `--version`).
        func available() -> [Option] { Self.options(of: chain) }
        func usage() -> String { Self.help(chain) }

        while i < arguments.count {
            let token = arguments[i]
            i += 1
            let isNegativeNumber = token.count > 1 && Double(token) != nil
            if onlyPositional || token == "-" || !token.hasPrefix("-") || isNegativeNumber {
                if !onlyPositional, positionals.isEmpty, !current().subcommands.isEmpty {
                    if token == "help" && chain.count == 1 {
                        wantsHelp = true
                        continue
                    }
                    guard let sub = current().subcommands.first(where: { $0.name == token }) else {
                        if wantsHelp { break }
                        throw UsageError("unknown command '\(token)' for '\(chain.map(\.name).joined(separator: " "))'", usage: usage())
                    }
                    chain.append(sub)
                    continue
                }
                positionals.append(token)
                continue
            }
            if token == "--" { onlyPositional = true; continue }
            if token == "--help" || token == "-h" { wantsHelp = true; continue }
            let option: Option?
            var inline: String?
            if token.hasPrefix("--") {
                let body = token.dropFirst(2)
                let name: Substring
                if let eq = body.firstIndex(of: "=") {
                    name = body[..<eq]
                    inline = String(body[body.index(after: eq)...])
                } else {
                    name = body
                }
                option = available().first { $0.long == name }
            } else {
                let letter = token.dropFirst()
                option = letter.count == 1 ? available().first { $0.short == letter.first } : nil
            }
            guard let option else {
                if wantsHelp { continue }
                throw UsageError("unknown option '\(token)' for '\(chain.map(\.name).joined(separator: " "))'", usage: usage())
            }
            if option.value == nil {
                if inline != nil { throw UsageError("--\(option.long) takes no value", usage: usage()) }
                flags.insert(option.long)
                continue
            }
            let value: String
            if let inline {
                value = inline
            } else {
                guard i < arguments.count else {
                    if wantsHelp { break }
                    throw UsageError("--\(option.long) needs a value (\(option.value!))", usage: usage())
                }
                value = arguments[i]
                i += 1
            }
            if values[option.long] != nil && !option.repeated {
                throw UsageError("--\(option.long) was given more than once", usage: usage())
            }
            values[option.long, default: []].append(value)
        }

        let command = current()
        if wantsHelp { return .help(usage()) }
        guard command.run != nil else {
            throw UsageError("'\(chain.map(\.name).joined(separator: " "))' needs a command", usage: usage())
        }
        for option in Self.options(of: chain) where option.required && values[option.long] == nil {
            throw UsageError("missing --\(option.long) \(option.value ?? "")", usage: usage())
        }
        var named: [String: String] = [:]
        for (n, argument) in command.arguments.enumerated() {
            if n < positionals.count {
                named[argument.name] = positionals[n]
            } else if !argument.optional {
                throw UsageError("missing <\(argument.name)>", usage: usage())
            }
        }
        if positionals.count > command.arguments.count {
            throw UsageError("unexpected argument '\(positionals[command.arguments.count])'", usage: usage())
        }
        return .run(command, ParsedArguments(path: chain.map(\.name), values: values, flags: flags, positional: named, usage: usage()))
    }

    /// The options the last command of `chain` takes: its own first, then those its ancestors
    /// pass down, nearest first, less any a nearer command shadows by name.
    static func options(of chain: [Command]) -> [Option] {
        var seen: Set<String> = []
        var out: [Option] = []
        for (depth, command) in chain.reversed().enumerated() {
            for option in command.options where (depth == 0 || option.inherited) && seen.insert(option.long).inserted {
                out.append(option)
            }
        }
        return out
    }

    /// Help text for the last command of `chain`, listing its own and inherited options.
    public static func help(_ chain: [Command]) -> String {
        let command = chain.last!
        let path = chain.map(\.name).joined(separator: " ")
        var usage = "USAGE: \(path)"
        if !command.subcommands.isEmpty { usage += " <command>" }
        for argument in command.arguments { usage += argument.optional ? " [<\(argument.name)>]" : " <\(argument.name)>" }
        for option in command.options where option.required { usage += " --\(option.long) <\(option.value!)>" }
        if options(of: chain).contains(where: { !$0.required }) { usage += " [options]" }
        var out = "\(command.abstract)\n\n\(usage)\n"
        if let discussion = command.discussion { out += "\n\(discussion)\n" }
        func section(_ title: String, _ rows: [(String, String)]) {
            guard !rows.isEmpty else { return }
            let width = min(32, rows.map(\.0.count).max()! + 2)
            out += "\n\(title):\n"
            for (left, right) in rows {
                let pad = left.count >= width ? "\n" + String(repeating: " ", count: width + 2) : String(repeating: " ", count: width - left.count)
                out += "  \(left)\(pad)\(right)\n"
            }
        }
        section("COMMANDS", command.subcommands.map { ($0.name, $0.abstract) })
        section("ARGUMENTS", command.arguments.map { ("<\($0.name)>", $0.help) })
        let own = command.options.map(optionRow)
        let inherited = options(of: chain).dropFirst(command.options.count).map(optionRow)
        section("OPTIONS", own + [("-h, --help", "Show this help.")])
        section("GLOBAL OPTIONS", inherited)
        if !command.subcommands.isEmpty {
            out += "\nRun '\(path) <command> --help' for a command's options.\n"
        }
        return out
    }

    private static func optionRow(_ option: Option) -> (String, String) {
        var left = option.short.map { "-\($0), " } ?? ""
        left += "--\(option.long)"
        if let value = option.value { left += " <\(value)>" }
        return (left, option.help + (option.repeated ? " (repeatable)" : ""))
    }
}
