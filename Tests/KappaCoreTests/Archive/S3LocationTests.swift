#if S3
import Foundation
import Testing
@testable import KappaCore

/// The `s3://` location, the credentials and their redaction, and S3's XML: no server needed.
@Suite struct S3LocationTests {
    @Test func theQueryGivesEndpointAndRegionAndThePrefixLosesItsTrailingSlash() throws {
        let location = try S3Location.parse("s3://kappa-archive/prod/logs/?endpoint=http://127.0.0.1:8333/&region=eu-west-1", environment: [:])
        #expect(location == S3Location(bucket: "kappa-archive", prefix: "prod/logs", endpoint: "http://127.0.0.1:8333", region: "eu-west-1"))
        #expect(location.fullKey("bpi/0/segment") == "prod/logs/bpi/0/segment")
        #expect(location.display(key: "m") == "s3://kappa-archive/prod/logs/m")
    }

    @Test func theEnvironmentFillsInWhatTheURLLeavesOut() throws {
        let env = ["AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "ap-south-1"]
        let location = try S3Location.parse("s3://b", environment: env)
        #expect(location == S3Location(bucket: "b", prefix: "", endpoint: "http://minio:9000", region: "ap-south-1"))
        #expect(location.fullKey("k") == "k")
        // The URL wins over the environment; the S3-specific variable over the general one.
        let s3 = try S3Location.parse("s3://b/p?region=us-west-2", environment: env.merging(["AWS_ENDPOINT_URL_S3": "https://s3.local"]) { $1 })
        #expect(s3.endpoint == "https://s3.local" && s3.region == "us-west-2")
        // Nothing anywhere: AWS itself.
        let aws = try S3Location.parse("s3://b/p", environment: [:])
        #expect(aws.endpoint == "https://s3.us-east-1.amazonaws.com" && aws.region == "us-east-1")
    }

    @Test(arguments: [
        ("file:///tmp/archive", "expected s3://"),
        ("s3:///prefix", "no bucket"),
        ("s3://bad bucket/p", "bucket name"),
        ("s3://b/a//c", "empty path segment"),
        ("s3://b/p?endpoint=ftp://host", "not an http:// or https://"),
        ("s3://b/p?endpoint=http://user:hunter2@host:9000", "holds user info"),
        ("s3://b/p?endpoint=http://host/path", "no path"),
        ("s3://b/p?endpoint=http://127.0.0.1:99999", "port 99999 is not one from 1 to 65535"),
        ("s3://b/p?regoin=x", "unknown parameter \"regoin\""),
        ("s3://b/p?region=us east", "region"),
        ("s3://b/p%0Aq", "control character"),
    ])
    func aBadLocationIsRefusedSayingWhy(url: String, why: String) {
        let error = #expect(throws: S3Error.self) { try S3Location.parse(url, environment: [:]) }
        #expect(error?.code == .invalidLocation)
        #expect(error?.message.contains(why) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("hunter2") == false)
    }

    @Test func credentialsComeFromTheEnvironmentAndAreNeverPrinted() throws {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        let credentials = try S3Credentials.environment(["AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": secret,
                                                        "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLETOKEN"])
        #expect(credentials.sessionToken == "FwoGZXIvYXdzEXAMPLETOKEN")
        let client = S3Client(location: try S3Location.parse("s3://b/p", environment: [:]), credentials: credentials)
        for shown in ["\(credentials)", String(reflecting: credentials), "\(client)", String(reflecting: client)] {
            #expect(!shown.contains(secret) && !shown.contains("FwoGZXIvYXdzEXAMPLETOKEN") && !shown.contains("AKIAIOSFODNN7"), "\(shown)")
        }
        #expect("\(credentials)".contains("…MPLE"))
        // An empty token is no token.
        #expect(try S3Credentials.environment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": ""]).sessionToken == nil)
    }

    /// Without the variables, the shared credentials file as the AWS SDKs read it: the profile
    /// AWS_PROFILE picks, comments, spaces; what is wrong names the file, line and profile,
    /// never a value; the variables win over the file.
    @Test func credentialsComeFromTheSharedFileWhenTheVariablesAreNotSet() throws {
        let dir = try TempDirectory()
        let path = dir.path + "/credentials"
        try """
            # written by aws configure
            [default]
            aws_access_key_id = AKIADEFAULTEXAMPLE
            aws_secret_access_key = defaultSecretXYZ

            [archive] ; the archive's identity
            aws_access_key_id=AKIAARCHIVEEXAMPLE
            aws_secret_access_key =   archive/Secret+1#x   ; rotated 2026-11
            aws_session_token = tokenABC
            [broken]
            aws_access_key_id = AKIABROKEN
            this line holds brokenSecret99 without an equals sign
            [nosecret]
            aws_access_key_id = AKIANOSECRET
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let byDefault = try S3Credentials.resolve(["AWS_SHARED_CREDENTIALS_FILE": path])
        #expect(byDefault.accessKeyID == "AKIADEFAULTEXAMPLE" && byDefault.secretAccessKey == "defaultSecretXYZ" && byDefault.sessionToken == nil)
        let archive = try S3Credentials.resolve(["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "archive"])
        #expect(archive.accessKeyID == "AKIAARCHIVEEXAMPLE" && archive.secretAccessKey == "archive/Secret+1#x" && archive.sessionToken == "tokenABC")
        // Saved on Windows (CRLF, a BOM), and an indented line (the SDKs read it as going on
        // from the line before: refused, named).
        let windows = dir.path + "/credentials-crlf"
        try FileSystem.writeAtomically(Array("\u{FEFF}# comment\r\n[default]\r\naws_access_key_id = AKIACRLF\r\naws_secret_access_key = crlfSecret\r\n".utf8), to: windows)
        let crlf = try S3Credentials.resolve(["AWS_SHARED_CREDENTIALS_FILE": windows])
        #expect(crlf.accessKeyID == "AKIACRLF" && crlf.secretAccessKey == "crlfSecret")
        try FileSystem.writeAtomically(Array("[default]\naws_access_key_id = AKIAX\n  aws_secret_access_key = indentedSecret\n".utf8), to: windows)
        let indented = #expect(throws: S3Error.self) { try S3Credentials.resolve(["AWS_SHARED_CREDENTIALS_FILE": windows]) }
        #expect(indented?.message.contains("line 3 (profile default) is indented") == true && indented?.message.contains("indentedSecret") == false, "\(indented?.message ?? "")")
        // ~/.aws/credentials when no file is named.
        try FileSystem.makeDirectories(dir.path + "/home/.aws")
        try FileSystem.writeAtomically(Array("[default]\naws_access_key_id = AKIAHOME\naws_secret_access_key = homeSecret\n".utf8), to: dir.path + "/home/.aws/credentials")
        #expect(try S3Credentials.resolve(["HOME": dir.path + "/home"]).accessKeyID == "AKIAHOME")
        // The variables win.
        #expect(try S3Credentials.resolve(["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "envSecret"]).accessKeyID == "AKIAENV")

        for (environment, says) in [
            (["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "broken"], "credentials file \(path), line 12 (profile broken): use name = value"),
            (["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "nosecret"], "credentials file \(path), profile [nosecret]: aws_secret_access_key is missing"),
            (["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "nobody"], "credentials file \(path) has no profile [nobody]"),
            (["AWS_SHARED_CREDENTIALS_FILE": dir.path + "/none"], "the credentials file \(dir.path)/none (AWS_SHARED_CREDENTIALS_FILE) cannot be read"),
            (["HOME": dir.path + "/nohome"], "AWS_ACCESS_KEY_ID is not set (the object store's access key), and there is no credentials file \(dir.path)/nohome/.aws/credentials"),
            ([:], "nor AWS_SHARED_CREDENTIALS_FILE or HOME"),
        ] as [([String: String], String)] {
            let error = #expect(throws: S3Error.self) { try S3Credentials.resolve(environment) }
            #expect(error?.code == .missingCredentials && error?.message.contains(says) == true, "\(error?.message ?? "")")
            #expect(error.map { !"\($0)".contains("brokenSecret99") && !"\($0)".contains("defaultSecretXYZ") } == true)
        }
    }

    /// A refused location quotes the part that is wrong, and that part may hold a secret (found
    /// by the outside attack: the bucket's and the endpoint's were printed in clear).
    @Test(arguments: [
        "s3://AKIAXX:wJalrSECRET77@b/p",
        "s3://b/p?endpoint=http://127.0.0.1:1/?password=wJalrSECRET77&region=us-east-1",
        "s3://b/p?endpoint=http://u:wJalrSECRET77@127.0.0.1:1",
    ])
    func aRefusedLocationNeverPrintsTheSecretItHolds(_ text: String) {
        let refused = #expect(throws: S3Error.self) { _ = try S3Location.parse(text, environment: [:]) }
        #expect(refused.map { !"\($0)".contains("wJalrSECRET77") && "\($0)".contains("***") } == true, "\(String(describing: refused))")
    }

    @Test func missingCredentialsNameTheVariable() {
        let noKey = #expect(throws: S3Error.self) { try S3Credentials.environment(["AWS_SECRET_ACCESS_KEY": "s"]) }
        #expect(noKey?.code == .missingCredentials && noKey?.message.contains("AWS_ACCESS_KEY_ID") == true)
        let noSecret = #expect(throws: S3Error.self) { try S3Credentials.environment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": ""]) }
        #expect(noSecret?.message.contains("AWS_SECRET_ACCESS_KEY") == true)
        let pasted = #expect(throws: S3Error.self) { try S3Credentials.environment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s3cret\n"]) }
        #expect(pasted?.message.contains("s3cret") == false)
    }

    @Test func keysAreEncodedTheWaySigV4SignsThem() {
        #expect(S3Client.encode("dir/a b+c&d=e?f#g%h~i_j.k-l", keepSlash: true) == "dir/a%20b%2Bc%26d%3De%3Ff%23g%25h~i_j.k-l")
        #expect(S3Client.encode("a/b", keepSlash: false) == "a%2Fb")
        #expect(S3Client.encode("ü", keepSlash: true) == "%C3%BC")
    }

    @Test func aListingPageParsesWithEntitiesAndContinuation() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount>\
            <MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated><Contents><Key>p/a&amp;b &lt;1&gt;</Key>\
            <ETag>&#34;5eb63bbbe01eeed093cb22bb8f5acdc3&#34;</ETag><Size>11</Size><LastModified>2026-12-04T19:20:05.123Z</LastModified></Contents>\
            <Contents><Key>p/&#xFC;</Key><ETag>&quot;x&quot;</ETag><Size>0</Size><LastModified>yesterday</LastModified></Contents>\
            <NextContinuationToken>p/&#xFC;</NextContinuationToken></ListBucketResult>
            """
        let page = try #require(S3XML.listPage(Array(xml.utf8)))
        #expect(page.objects.map(\.key) == ["p/a&b <1>", "p/ü"])
        #expect(page.objects.map(\.size) == [11, 0])
        #expect(page.objects.map(\.etag) == ["\"5eb63bbbe01eeed093cb22bb8f5acdc3\"", "\"x\""])
        #expect(page.isTruncated && page.nextContinuationToken == "p/ü")
        // A time that does not parse is none (prune then takes the object for a new one).
        #expect(page.objects.map(\.lastModifiedMs) == [1_796_412_005_123, nil])
    }

    /// S3's listing times (ISO 8601, UTC), against Foundation's reading of the same instants.
    @Test func listingTimesParseToTheMillisecond() {
        for (text, ms) in [("1970-01-01T00:00:00Z", 0), ("2026-12-04T19:20:05.123Z", 1_796_412_005_123), ("2000-02-29T23:59:59.5Z", 951_868_799_500),
                           ("2024-03-01T00:00:00.000000Z", 1_709_251_200_000), ("1969-12-31T23:59:59Z", -1000)] as [(String, Int64)] {
            #expect(S3XML.time(text) == ms, "\(text)")
            let foundation = ISO8601DateFormatter()
            foundation.formatOptions = text.contains(".") ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
            if let date = foundation.date(from: text) { #expect(abs(Int64(date.timeIntervalSince1970 * 1000) - ms) <= 1, "\(text)") }
        }
        for bad in ["", "2026-12-04", "2026-12-04T19:20:05", "2026-13-04T19:20:05Z", "2026-12-04T25:20:05Z", "2026-12-04T19:20:05.Z",
                    "2026-12-04T19:20:05+01:00", "2026-12-04T19:20:05.1234567890Z", "0000-01-01T00:00:00Z", "20x6-12-04T19:20:05Z"] {
            #expect(S3XML.time(bad) == nil, "\(bad)")
        }
    }

    @Test(arguments: [
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size>99999999999999999999</Size></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&bogus;</Key><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&#xD800;</Key><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>1</Size></Contents></ListBucketResult>",
        "<html>not s3</html>",
        "",
    ])
    func aDamagedListingIsRefusedNotMisread(xml: String) {
        #expect(S3XML.listPage(Array(xml.utf8)) == nil)
    }

    @Test func anErrorAnswerGivesItsCodeAndMessage() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>a</Key></Error>"
        let (code, message) = S3XML.error(Array(xml.utf8))
        #expect(code == "NoSuchKey" && message == "The specified key does not exist.")
        #expect(S3XML.error(Array("<html>502 Bad Gateway</html>".utf8)).code == nil)
    }

    @Test func aContentRangeParses() {
        #expect(S3Client.contentRange("bytes 2-4/5").map { [$0.first, $0.last] } == [2, 4])
        #expect(S3Client.contentRange("bytes 4-2/5") == nil)
        #expect(S3Client.contentRange("bytes */5") == nil)
        #expect(S3Client.contentRange("items 0-1/2") == nil)
    }
}
#endif
