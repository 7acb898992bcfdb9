// swift-tools-version:6.1
import PackageDescription

/// Compiler settings shared by every target: strict concurrency (Swift 6 mode) and `any` spelled out.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Tenantry",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tenantry", targets: ["TenantryCLI"]),
        .executable(name: "tenantry-bench", targets: ["TenantryBench"]),
        .library(name: "Tenantry", targets: ["Tenantry"]),
        .library(name: "TenantryCore", targets: ["TenantryCore"]),
        .library(name: "TenantryHummingbird", targets: ["TenantryHummingbird"]),
        .library(name: "PostgresTools", targets: ["PostgresTools"]),
        .library(name: "EmbeddedPostgres", targets: ["EmbeddedPostgres"]),
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3" ..< "5.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // OTLP export for the CLI only, over HTTP (the gRPC trait would add grpc-swift to the build).
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        .target(
            name: "PostgresTools",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "EmbeddedPostgres",
            dependencies: [
                "PostgresTools",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TenantryCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // The library: PostgresNIO, swift-log, swift-metrics and swift-distributed-tracing (the
        // rest are modules of PostgresNIO's own packages, and hdrhistogram-swift for the
        // performance monitor).
        .target(
            name: "Tenantry",
            dependencies: [
                "TenantryCore",
                "PostgresTools",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "HandyShop",
            dependencies: [
                "Tenantry",
                "TenantryCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Hummingbird integration: tenant middleware, bearer/JWT, the admin API as route
        // collections, /metrics over a Prometheus registry.
        .target(
            name: "TenantryHummingbird",
            dependencies: [
                "Tenantry",
                "TenantryCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            resources: [.copy("openapi.json")],
            swiftSettings: swiftSettings
        ),
        // The HandyShop example web service (customers, repairs) over the router.
        .target(
            name: "HandyShopService",
            dependencies: [
                "Tenantry",
                "TenantryCore",
                "TenantryHummingbird",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "TenantryCLI",
            dependencies: [
                "Tenantry",
                "TenantryCore",
                "TenantryHummingbird",
                "HandyShopService",
                "HandyShop",
                "EmbeddedPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TenantryTestSupport",
            dependencies: [
                "HandyShop",
                "Tenantry",
                "TenantryCore",
                "EmbeddedPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Tests/TenantryTestSupport",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "TenantryBench",
            dependencies: [
                "Tenantry",
                "TenantryCore",
                "HandyShop",
                "EmbeddedPostgres",
                "TenantryHummingbird",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            path: "Benchmarks/TenantryBench",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostgresToolsTests",
            dependencies: ["PostgresTools", "TenantryCore", "TenantryTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EmbeddedPostgresTests",
            dependencies: ["EmbeddedPostgres", "TenantryTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "HandyShopTests",
            dependencies: [
                "HandyShop", "Tenantry", "TenantryCore", "TenantryTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TenantryCoreTests",
            dependencies: ["TenantryCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TenantryTests",
            dependencies: [
                "TenantryTestSupport",
                "HandyShop",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                "Tenantry",
                "TenantryCore",
                "EmbeddedPostgres",
                "TenantryHummingbird",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TenantryHummingbirdTests",
            dependencies: [
                "TenantryHummingbird", "HandyShopService", "TenantryTestSupport", "Tenantry", "TenantryCore", "HandyShop",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TenantryCLITests",
            dependencies: [
                "EmbeddedPostgres", "TenantryTestSupport", "TenantryCLI", "Tenantry", "TenantryCore", "HandyShop",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
