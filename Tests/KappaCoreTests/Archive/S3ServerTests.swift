#if S3
import Foundation
import Testing
@testable import KappaCore

/// The client against a real S3 server: SeaweedFS, started by `scripts/with-seaweedfs` (which
/// sets KAPPA_TEST_S3 and the credentials). Each test works under a prefix of its own.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["KAPPA_TEST_S3"] != nil,
                "needs the S3 server scripts/with-seaweedfs starts (KAPPA_TEST_S3 is not set)"))
struct S3ServerTests {
    /// A client for a fresh prefix below KAPPA_TEST_S3.
    static func client(_ name: String, credentials: S3Credentials? = nil,
                       _ tune: (inout S3Client.Configuration) -> Void = { _ in }) throws -> S3Client {
        let environment = ProcessInfo.processInfo.environment
        var location = try S3Location.parse(try #require(environment["KAPPA_TEST_S3"]), environment: environment)
        location.prefix = location.fullKey("\(name)-\(UUID().uuidString.prefix(8))")
        var configuration = S3Client.Configuration()
        configuration.connectTimeout = .seconds(5)
        configuration.lowSpeedTime = .seconds(10)
        tune(&configuration)
        return S3Client(location: location, credentials: try credentials ?? S3Credentials.environment(environment), configuration: configuration)
    }

    /// Bytes no text codec would pass through unchanged: every byte value, then a pseudo-random tail.
    static func binary(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
        var out = [UInt8](); out.reserveCapacity(count)
        for b in 0..<min(256, count) { out.append(UInt8(b)) }
        var x = seed
        while out.count < count {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            withUnsafeBytes(of: x) { out.append(contentsOf: $0.prefix(count - out.count)) }
        }
        return out
    }

    @Test func binaryBytesAndA20MBObjectComeBackExactly() async throws {
        let client = try Self.client("roundtrip")
        let small = Self.binary(4096)
        let etag = try await client.put("bin/small", small)
        #expect(try await client.get("bin/small") == small)
        let info = try #require(try await client.head("bin/small"))
        #expect(info.size == 4096 && info.etag == etag && etag != nil)

        let big = Self.binary(20 << 20, seed: 42)
        try await client.put("bin/big", big)
        let back = try await client.get("bin/big")
        #expect(back.count == big.count)
        #expect(back == big)
        #expect(try await client.head("bin/big")?.size == Int64(20 << 20))

        try await client.put("bin/empty", [])
        #expect(try await client.get("bin/empty") == [])
        #expect(try await client.head("bin/empty")?.size == 0)
    }

    @Test func keysWithSpacesUnicodeAndURLCharactersRoundTrip() async throws {
        let client = try Self.client("keys")
        let keys = ["a b/c+d", "ü/ñ.bin", "q?x=1&y=2#frag", "pct%20not-a-space", "tilde~under_score"]
        for (i, key) in keys.enumerated() { try await client.put(key, [UInt8(i)]) }
        for (i, key) in keys.enumerated() { #expect(try await client.get(key) == [UInt8(i)], "\(key)") }
        #expect(try await client.list().map(\.key) == keys.sorted())

        // Two spellings Swift's String calls equal are two keys to S3: neither overwrites the other.
        let composed = "n/caf\u{E9}", decomposed = "n/cafe\u{301}"
        try await client.put(composed, [1])
        try await client.put(decomposed, [2])
        #expect(try await client.get(composed) == [1])
        #expect(try await client.get(decomposed) == [2])
        let listed = try await client.list(prefix: "n/").map { Array($0.key.utf8) }
        #expect(Set(listed) == [Array(composed.utf8), Array(decomposed.utf8)])
    }

    @Test func aRangeGetGivesExactlyThoseBytes() async throws {
        let client = try Self.client("range")
        let data = Self.binary(100_000)
        try await client.put("obj", data)
        #expect(try await client.get("obj", range: 0..<1) == [0])
        #expect(try await client.get("obj", range: 1000..<1256) == Array(data[1000..<1256]))
        #expect(try await client.get("obj", range: 99_990..<99_999) == Array(data[99_990..<99_999]))
        // Past the end: up to the end. Empty: nothing, and no request.
        #expect(try await client.get("obj", range: 99_990..<200_000) == Array(data[99_990...]))
        #expect(try await client.get("obj", range: 5..<5) == [])
        let beyond = await #expect(throws: S3Error.self) { try await client.get("obj", range: 100_000..<100_010) }
        #expect(beyond?.code == .invalidRange && beyond?.status == 416, "\(beyond?.message ?? "")")
        let missing = await #expect(throws: S3Error.self) { try await client.get("nothing", range: 0..<10) }
        #expect(missing?.code == .notFound)
    }

    @Test func aListingOfMoreThan1000KeysFollowsContinuationTokens() async throws {
        let client = try Self.client("list")
        let count = 1_005
        let keys = (0..<count).map { String(format: "seg/%05d", $0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for slice in stride(from: 0, to: count, by: 126) {
                group.addTask { for key in keys[slice..<min(count, slice + 126)] { try await client.put(key, Array(key.utf8)) } }
            }
            try await group.waitForAll()
        }
        try await client.put("other/x", [1])
        let listed = try await client.list(prefix: "seg/")
        #expect(listed.count == count)
        #expect(listed.map(\.key) == keys)
        #expect(listed.allSatisfy { $0.size == 9 && $0.etag != nil })
        #expect(try await client.list().count == count + 1)
        #expect(try await client.list(prefix: "none/").isEmpty)

        // A smaller page: the same keys, more requests.
        let paged = try Self.client("list") { $0.listPageSize = 7 }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<30 { group.addTask { try await paged.put("k/\(String(format: "%02d", i))", [UInt8(i)]) } }
            try await group.waitForAll()
        }
        #expect(try await paged.list(prefix: "k/").map(\.key) == (0..<30).map { "k/" + String(format: "%02d", $0) })
    }

    @Test func aMissingKeyIsNilForHeadAndNotFoundForGet() async throws {
        let client = try Self.client("missing")
        #expect(try await client.head("no/such/key") == nil)
        let error = await #expect(throws: S3Error.self) { try await client.get("no/such/key") }
        #expect(error?.code == .notFound && error?.status == 404 && error?.s3Code == "NoSuchKey")
        #expect(error?.message.contains("\(client.location.display(key: "no/such/key"))") == true, "\(error?.message ?? "")")
        #expect(error?.key == client.location.fullKey("no/such/key"))
    }

    @Test func deleteRemovesAndDeletingTwiceIsFine() async throws {
        let client = try Self.client("delete")
        try await client.put("gone", [1, 2, 3])
        try await client.delete("gone")
        #expect(try await client.head("gone") == nil)
        try await client.delete("gone")
        #expect(try await client.list().isEmpty)
    }

    /// The identity in a shared credentials file (no AWS_ variables at all) signs requests the
    /// server accepts, as `--archive s3://…` takes it.
    @Test func aSharedCredentialsFileIsEnoughToReachTheStore() async throws {
        let real = try S3Credentials.environment()
        let dir = try TempDirectory()
        try "[other]\naws_access_key_id = NOSUCHKEY\naws_secret_access_key = x\n[kappa]\naws_access_key_id = \(real.accessKeyID)\naws_secret_access_key = \(real.secretAccessKey)\n"
            .write(toFile: dir.path + "/credentials", atomically: true, encoding: .utf8)
        let test = try #require(ProcessInfo.processInfo.environment["KAPPA_TEST_S3"])
        let parts = test.split(separator: "?", maxSplits: 1)
        let url = "\(parts[0])/file-\(UUID().uuidString.prefix(8))" + (parts.count > 1 ? "?\(parts[1])" : "")
        let archive = try Backends.archive(url, environment: ["AWS_SHARED_CREDENTIALS_FILE": dir.path + "/credentials", "AWS_PROFILE": "kappa"])
        try await BlockingExecutor.shared.run {
            try archive.store(topic: "t", partition: 0, bytes: ArchiveStorageContractTests.frames(base: 0, count: 5), base: 0, end: 5)
        }
        #expect(try ArchiveStorageContractTests.readAll(archive).count == 5)
    }

    @Test func aWrongSecretIsRefusedAndTheErrorDoesNotHoldIt() async throws {
        let real = try S3Credentials.environment()
        let wrong = "Wrong+Secret/\(UUID().uuidString)"
        let client = try Self.client("denied", credentials: S3Credentials(accessKeyID: real.accessKeyID, secretAccessKey: wrong))
        for attempt in 0..<2 {
            let error = await #expect(throws: S3Error.self) {
                if attempt == 0 { try await client.put("k", [1]) } else { _ = try await client.list() }
            }
            #expect(error?.code == .accessDenied && error?.status == 403 && error?.isRetryable == false)
            #expect(error?.s3Code == "SignatureDoesNotMatch", "\(error?.message ?? "")")
            #expect(error?.message.contains("AWS_SECRET_ACCESS_KEY") == true)
            #expect(error?.message.contains(wrong) == false)
            #expect(error?.message.contains(real.secretAccessKey) == false)
            #expect("\(String(describing: error))".contains(wrong) == false)
        }
        // An unknown key is refused too (anonymous requests are refused by the server's config).
        let stranger = try Self.client("denied", credentials: S3Credentials(accessKeyID: "NOSUCHKEY", secretAccessKey: wrong))
        let error = await #expect(throws: S3Error.self) { try await stranger.get("k") }
        #expect(error?.code == .accessDenied)
    }

    @Test func conditionalPutsRefuseAStaleWriter() async throws {
        let client = try Self.client("conditional")
        // If-None-Match: * creates once; the second writer is refused and the first one's bytes stay.
        let first = try await client.put("manifest", Array("v1".utf8), condition: .ifAbsent)
        let second = await #expect(throws: S3Error.self) { try await client.put("manifest", Array("v1'".utf8), condition: .ifAbsent) }
        #expect(second?.code == .preconditionFailed && second?.status == 412 && second?.s3Code == "PreconditionFailed")
        #expect(second?.message.contains(client.location.display(key: "manifest")) == true)
        #expect(try await client.get("manifest") == Array("v1".utf8))

        // If-Match: the writer holding the current ETag wins; one holding the old ETag is refused.
        let v2 = try await client.put("manifest", Array("v2".utf8), condition: .ifMatch(try #require(first)))
        #expect(v2 != first)
        let stale = await #expect(throws: S3Error.self) { try await client.put("manifest", Array("stale".utf8), condition: .ifMatch(try #require(first))) }
        #expect(stale?.code == .preconditionFailed)
        #expect(try await client.get("manifest") == Array("v2".utf8))
        #expect(try await client.head("manifest")?.etag == v2)

        // If-Match on a key that does not exist: refused (AWS says 404, SeaweedFS 412), nothing written.
        let absent = await #expect(throws: S3Error.self) { try await client.put("nothing", [1], condition: .ifMatch(try #require(v2))) }
        #expect(absent?.code == .preconditionFailed || absent?.code == .notFound)
        #expect(try await client.head("nothing") == nil)
    }

    @Test func twoWritersRacingIfAbsentLeaveExactlyOneWinner() async throws {
        let client = try Self.client("race")
        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    do {
                        try await client.put("lease", [UInt8(writer)], condition: .ifAbsent)
                        return true
                    } catch let error as S3Error where error.code == .preconditionFailed {
                        return false
                    }
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1, "\(outcomes)")
    }
}
#endif
