import Testing
@testable import KappaCore

/// `deadLetter.maxFraction`: the share of the records read a version may dead-letter.
@Suite struct DeadLetterManifestTests {
    static func manifest(_ onBadRecord: String, _ deadLetter: String) -> String {
        ManifestTests.with("onBadRecord", "\"\(onBadRecord)\"").replacingOccurrences(of: "\"onBadRecord\"", with: "\"deadLetter\": \(deadLetter), \"onBadRecord\"")
    }

    @Test func theLimitIsReadAndDefaultsToOnePercent() throws {
        #expect(try ManifestParser.parse(ManifestTests.with("onBadRecord", #""deadLetter""#)).deadLetterMaxFraction == 0.01)
        #expect(try ManifestParser.parse(Self.manifest("deadLetter", #"{"maxFraction": 0.25}"#)).deadLetterMaxFraction == 0.25)
        #expect(try ManifestParser.parse(Self.manifest("deadLetter", #"{"maxFraction": 1}"#)).deadLetterMaxFraction == 1)
        #expect(try ManifestParser.parse(Self.manifest("deadLetter", #"{}"#)).deadLetterMaxFraction == 0.01)
    }

    @Test(arguments: [
        ("deadLetter", #"{"maxFraction": 1.5}"#, "deadLetter.maxFraction: must be a number from 0 to 1 (the share of the records read), got 1.5"),
        ("deadLetter", #"{"maxFraction": -0.1}"#, "deadLetter.maxFraction: must be a number from 0 to 1 (the share of the records read), got -0.1"),
        ("deadLetter", #"{"maxFraction": "1%"}"#, "deadLetter.maxFraction: must be a number from 0 to 1 (the share of the records read), got a string"),
        ("deadLetter", #"{"max": 0.1}"#, "deadLetter.max: unknown key (expected one of: maxFraction)"),
        ("deadLetter", #"0.1"#, "deadLetter: must be an object, got a number"),
        ("fail", #"{"maxFraction": 0.1}"#, #"deadLetter: applies only with onBadRecord "deadLetter""#),
    ])
    func badLimitsNameTheKey(policy: String, deadLetter: String, message: String) {
        #expect(throws: ManifestError(file: nil, path: String(message.prefix { $0 != ":" }), message: String(message.drop { $0 != ":" }.dropFirst(2)))) {
            _ = try ManifestParser.parse(Self.manifest(policy, deadLetter))
        }
    }
}
