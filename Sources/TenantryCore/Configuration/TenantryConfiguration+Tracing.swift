import Foundation

extension TenantryConfiguration {
    /// Where the `tenantry` executable exports its spans: OTLP over HTTP with swift-otel, only when
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (docs/tracing.md). swift-otel reads the other `OTEL_*`
    /// variables itself (sampler, batch sizes, headers, …).
    public struct Tracing: Sendable, Equatable {
        /// The OTLP protocols this build exports with (gRPC is not compiled in).
        public static let protocols = ["http/protobuf", "http/json"]
        /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL, e.g. `http://localhost:4318`
        /// (spans go to `/v1/traces` under it). `nil` (the default): tracing is off, nothing is set up.
        public var endpoint: String?
        /// `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` (the default) or `http/json`.
        public var exportProtocol = "http/protobuf"
        /// `OTEL_SERVICE_NAME`: the service the spans belong to. Default `tenantry`.
        public var serviceName = "tenantry"

        /// Whether spans are exported (an endpoint is set and `OTEL_SDK_DISABLED` is not true).
        public var enabled: Bool { endpoint != nil }

        /// Defaults: off.
        public init() {}

        /// Reads the variables above (and `OTEL_SDK_DISABLED`); a bad value throws a
        /// ``TenantryError`` with code `configuration` naming the variable.
        public init(environment: [String: String]) throws(TenantryError) {
            let reader = EnvironmentReader(environment: environment)
            try read(reader)
        }

        mutating func read(_ reader: EnvironmentReader) throws(TenantryError) {
            guard let text = reader.string("OTEL_EXPORTER_OTLP_ENDPOINT"), try reader.boolean("OTEL_SDK_DISABLED") != true else { return }
            guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https", !(url.host ?? "").isEmpty else {
                throw TenantryError(
                    code: .configuration,
                    message: "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL, e.g. http://localhost:4318")
            }
            if let name = reader.string("OTEL_EXPORTER_OTLP_PROTOCOL") {
                guard Self.protocols.contains(name) else {
                    throw TenantryError(
                        code: .configuration,
                        message: "OTEL_EXPORTER_OTLP_PROTOCOL must be \(Self.protocols.joined(separator: " or ")) (OTLP over HTTP, port 4318)")
                }
                exportProtocol = name
            }
            serviceName = reader.string("OTEL_SERVICE_NAME") ?? serviceName
            endpoint = text
        }
    }
}
