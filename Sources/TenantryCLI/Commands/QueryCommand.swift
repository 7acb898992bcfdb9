import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import Tenantry
import TenantryCore

/// `tenantry query`: one read-only SQL query in every chosen tenant's database (and, for shared
/// tenants, in the unified database scoped to their rows), optionally merged in PostgreSQL.
struct QueryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Run one read-only SQL query across tenants, optionally combined in PostgreSQL.",
        discussion: """
            Runs SQL in each chosen tenant's database through the router (the connection caps hold), \
            in a READ ONLY transaction with statement_timeout = --timeout, --concurrency at a time. \
            Shared tenants run it in the unified database, scoped to their rows (their tenant tables \
            shadowed by views on the discriminator): write table names unqualified. Every row starts \
            with tenant_id. --combine runs SQL over a temporary table 'results' (tenant_id, then the \
            per-tenant columns with their types) loaded with the tenants' rows: e.g. \
            --combine 'select state, sum(n) from results group by 1'. A tenant that fails or times out \
            fails the query (naming it) unless --partial, which lists it as missing. \
            docs/fleet-query.md has the details.
            """)

    @Option(help: "Tenants: all, or ids separated by commas.") var tenants: String
    @Option(help: "Only tenants served by this server ('default': the unified database's, shared tenants' too).") var server: String?
    @Argument(help: "The per-tenant SQL: one query (SELECT, WITH, VALUES or TABLE).") var sql: String
    @Option(help: "SQL over the temporary table 'results'; its rows are the result.") var combine: String?
    @Option(help: "table, json or csv.") var format: String = "table"
    @Option(help: "Tenants queried at once (1-64).") var concurrency = 32
    @Option(help: "Longest statement per tenant, like 500ms, 30s or 2m.") var timeout: String = "30s"
    @Flag(help: "Leave out tenants that fail or time out, and name them, instead of failing.") var partial = false

    func run() async throws {
        try await runCommand {
            guard let format = Format(rawValue: format) else {
                throw TenantryError(code: .invalidArgument, message: "--format must be table, json or csv (got \(format))")
            }
            let context = try CommandContext.load()
            let selection: TenantSelection = tenants.trimmingCharacters(in: .whitespaces).lowercased() == "all"
                ? .all : .tenants(try parseTenantIDs([tenants]))
            let query = FleetQuery(
                sql: sql, tenants: selection, server: server, combine: combine, concurrency: concurrency,
                timeout: try parseDuration(timeout, option: "--timeout"), partial: partial)
            try query.validate()
            let streaming = format == .csv && combine == nil
            let printer = CSVStream()
            let result = try await Services.with(context) { services in
                try await services.operations.fleetQuery(query) { batch in
                    if streaming { printer.print(batch) }
                }
            }
            switch format {
            case .json: Output.line(result.json())
            case .csv: if !streaming || !printer.started { QueryFormat.csv(result) }
            case .table: QueryFormat.table(result)
            }
            for missing in result.missing { Output.note("tenant \(missing.tenant) missing: \(missing.error)") }
            if format != .json {
                Output.note("\(result.rows.count) row\(result.rows.count == 1 ? "" : "s") from \(result.answered) of "
                    + "\(result.tenants) tenant\(result.tenants == 1 ? "" : "s")\(result.combined ? ", combined" : "") "
                    + "in \(String(format: "%.2f", result.seconds)) s")
            }
        }
    }

    enum Format: String { case table, json, csv }
}

/// Prints CSV as tenants answer: the header once, then each tenant's rows.
final class CSVStream: Sendable {
    private let state = NIOLockedValueBox(false)

    /// Whether the header was printed.
    var started: Bool { state.withLockedValue { $0 } }

    func print(_ batch: FleetQuery.Batch) {
        state.withLockedValue { started in
            if !started { Output.line(QueryFormat.csvLine(batch.columns.map(\.name))) }
            started = true
            for row in batch.rows { Output.line(QueryFormat.csvLine(row)) }
        }
    }
}

/// The text formats of `tenantry query`.
enum QueryFormat {
    /// A header line, then one line per row; RFC 4180 quoting (a field with a comma, a quote, a
    /// CR or LF, or leading or trailing spaces is quoted, quotes doubled); NULL is an empty field,
    /// an empty string `""`.
    static func csv(_ result: FleetQuery.Result) {
        Output.line(csvLine(result.columns.map(\.name)))
        for row in result.rows { Output.line(csvLine(row)) }
    }

    static func csvLine(_ values: [String?]) -> String {
        values.map { value -> String in
            guard let value else { return "" }
            let needsQuotes = value.isEmpty || value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                || value.first == " " || value.last == " "
            return needsQuotes ? "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : value
        }.joined(separator: ",")
    }

    /// Aligned columns under a header and a rule, like psql: NULL as an empty cell, line breaks
    /// in a value shown as `\n`.
    static func table(_ result: FleetQuery.Result) {
        let header = result.columns.map(\.name)
        let rows = result.rows.map { row in
            row.map { ($0 ?? "").replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n") }
        }
        var widths = header.map(\.count)
        for row in rows {
            for (index, value) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], value.count) }
        }
        func line(_ values: [String]) -> String {
            values.enumerated().map { index, value in
                index == values.count - 1 ? value : value.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        Output.line(line(header))
        Output.line(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
        for row in rows { Output.line(line(row)) }
    }
}
