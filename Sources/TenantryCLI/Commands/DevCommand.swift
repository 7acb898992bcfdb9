import ArgumentParser
import EmbeddedPostgres
import Foundation

/// `tenantry dev start|stop|status`: the private development server under `.tenantry/`.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Start, stop or inspect the embedded development PostgreSQL under .tenantry/.",
        subcommands: [Start.self, Stop.self, Status.self])

    static func server(_ context: CommandContext) throws -> EmbeddedPostgres {
        EmbeddedPostgres(
            configuration: try context.embeddedConfiguration(
                directory: FileManager.default.currentDirectoryPath + "/" + CommandContext.embeddedDirectory),
            logger: context.logger)
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the embedded PostgreSQL (created on first use); prints its postgres:// URL last.")

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let server = try DevCommand.server(context)
                let wasRunning = try await server.isRunning()
                try await server.start()
                Output.line(wasRunning ? "already running in \(CommandContext.embeddedDirectory)"
                                       : "started PostgreSQL in \(CommandContext.embeddedDirectory)")
                Output.line("export DATABASE_URL='\(try server.url(database: "postgres"))'")
                Output.line(try server.url(database: "postgres"))
            }
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the embedded PostgreSQL (no process is left behind).")

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let server = try DevCommand.server(context)
                let wasRunning = try await server.isRunning()
                try await server.stop()
                Output.line(wasRunning ? "stopped" : "not running")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Say whether the embedded PostgreSQL runs, and its URL.")

        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let server = try DevCommand.server(context)
                let running = try await server.isRunning()
                var url: String?
                if running {
                    try await server.start()  // attaches; reads the port
                    url = try server.url(database: "postgres")
                }
                if json {
                    try Output.json(["running": running ? "true" : "false", "url": url ?? ""])
                } else {
                    Output.line(running ? "running: \(url ?? "")" : "not running")
                }
                if !running { throw ExitCode(3) }
            }
        }
    }
}
