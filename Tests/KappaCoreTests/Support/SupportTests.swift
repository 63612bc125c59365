import Foundation
import Synchronization
import Testing
@testable import KappaCore

@Suite struct Murmur2Tests {
    // Kafka's own vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
    @Test(arguments: [
        ("21", -973_932_308), ("foobar", -790_332_482), ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829), ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
        ("abc", 479_470_107), ("1", -1_993_445_489), ("12", 126_087_238), ("123", -267_702_483), ("1234", -1_614_185_708),
    ])
    func matchesKafka(key: String, hash: Int32) {
        #expect(Murmur2.hash(Array(key.utf8)) == hash)
    }

    @Test func partitionIsPositiveModulo() {
        // toPositive(-973932308) = 1173551340; % 3 = 0, % 7 = 6.
        #expect(Murmur2.partition(forKey: Array("21".utf8), partitions: 3) == 1_173_551_340 % 3)
        #expect(Murmur2.partition(forKey: Array("21".utf8), partitions: 7) == 1_173_551_340 % 7)
    }
}

@Suite struct CRC32CTests {
    /// The CPU's instruction and the portable code agree, for every length, alignment and
    /// continuation (on a CPU without the instruction both sides are the portable code).
    @Test func theInstructionAndThePortableCodeAgree() {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<4099).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes.withUnsafeBytes { all in
            for start in 0..<9 {
                for length in [0, 1, 7, 8, 9, 63, 64, 65, 1000, 4090 - start] {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<start + length])
                    #expect(CRC32C.checksum(slice) == CRC32C.portable(slice), "start \(start) length \(length)")
                    let half = length / 2
                    let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: slice[0..<half]))
                    #expect(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: slice[half...]), continuing: first) == CRC32C.portable(slice))
                }
            }
        }
    }

    @Test func knownVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test func slicedMatchesBytewiseAtEveryAlignment() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for start in 0..<9 {
            let slice = Array(data[start...])
            var c: UInt32 = 0xFFFF_FFFF
            for b in slice { c ^= UInt32(b); for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 } }
            #expect(CRC32C.checksum(slice) == ~c)
        }
    }
}

@Suite struct DurationTextTests {
    @Test(arguments: [("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("2h", 7_200_000), ("7d", 604_800_000), ("1h30m", 5_400_000)] as [(String, Int64)])
    func parses(text: String, ms: Int64) throws {
        #expect(try DurationText.milliseconds(text) == ms)
        #expect(try DurationText.milliseconds(DurationText.format(milliseconds: ms)) == ms)
    }

    @Test(arguments: ["", "5", "m", "5x", "-5s", "1.5s", "5 s"])
    func refuses(text: String) {
        #expect(throws: ValueParseError.self) { try DurationText.milliseconds(text) }
    }

    @Test func errorSaysWhatIsAccepted() {
        #expect(throws: ValueParseError("invalid duration \"soon\": use a number and a unit, e.g. 500ms, 30s, 5m, 2h, 7d")) {
            try DurationText.milliseconds("soon")
        }
    }
}

extension ValueParseError: Equatable {
    public static func == (a: ValueParseError, b: ValueParseError) -> Bool { a.message == b.message }
}

@Suite struct JSONScannerTests {
    @Test func membersKeepTheExactValueText() throws {
        let line = Array(#" {"key": "EUR", "value": {"rate": 1.10, "x": [1, 2e3]} , "timestamp": 17} "#.utf8)
        let members = try JSONScanner.members(of: line)
        #expect(members.map(\.name) == ["key", "value", "timestamp"])
        #expect(String(decoding: line[members[1].range], as: UTF8.self) == #"{"rate": 1.10, "x": [1, 2e3]}"#)
        #expect(try JSONScanner.decodeString(line, members[0].range) == "EUR")
    }

    @Test func decodesEscapes() throws {
        let s = Array(#""a\"b\\c\n\u00e9\ud83d\ude00""#.utf8)
        #expect(try JSONScanner.decodeString(s, 0..<s.count) == "a\"b\\c\né😀")
        #expect(JSONScanner.quote("a\"b\\c\n\u{1}é") == #""a\"b\\c\n\u0001é""#)
    }

    @Test(arguments: ["{}", "[]", "0", "-1.5e+3", "\"x\"", "true", "null", #"{"a":[{"b":null}]}"#, " 1 "])
    func valid(text: String) { #expect(JSONScanner.isValid(Array(text.utf8))) }

    @Test(arguments: ["", "{", "01", "1.", "tru", "[1,]", #"{"a" 1}"#, "\"\u{1}\"", "1 2", "{'a':1}", "NaN"])
    func invalid(text: String) { #expect(!JSONScanner.isValid(Array(text.utf8))) }

    @Test func invalidUTF8IsRefused() {
        #expect(!JSONScanner.isValid([0x22, 0xC3, 0x28, 0x22]))
        #expect(JSONScanner.isValid([0x22, 0xC3, 0xA9, 0x22]))
    }

    @Test func errorsGiveTheColumn() {
        #expect(throws: JSONScanner.SyntaxError.self) { try JSONScanner.members(of: Array(#"{"a": 1,}"#.utf8)) }
        do {
            _ = try JSONScanner.members(of: Array(#"{"a": tru}"#.utf8))
        } catch let error as JSONScanner.SyntaxError {
            #expect(error.description == "invalid literal at column 7")
        } catch {
            Issue.record(error)
        }
    }
}

@Suite struct EventLoggerTests {
    @Test func textAndJSONLines() throws {
        let lines = Mutex<[String]>([])
        EventLogger(format: .text) { l in lines.withLock { $0.append(l) } }.log(.info, "caught up", ["job": "btc", "reason": "first version"])
        EventLogger(format: .json) { l in lines.withLock { $0.append(l) } }.log(.error, "failed", ["error": "a \"quoted\" word"])
        let got = lines.withLock { $0 }
        #expect(got[0].hasSuffix(" info caught up job=btc reason=\"first version\""))
        let object = try JSONSerialization.jsonObject(with: Data(got[1].utf8)) as! [String: String]
        #expect(object["level"] == "error" && object["event"] == "failed" && object["error"] == "a \"quoted\" word")
        #expect(object["time"]?.count == 23)
    }

    /// A job-controlled value in a text line (JobHost's stderr): no raw control character.
    @Test func controlCharactersInTextLinesAreEscaped() {
        let lines = Mutex<[String]>([])
        EventLogger(format: .text) { l in lines.withLock { $0.append(l) } }.log(.error, "failed", ["error": "\u{1b}[2J\nforged", "more": "x \u{1b}[2J"])
        let got = lines.withLock { $0 }
        #expect(got.count == 1 && !got[0].contains("\u{1b}") && !got[0].contains("\n"))
        #expect(got[0].hasSuffix(" error failed error=\\e[2J\\nforged more=\"x \\u001b[2J\""))
    }
}

@Suite struct RedactionTests {
    @Test func passwordsAreHidden() {
        #expect(Redaction.url("postgres://kappa:s3cret@db:5432/x") == "postgres://kappa:***@db:5432/x")
        #expect(Redaction.url("postgres://db/x?user=a&password=p&sslmode=require") == "postgres://db/x?user=a&password=***&sslmode=require")
        #expect(Redaction.url("postgres://kappa@db/x") == "postgres://kappa@db/x")
        #expect(Redaction.url("kafka://broker:9092") == "kafka://broker:9092")
    }

    /// Every form libpq accepts, wherever a message quotes it: no password survives.
    @Test func everyFormLibpqAcceptsIsRedacted() {
        let cases: [(String, String)] = [
            ("host=db password=s3cret dbname=x", "host=db password=*** dbname=x"),
            ("host=db password = 's3 cr\\'et' dbname=x", "host=db password=*** dbname=x"),
            ("user=k sslpassword=s3cret", "user=k sslpassword=***"),
            ("postgresql://kappa:p@ss:w@rd@db/x", "postgresql://kappa:***@db/x"),
            ("postgres://db/x?%70assword=s3cret&sslmode=require", "postgres://db/x?%70assword=***&sslmode=require"),
            ("postgres://db/x?PASSWORD=s3cret", "postgres://db/x?PASSWORD=***"),
            ("connect postgres://k:s3cret@db/x failed: bad", "connect postgres://k:***@db/x failed: bad"),
            ("PGPASSWORD=s3cret psql", "PGPASSWORD=*** psql"),
        ]
        for (given, shown) in cases {
            #expect(Redaction.url(given) == shown)
            #expect(!Redaction.url(given).contains("s3"))
        }
        // A message quoting a piece of the URL out of context (libpq on a malformed URI).
        let url = "postgres://k:s3%zzcret@db/x"
        #expect(!Redaction.values(Redaction.secrets(in: url), in: "invalid percent-encoded token: \"s3%zzcret\"").contains("s3"))
    }

    @Test func theSchemaParameterIsKappas() {
        #expect(Backends.splitSchema("postgres://h/db?schema=ops&sslmode=require") == ("postgres://h/db?sslmode=require", "ops"))
        #expect(Backends.splitSchema("postgres://h/db?schema=ops") == ("postgres://h/db", "ops"))
        #expect(Backends.splitSchema("postgres://h/db") == ("postgres://h/db", nil))
    }

    @Test func aCatalogURLThisBuildCannotUseIsExplained() throws {
        let dir = try TempDirectory()
        let state = try StateDirectory(path: dir.path + "/s")
        #expect(throws: CatalogError.self) { _ = try Backends.store(state: state, catalog: "mysql://x") }
        #if !Postgres
        do {
            _ = try Backends.store(state: state, catalog: "postgres://kappa:pw@db/x")
            Issue.record("a build without the Postgres trait accepted a PostgreSQL catalog")
        } catch let error as CatalogError {
            #expect(error.message == "this build has no PostgreSQL support: build with `swift build --traits Postgres` to use postgres://kappa:***@db/x")
        }
        #endif
    }
}

/// Two processes opening one fresh state directory at once (`kappactl archive run --follow` and
/// `kappactl produce`, both given `--state`): the second sees only the first's temporary marker
/// file, and must take the directory for Kappa's, not refuse it as someone else's.
@Suite struct StateDirectoryRaceTests {
    @Test func aMarkerBeingWrittenByAnotherProcessIsNoStrangersDirectory() throws {
        let dir = try TempDirectory()
        let path = dir.path + "/state"
        try FileSystem.makeDirectories(path)
        let tmp = try FileDescriptor(path: path + "/\(StateDirectory.markerName).tmp-99999-1", flags: O_WRONLY | O_CREAT | O_TRUNC)
        _ = tmp
        let state = try StateDirectory(path: path)
        #expect(FileSystem.exists(state.path + "/\(StateDirectory.markerName)"))
    }
}
