import Foundation
import Tenantry
import TenantryCore

/// An action the console runs for selected tenants, as an admin job.
struct ConsoleAction: Sendable {
    /// The path segment: `/console/actions/<name>`.
    var name: String
    /// The button's label.
    var title: String
    /// What it does, on the confirmation page.
    var help: String
    /// Offered for a selection on the fleet page.
    var fleet: Bool
    /// Whether it needs tenants (`measure` does not).
    var needsTenants = true

    static let all: [ConsoleAction] = [
        ConsoleAction(
            name: "migrate-data", title: "Copy (migrate-data)",
            help: "Captures the tenants' writes, copies their rows into their databases from one snapshot, then syncs them.", fleet: true),
        ConsoleAction(
            name: "verify", title: "Verify",
            help: "Compares every table of the tenants' databases with their rows in the unified database, row by row (checksums per chunk).",
            fleet: true),
        ConsoleAction(
            name: "reads", title: "Switch reads",
            help: "Changes the read strategy: the chosen tenants' reads go to their databases (shop-list), or another strategy below.",
            fleet: true),
        ConsoleAction(
            name: "cutover", title: "Cut over",
            help: "Fences the tenants' writes for a moment, drains the relay, and moves their writes to their databases (reverse sync keeps unified current).",
            fleet: true),
        ConsoleAction(
            name: "rollback", title: "Roll back",
            help: "Moves the tenants' writes back to the unified database (after cutover) or stops their sync (before it); nothing is lost.",
            fleet: true),
        ConsoleAction(
            name: "retire-dry-run", title: "Retire (dry run)",
            help: "Checks that the tenants could be retired from the unified database and counts the rows; deletes nothing.", fleet: true),
        ConsoleAction(
            name: "replay-dead-letters", title: "Replay dead letters",
            help: "Puts the tenants' dead letters back in the queue and resumes their sync.", fleet: true),
        ConsoleAction(
            name: "measure", title: "Measure performance",
            help: "Runs the sample workload against the unified database and the tenant databases for 10 seconds and records latencies.",
            fleet: false, needsTenants: false),
    ]

    static func named(_ name: String) -> ConsoleAction? { all.first { $0.name == name } }
}
