import ArgumentParser
import TenantryCore

/// `tenantry keys …`: encryption keys.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Manage the credential encryption key (TENANT_ENCRYPTION_KEY).",
        subcommands: [Generate.self])

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a new random key (64 hex characters) for TENANT_ENCRYPTION_KEY.")

        func run() async throws {
            try await runCommand {
                _ = try CommandContext.load()
                let key = EncryptionKey.generate()
                Output.line(key.hex)
            }
        }
    }
}
