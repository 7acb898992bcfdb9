import ArgumentParser
import Tenantry
import TenantryCore

/// `tenantry keys …`: encryption keys.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Manage the credential encryption key (TENANT_ENCRYPTION_KEY).",
        subcommands: [Generate.self, Rotate.self])

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-seal every stored credential under TENANT_ENCRYPTION_KEY (old keys in TENANT_ENCRYPTION_PREVIOUS_KEYS).")
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let keyring = try context.configuration.requireKeyring()
                let report = try await Services.with(context) { services in
                    try await CredentialRotation(catalog: services.catalog, keyring: keyring, actor: context.actor, logger: context.logger)
                        .rotateKeys()
                }
                if json { try Output.json(report); return }
                Output.line("re-sealed \(report.credentials) credential(s) and \(report.servers) server password(s) under key \(report.keyID); \(report.alreadyCurrent) already current")
            }
        }
    }

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
