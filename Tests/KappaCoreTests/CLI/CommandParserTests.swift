import Testing
@testable import KappaCore

/// How options of nested commands meet: a command's own option shadows an inherited one.
@Suite struct CommandParserTests {
    static let retire = Command("retire", abstract: "retire", options: [.value("version", "N", help: "The version.", required: true)],
                                arguments: [Argument("job", help: "")], run: { _ in })
    static let list = Command("list", abstract: "list", run: { _ in })
    static let root = Command("tool", abstract: "test", options: [
        .value("state", "DIR", help: "State."),
        .flag("version", help: "Print the version.", inherited: false),
    ], subcommands: [retire, list])

    static func parse(_ arguments: [String]) throws -> ParsedArguments {
        guard case .run(_, let parsed) = try root.parse(arguments) else { throw UsageError("help") }
        return parsed
    }

    @Test func aCommandsOwnOptionWinsOverTheTopLevelsOfTheSameName() throws {
        let parsed = try Self.parse(["--state", "/s", "retire", "btc", "--version", "2"])
        #expect(parsed.string("version") == "2")
        #expect(parsed.string("state") == "/s")
        #expect(!parsed.flag("version"))
        // The top level's --version is its own: not a global option of the others.
        #expect(throws: UsageError.self) { try Self.parse(["list", "--version"]) }
        guard case .help(let help) = try Self.root.parse(["retire", "--help"]) else { Issue.record("no help"); return }
        #expect(help.contains("--version <N>"))
        #expect(!help.contains("Print the version."))
        #expect(help.contains("--state <DIR>"))
    }
}
