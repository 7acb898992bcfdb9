import Foundation

/// The admin API's OpenAPI document (`openapi.json`, this target's resource; docs/openapi.json
/// links to it): what `GET /openapi.json` serves and what ``MethodNotAllowedMiddleware`` reads its
/// paths from. Tests check the request and response types against it (docs/api.md).
///
/// SwiftPM copies the resource into `Tenantry_TenantryHummingbird.resources` next to the built
/// executable. It is looked up there (and next to the executable a symbolic link such as
/// `/usr/local/bin/tenantry` points to), then in the source tree the binary was built from;
/// never through `Bundle.module`, which stops the process when the directory is missing. An
/// installed binary without the directory serves no document (404) and answers 404 instead of
/// 405 for an undeclared method; everything else works.
public enum OpenAPIDocument {
    /// The name of SwiftPM's resource directory of this target.
    public static let resourceDirectory = "Tenantry_TenantryHummingbird.resources"

    /// The document's JSON text, or `nil` when it is found nowhere.
    public static let json: String? = candidates().lazy
        .compactMap { FileManager.default.contents(atPath: $0) }
        .map { String(decoding: $0, as: UTF8.self) }
        .first

    /// Where the document is looked for, in order.
    static func candidates() -> [String] {
        var directories = [Bundle.main.bundleURL]
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "")
        if executable.path.contains("/") {
            directories.append(executable.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        var paths = directories.map { $0.appendingPathComponent(resourceDirectory).appendingPathComponent("openapi.json").path }
        paths.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("openapi.json").path)
        return paths
    }
}
