import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

extension SchemaCommand {
    /// `tenantry schema derive`.
    struct Derive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Introspect the unified database and write the tenant schema as a versioned migration file.",
            discussion: """
                Tenant tables are those with the discriminator column. It is dropped; keys, uniques, foreign keys and
                indexes that contain it are rewritten; foreign keys to global tables are dropped and listed; foreign keys
                become DEFERRABLE INITIALLY IMMEDIATE. See docs/schema.md.
                """)

        @Option(help: "The tenant key column (default: TENANTRY_DISCRIMINATOR or shop_id).") var discriminator: String?
        @Option(help: "The schema to read.") var schema = "public"
        @Option(parsing: .upToNextOption, help: "Tenant tables to leave out (e.g. tables without a primary key).")
        var exclude: [String] = []
        @Option(help: "Output file, or - for standard output (default: <migrations>/V1__tenant_schema.sql).")
        var out: String?
        @Option(help: "Directory of migration files (default: TENANTRY_MIGRATIONS or ./migrations).") var migrations: String?
        @Flag(help: "Overwrite the output file if it exists.") var force = false
        @Flag(help: "Print the report as one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let column = discriminator ?? context.configuration.naming.discriminator
                try SQLIdentifier.validateName(column, what: "--discriminator")
                let url = try await context.databaseURL()
                let unified = try await Database.withConnection(url, logger: context.logger) { connection in
                    try await SchemaIntrospector(schema: schema, logger: context.logger).read(connection)
                }
                let deriver = TenantSchemaDeriver(
                    discriminator: column, excludedTables: Set(exclude.flatMap { $0.split(separator: ",").map(String.init) }))
                let result = try deriver.derive(from: unified)
                let ddl = try SchemaDDL.render(result.schema)
                let text = Self.header(result, discriminator: column) + ddl
                let directory = migrations ?? context.configuration.migrationsDirectory
                let path = out ?? "\(directory)/V1__tenant_schema.sql"
                if path == "-" {
                    print(text, terminator: "")
                } else {
                    if FileManager.default.fileExists(atPath: path), !force {
                        throw TenantryError(code: .conflict, message: "\(path) exists; use --force to overwrite, or --out FILE")
                    }
                    try FileManager.default.createDirectory(
                        atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path, withIntermediateDirectories: true)
                    try text.write(toFile: path, atomically: true, encoding: .utf8)
                }
                if json {
                    struct Report: Encodable {
                        var file: String, discriminator: String, tenantTables: [String], globalTables: [String]
                        var droppedGlobalForeignKeys: [String], changes: [TenantSchemaDeriver.Change]
                    }
                    try Output.json(Report(
                        file: path, discriminator: column, tenantTables: result.tenantTables, globalTables: result.globalTables,
                        droppedGlobalForeignKeys: result.droppedGlobalForeignKeys, changes: result.changes))
                } else if path != "-" {
                    Output.line("wrote \(path): \(result.tenantTables.count) tenant tables (discriminator \(column)); "
                        + "\(result.globalTables.count) global tables stay in the unified database")
                    for change in result.changes { Output.line("  \(change)") }
                    if !result.droppedGlobalForeignKeys.isEmpty {
                        Output.line("foreign keys to global tables dropped (enforce them in the application): "
                            + result.droppedGlobalForeignKeys.joined(separator: "; "))
                    }
                }
            }
        }

        static func header(_ result: TenantSchemaDeriver.Result, discriminator: String) -> String {
            var lines = [
                "-- Tenant schema derived from the unified database by `tenantry schema derive`.",
                "-- Discriminator: \(discriminator). Tenant tables (\(result.tenantTables.count)): \(result.tenantTables.joined(separator: ", ")).",
                "-- Global tables, not in tenant databases: \(result.globalTables.joined(separator: ", ")).",
                "-- Changes:",
            ]
            lines += result.changes.map { "--   \($0.description.replacingOccurrences(of: "\n", with: " "))" }
            return lines.joined(separator: "\n") + "\n\n"
        }
    }
}
