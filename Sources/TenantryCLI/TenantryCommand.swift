import ArgumentParser

/// The `tenantry` executable.
@main
struct TenantryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenantry",
        abstract: "Run a multi-tenant PostgreSQL application database-per-tenant, and move tenants there online.",
        discussion: """
            Configuration comes from the environment (DATABASE_URL, TENANT_ENCRYPTION_KEY, …; see docs/cli.md).
            Without DATABASE_URL, commands use a private PostgreSQL under .tenantry/ (see 'tenantry dev').
            """,
        subcommands: [
            DevCommand.self,
            InitCommand.self,
            StatusCommand.self,
            KeysCommand.self,
            SchemaCommand.self,
            ProvisionCommand.self,
            DeprovisionCommand.self,
            TenantsCommand.self,
            ServersCommand.self,
            RebalanceCommand.self,
            CredentialsCommand.self,
            ReadsCommand.self,
            RollbackReadsCommand.self,
            PerformanceCommand.self,
            QueryCommand.self,
            CaptureCommand.self,
            MigrateDataCommand.self,
            SyncCommand.self,
            DualWriteCommand.self,
            DLQCommand.self,
            VerifySyncCommand.self,
            CutoverCommand.self,
            RollbackCommand.self,
            RetireLegacyCommand.self,
            RestoreLegacyCommand.self,
            BackupCommand.self,
            RestoreCommand.self,
            ServerMoveCommand.self,
            GuardCommand.self,
            DemoCommand.self,
            DoctorCommand.self,
            ServeCommand.self,
            HandyShopCommand.self,
        ]
    )
}
