import Foundation
import Testing
@testable import KappaCore

/// Secrets from files and the environment, so that they need not be in argv.
@Suite struct SecretOptionsTests {
    static let command = Command("tool", abstract: "test", options: [
        .value("catalog", "URL", help: ""), SecretOptions.catalogFile,
        .value("kafka-setting", short: "X", "KEY=VALUE", help: "", repeated: true), SecretOptions.kafkaConfig,
        .value("http-token", "TOKEN", help: ""), SecretOptions.httpTokenFile,
    ], run: { _ in })

    static func parse(_ arguments: [String]) throws -> ParsedArguments {
        guard case .run(_, let parsed) = try command.parse(arguments) else { throw UsageError("help") }
        return parsed
    }

    @Test func filesComeBeforeTheEnvironmentAndArgvIsNotNeeded() throws {
        let dir = try TempDirectory()
        try "postgres://k:s3cret@db/x\n".write(toFile: dir.path + "/catalog", atomically: true, encoding: .utf8)
        try "token-from-a-file-1234\r\n".write(toFile: dir.path + "/token", atomically: true, encoding: .utf8)
        try "# SASL\nsecurity.protocol = SASL_SSL\n\nsasl.password=pw=with=equals\n".write(toFile: dir.path + "/kafka", atomically: true, encoding: .utf8)
        let args = try Self.parse(["--catalog-file", dir.path + "/catalog", "--http-token-file", dir.path + "/token",
                                   "--kafka-config", dir.path + "/kafka", "-X", "acks=1"])
        #expect(try SecretOptions.catalog(args, environment: ["KAPPA_CATALOG": "postgres://other"]) == "postgres://k:s3cret@db/x")
        #expect(try SecretOptions.httpToken(args, environment: [:]) == "token-from-a-file-1234")
        #expect(try SecretOptions.kafkaSettings(args, environment: [:]) == ["security.protocol=SASL_SSL", "sasl.password=pw=with=equals", "acks=1"])

        let none = try Self.parse([])
        let environment = ["KAPPA_CATALOG_FILE": dir.path + "/catalog", "KAPPA_HTTP_TOKEN": "from-the-environment", "KAPPA_KAFKA_CONFIG": dir.path + "/kafka"]
        #expect(try SecretOptions.catalog(none, environment: environment) == "postgres://k:s3cret@db/x")
        #expect(try SecretOptions.httpToken(none, environment: environment) == "from-the-environment")
        #expect(try SecretOptions.kafkaSettings(none, environment: environment).count == 2)
        #expect(try SecretOptions.catalog(none, environment: [:]) == nil)
        #expect(try SecretOptions.catalog(Self.parse(["--catalog", "postgres://a"]), environment: environment) == "postgres://a")
    }

    @Test func badFilesAreNamedAndTheirTextNeverQuoted() throws {
        let dir = try TempDirectory()
        try "\n".write(toFile: dir.path + "/empty", atomically: true, encoding: .utf8)
        try "ok=1\nsasl.password hunter2\n".write(toFile: dir.path + "/kafka", atomically: true, encoding: .utf8)
        func message(_ arguments: [String], _ read: (ParsedArguments) throws -> Any?) throws -> String? {
            let args = try Self.parse(arguments)
            do { _ = try read(args); return nil } catch let error as UsageError { return error.message }
        }
        let env: [String: String] = [:]
        #expect(try message(["--catalog-file", dir.path + "/missing"]) { try SecretOptions.catalog($0, environment: env) }
                == "--catalog-file \(dir.path)/missing: no such file")
        #expect(try message(["--http-token-file", dir.path + "/empty"]) { try SecretOptions.httpToken($0, environment: env) }
                == "--http-token-file \(dir.path)/empty: the file is empty")
        #expect(try message(["--catalog-file", dir.path]) { try SecretOptions.catalog($0, environment: env) }
                == "--catalog-file \(dir.path): is a directory")
        #expect(try message(["--kafka-config", dir.path + "/kafka"]) { try SecretOptions.kafkaSettings($0, environment: env) }
                == "--kafka-config \(dir.path)/kafka line 2: use key=value")
        #expect(try message(["--catalog", "postgres://a", "--catalog-file", dir.path + "/empty"]) { try SecretOptions.catalog($0, environment: env) }
                == "give --catalog or --catalog-file, not both")
        #expect(try message([]) { try SecretOptions.catalog($0, environment: ["KAPPA_CATALOG_FILE": dir.path + "/missing"]) }
                == "KAPPA_CATALOG_FILE \(dir.path)/missing: no such file")
    }
}
