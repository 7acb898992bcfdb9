/// The swift-log metadata keys Tenantry logs under, one spelling each (dotted, like
/// OpenTelemetry's attribute names), so that a log query for one tenant finds every line.
public enum LogMetadataKey {
    /// The tenant a line is about: `tenant.id`.
    public static let tenant = "tenant.id"
}
