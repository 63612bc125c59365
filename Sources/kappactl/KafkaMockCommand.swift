import Foundation
import KappaCore

/// `kappactl kafka-mock`: librdkafka's mock cluster on loopback, for tests and for trying
/// `--log kafka://` without a Kafka cluster.
enum KafkaMockCommand {
    static let command = Command(
        "kafka-mock", abstract: "Run librdkafka's mock Kafka cluster on 127.0.0.1 until Ctrl-C (needs the Kafka trait).",
        discussion: """
            Prints the URL for --log on its first line, then serves until SIGINT/SIGTERM. Records live
            in memory only. librdkafka 2.0's mock cannot create topics through the admin API, so
            create them here with --topic NAME:PARTITIONS.
            """,
        options: [
            .value("brokers", "N", help: "Number of brokers (default 1)."),
            .value("topic", "NAME:PARTITIONS", help: "Create a topic (repeatable).", repeated: true),
        ],
        run: run)

    static func run(_ args: ParsedArguments) async throws {
        let brokers = Int(try args.int("brokers", in: 1...16) ?? 1)
        let topics = try args.strings("topic").map { text -> (String, Int) in
            let parts = text.split(separator: ":")
            guard parts.count == 2, let n = Int(parts[1]), (1...10_000).contains(n) else {
                throw args.usageError("--topic \(text): use NAME:PARTITIONS, e.g. bpi:3")
            }
            return (String(parts[0]), n)
        }
        #if Kafka
        let signals = TerminationSignal()
        let cluster = try KafkaMockCluster(brokers: brokers)
        for (name, partitions) in topics { try cluster.createTopic(name, partitions: partitions) }
        Console.out(cluster.url)
        _ = await signals.wait()
        withExtendedLifetime(cluster) {}
        #else
        _ = (brokers, topics)
        throw LogError(.invalidArgument, "this build has no Kafka support: build with `swift build --traits Kafka`")
        #endif
    }
}
