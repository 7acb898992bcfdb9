import Testing

/// Waits for a state instead of sleeping "long enough": polls `condition` every `interval` until
/// it holds, recording a test issue naming `what` if it does not within `limit`.
public func eventually(
    _ what: String, within limit: Duration = .seconds(20), every interval: Duration = .milliseconds(10),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: interval)
    }
    Issue.record("not within \(limit): \(what)")
}
