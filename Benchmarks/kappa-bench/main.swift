import Foundation
import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// kappa-bench: Kappa's benchmarks (run with the release build: `swift run -c release kappa-bench log`).
/// Every figure is printed beside a ceiling measured on the same machine in the same run.
let root = Command(
    "kappa-bench",
    abstract: "Benchmarks, printed as ratios against ceilings measured in the same run.",
    subcommands: [
        Command(
            "log", abstract: "Durable append and scan of the embedded log vs raw fsync'd writes and reads.",
            options: [
                .value("records", "N", help: "Records per round (default 200000)."),
                .value("rounds", "N", help: "Interleaved rounds; the median is reported (default 3)."),
                .value("dir", "DIR", help: "Where to write (default: a temp directory on the same disk as $TMPDIR)."),
            ],
            run: { args in
                let options = LogBenchmark.Options(
                    records: Int(try args.int("records", in: 1000...100_000_000) ?? 200_000),
                    rounds: Int(try args.int("rounds", in: 1...20) ?? 3),
                    directory: args.string("dir"))
                try await LogBenchmark(options: options).run()
            }),
        Command(
            "replay", abstract: "A replay of the demo's v2 job into SQLite vs SQLite running the same SQL over the same rows; memory during the replay.",
            options: [
                .value("records", "N", help: "Records (default 5000000)."),
                .value("dir", "DIR", help: "Where to work (default: a temp directory)."),
                .value("only", "typed|untyped", help: "Measure one form of the job only (for a profile)."),
                .value("store", "sqlite|postgres", help: "The store to replay into (default sqlite); postgres takes the server from KAPPA_TEST_POSTGRES (scripts/with-postgres starts one)."),
            ],
            run: { args in
                let records = Int(try args.int("records", in: 3000...100_000_000) ?? 5_000_000)
                let only = args.string("only")
                guard [nil, "typed", "untyped"].contains(only) else { throw UsageError("--only must be typed or untyped") }
                var postgres: String?
                switch args.string("store") ?? "sqlite" {
                case "sqlite": break
                case "postgres":
                    guard let url = ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"], !url.isEmpty else {
                        throw UsageError("--store postgres: set KAPPA_TEST_POSTGRES to a server's URL (scripts/with-postgres kappa-bench … does)")
                    }
                    postgres = url
                default: throw UsageError("--store must be sqlite or postgres")
                }
                try await ReplayBenchmark(records: records, directory: args.string("dir"), only: only, postgres: postgres).run()
            }),
        Command(
            "switch", abstract: "Promote/rollback latency (p50, p99) while 4 readers query the reader view.",
            options: [.value("switches", "N", help: "Switches a run (default 1000)."), .value("runs", "N", help: "Runs; the figures are their medians (default 5).")],
            run: { args in
                try await SwitchBenchmark(switches: Int(try args.int("switches", in: 10...1_000_000) ?? 1000),
                                          runs: Int(try args.int("runs", in: 1...100) ?? 5)).run()
            }),
        Command(
            "status", abstract: "`kappactl status` (the process, as an operator runs it) with 1,000 partitions (or --partitions N).",
            options: [.value("partitions", "N", help: "Partitions (default 1000).")],
            run: { args in
                try await StatusBenchmark(partitions: Int(try args.int("partitions", in: 1...10_000) ?? 1000)).run()
            }),
        Command(
            "eta", abstract: "The ETA status shows at 10%, 25% and 50% of a replay over a skewed topic, beside the time it really took.",
            options: [.value("records", "N", help: "Records (default 5000000)."),
                      .value("sample-ms", "MS", help: "How often the lag is sampled (default 250; JobHost records every 1000).")],
            run: { args in
                try await ETABenchmark(records: Int(try args.int("records", in: 10_000...100_000_000) ?? 5_000_000),
                                       sampleMs: Int(try args.int("sample-ms", in: 10...60_000) ?? 250)).run()
            }),
        Command(
            "freshness", abstract: "The serving version's time lag while a new version replays beside it, uncapped and with --max-rate, against it alone.",
            options: [.value("minutes", "N", help: "Minutes of BPI history to replay (default 15000: 2,700,000 records).")],
            run: { args in
                try await FreshnessBenchmark(minutes: Int(try args.int("minutes", in: 1...100_000) ?? 15_000)).run()
            }),
        Command(
            "latency", abstract: "The serving version's end-to-end latency, produce acknowledged to row in the reader view, alone and while a new version replays beside it.",
            options: [.value("records", "N", help: "Records of history the new version replays (default 5000000)."),
                      .value("max-rate", "N", help: "Also measure beside a replay capped at N records/s (replay.maxRate).")],
            run: { args in
                try await LatencyBenchmark(records: Int(try args.int("records", in: 1000...100_000_000) ?? 5_000_000),
                                           maxRate: try args.int("max-rate", in: 1...100_000_000).map(Int.init)).run()
            }),
        Command(
            "hosts", abstract: "A replay with one JobHost and with two sharing a PostgreSQL catalog and a Kafka log, with each process's CPU time (Postgres and Kafka traits).",
            options: [.value("records", "N", help: "Records per partition, 8 partitions (default 40000; the mock keeps about 5 MB per partition).")],
            run: { args in
                let perPartition = Int(try args.int("records", in: 100...45_000) ?? 40_000)
                #if Postgres && Kafka
                guard let url = ProcessInfo.processInfo.environment["KAPPA_TEST_POSTGRES"], !url.isEmpty else {
                    throw UsageError("set KAPPA_TEST_POSTGRES to a server's URL (scripts/with-postgres kappa-bench hosts does)")
                }
                try await HostsBenchmark(url: url, perPartition: perPartition).run()
                #else
                _ = perPartition
                throw UsageError("this build has no PostgreSQL and Kafka support: swift build -c release --traits Postgres,Kafka")
                #endif
            }),
        Command(
            "partitions", abstract: "JobHost over 10,000 partitions under ulimit -n 1024: resident memory during a replay, SIGTERM to exit.",
            options: [
                .value("partitions", "N", help: "Partitions (default 10000)."),
                .value("records", "N", help: "Records, round-robin over the partitions (default 100000)."),
            ],
            run: { args in
                try await PartitionsBenchmark(partitions: Int(try args.int("partitions", in: 1...10_000) ?? 10_000),
                                              records: Int(try args.int("records", in: 1...100_000_000) ?? 100_000)).run()
            }),
        Command(
            "kafka", abstract: "KafkaLog's append and scan vs librdkafka's own producer and consumer, and a replay from Kafka into SQLite vs one from the embedded log, on its mock cluster (Kafka trait).",
            options: [
                .value("records", "N", help: "Records per round (default 40000; the mock keeps about 5 MB per partition)."),
                .value("rounds", "N", help: "Rounds; the median is reported (default 5)."),
            ],
            run: { args in
                let records = Int(try args.int("records", in: 1000...45_000) ?? 40_000)
                let rounds = Int(try args.int("rounds", in: 1...20) ?? 5)
                #if Kafka
                try await KafkaBenchmark(records: records, rounds: rounds).run()
                #else
                _ = (records, rounds)
                throw UsageError("this build has no Kafka support: swift build -c release --traits Kafka --product kappa-bench")
                #endif
            }),
        Command(
            "archive", abstract: "Reads of the archive in an S3-compatible store from offset 0 (as a replay reads) vs curl fetching the same objects (S3 trait; the store from KAPPA_TEST_S3).",
            options: [
                .value("objects", "N", help: "Objects (default 32)."),
                .value("object-mib", "N", help: "MiB of records an object (default 8, as the mirror writes)."),
                .value("rounds", "N", help: "Interleaved rounds; the medians are reported (default 3)."),
                .value("batch", "N", help: "Records a read asks for, as a replay's batch (default 10000)."),
            ],
            run: { args in
                let batch = Int(try args.int("batch", in: 1...1_000_000) ?? 10_000)
                let objects = Int(try args.int("objects", in: 1...10_000) ?? 32)
                let mib = Int(try args.int("object-mib", in: 1...256) ?? 8)
                let rounds = Int(try args.int("rounds", in: 1...20) ?? 3)
                #if S3
                guard let location = ProcessInfo.processInfo.environment["KAPPA_TEST_S3"], !location.isEmpty else {
                    throw UsageError("set KAPPA_TEST_S3 to an s3:// location, with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (scripts/with-seaweedfs kappa-bench archive does)")
                }
                try await ArchiveBenchmark(location: location, objects: objects, objectBytes: mib << 20, rounds: rounds, batch: batch).run()
                #else
                _ = (objects, mib, rounds, batch)
                throw UsageError("this build has no S3 support: swift build -c release --traits S3 --product kappa-bench")
                #endif
            }),
    ])

exit(await CommandLineTool.run(root, arguments: Array(CommandLine.arguments.dropFirst())))
