// swift-tools-version:6.1
// Kappa: a Kappa-architecture reprocessing orchestrator.
// No package dependencies: the toolchain plus system C libraries (SQLite always; libpq,
// librdkafka and libcurl behind the traits `Postgres`, `Kafka` and `S3`).
import PackageDescription

let package = Package(
    name: "Kappa",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "kappactl", targets: ["kappactl"]),
        .executable(name: "JobHost", targets: ["JobHost"]),
        .executable(name: "kappa-bench", targets: ["kappa-bench"]),
        .library(name: "KappaCore", targets: ["KappaCore"]),
    ],
    traits: [
        .trait(name: "Postgres", description: "Catalog and output tables in PostgreSQL (libpq)."),
        .trait(name: "Kafka", description: "The unified log in Apache Kafka (librdkafka)."),
        .trait(name: "S3", description: "An S3-compatible object store client (libcurl, which signs with SigV4)."),
        .default(enabledTraits: []),
    ],
    dependencies: [],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"]), .brew(["librdkafka"])]
        ),
        .systemLibrary(
            name: "CLibCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"]), .brew(["curl"])]
        ),
        // CRC-32C with the CPU's instruction, compiled for that function only (Swift cannot).
        .target(name: "CKappaCRC"),
        // pipe2 and accept4, which Glibc's Swift module does not show.
        .target(name: "CKappaSys"),
        .target(
            name: "KappaCore",
            dependencies: [
                "CSQLite",
                "CKappaCRC",
                "CKappaSys",
                .target(name: "CLibPQ", condition: .when(traits: ["Postgres"])),
                .target(name: "CRdKafka", condition: .when(traits: ["Kafka"])),
                .target(name: "CLibCurl", condition: .when(traits: ["S3"])),
            ]
        ),
        .executableTarget(name: "kappactl", dependencies: ["KappaCore"]),
        .executableTarget(name: "JobHost", dependencies: ["KappaCore"]),
        .executableTarget(
            name: "kappa-bench",
            dependencies: ["KappaCore", "CSQLite", .target(name: "CRdKafka", condition: .when(traits: ["Kafka"])),
                           .target(name: "CLibPQ", condition: .when(traits: ["Postgres"]))],
            path: "Benchmarks/kappa-bench"
        ),
        .testTarget(name: "KappaCoreTests", dependencies: ["KappaCore"]),
        .testTarget(name: "kappactlTests", dependencies: ["KappaCore", "kappactl", "JobHost"]),
    ]
)
