import Foundation
import NIOConcurrencyHelpers
@testable import Tenantry
import TenantryCore
import Testing

/// ``Deadline/run(until:timeout:onLate:sleep:_:)``: the one deadline primitive of the relay and
/// the pool. No timer may outlive a call (every relay batch used to leave a 60 s sleeper behind).
@Suite("deadline: one structured race of a body and a sleep", .timeLimit(.minutes(1)))
struct DeadlineTests {
    /// A sleep that records whether it was cancelled (and when it ended).
    final class ObservedSleep: Sendable {
        let cancelled = NIOLockedValueBox(false)
        let ended = NIOLockedValueBox(false)

        var sleep: @Sendable (ContinuousClock.Instant) async throws -> Void {
            { [cancelled, ended] deadline in
                defer { ended.withLockedValue { $0 = true } }
                do {
                    try await Task.sleep(until: deadline)
                } catch {
                    cancelled.withLockedValue { $0 = true }
                    throw error
                }
            }
        }
    }

    @Test("the body wins: the call returns at once and its 60 s timer child was cancelled and has ended")
    func bodyWinsCancelsTimer() async throws {
        let timer = ObservedSleep()
        let start = ContinuousClock.now
        for attempt in 0..<3 {
            let value = try await Deadline.run(
                until: .now + .seconds(60), timeout: { TenantryError(code: .timeout, message: "late") }, sleep: timer.sleep
            ) { attempt * 2 }
            #expect(value == attempt * 2)
            // Observed right after the return: the group awaited its children, so the sleep is over.
            #expect(timer.cancelled.withLockedValue { $0 }, "the timer child was cancelled")
            #expect(timer.ended.withLockedValue { $0 }, "no sleeping child remains after the call")
            timer.cancelled.withLockedValue { $0 = false }
            timer.ended.withLockedValue { $0 = false }
        }
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test("the body throws first: its error comes back and the timer child was cancelled")
    func bodyErrorCancelsTimer() async throws {
        let timer = ObservedSleep()
        await #expect(throws: TenantryError.self) {
            try await Deadline.run(
                until: .now + .seconds(60), timeout: { CancellationError() }, sleep: timer.sleep
            ) { () async throws -> Int in throw TenantryError(code: .conflict, message: "body failed") }
        }
        #expect(timer.cancelled.withLockedValue { $0 } && timer.ended.withLockedValue { $0 })
    }

    @Test("the sleep wins: timeout at the deadline, and a body that observes cancellation is cancelled")
    func timerWinsCancelsBody() async throws {
        let body = ObservedSleep()
        let start = ContinuousClock.now
        await #expect {
            try await Deadline.run(until: .now + .milliseconds(100), timeout: { TenantryError(code: .timeout, message: "too slow") }) {
                try await body.sleep(.now + .seconds(60))
                return 1
            }
        } throws: { error in
            (error as? TenantryError)?.code == .timeout
        }
        #expect(ContinuousClock.now - start < .seconds(5))
        let cancelledBy = ContinuousClock.now + .seconds(2)
        while !body.ended.withLockedValue({ $0 }), ContinuousClock.now < cancelledBy { try await Task.sleep(for: .milliseconds(10)) }
        #expect(body.cancelled.withLockedValue { $0 }, "the body's sleep was cancelled")
    }

    @Test("a body that ignores cancellation does not hold the caller past the deadline; its late result goes to onLate")
    func uncooperativeBodyIsAbandoned() async throws {
        let gate = NIOLockedValueBox<CheckedContinuation<Void, Never>?>(nil)
        let late = NIOLockedValueBox<Int?>(nil)
        let start = ContinuousClock.now
        await #expect {
            try await Deadline.run(
                until: .now + .milliseconds(100), timeout: { TenantryError(code: .timeout, message: "too slow") },
                onLate: { value in late.withLockedValue { $0 = value } }
            ) { () async throws -> Int in
                // Like a query on a connection the server closed: cancellation does not end it.
                await withCheckedContinuation { continuation in gate.withLockedValue { $0 = continuation } }
                return 7
            }
        } throws: { error in
            (error as? TenantryError)?.code == .timeout
        }
        #expect(ContinuousClock.now - start < .seconds(5))
        let opened = ContinuousClock.now + .seconds(2)
        while gate.withLockedValue({ $0 }) == nil, ContinuousClock.now < opened { try await Task.sleep(for: .milliseconds(10)) }
        gate.withLockedValue { $0.take() }?.resume()
        let delivered = ContinuousClock.now + .seconds(2)
        while late.withLockedValue({ $0 }) == nil, ContinuousClock.now < delivered { try await Task.sleep(for: .milliseconds(10)) }
        #expect(late.withLockedValue { $0 } == 7)
    }

    @Test("the caller is cancelled: CancellationError at once, the timer child cancelled")
    func callerCancelled() async throws {
        let timer = ObservedSleep()
        let task = Task {
            try await Deadline.run(until: .now + .seconds(60), timeout: { TenantryError(code: .timeout, message: "late") }, sleep: timer.sleep) {
                try await Task.sleep(for: .seconds(60))
                return 1
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(timer.cancelled.withLockedValue { $0 } && timer.ended.withLockedValue { $0 })
    }

    @Test("withDeadline (the relay's) names what took too long")
    func relayWrapper() async throws {
        await #expect {
            try await withDeadline(.milliseconds(50), "a relay batch for tenant 7") { try await Task.sleep(for: .seconds(60)) }
        } throws: { error in
            Database.message(of: error) == "a relay batch for tenant 7 took longer than 0.05 seconds"
        }
    }

    @Test("a result that wins at the deadline is returned or handed to onLate, never dropped (500 tight races)")
    func resultAtTheDeadlineNeverDropped() async throws {
        let made = NIOLockedValueBox(0)
        let handedLate = NIOLockedValueBox(0)
        var returned = 0
        for _ in 0..<500 {
            // The timer fires the moment the operation has its result: the two race for the group.
            let ready = AsyncStream.makeStream(of: Void.self)
            do {
                _ = try await Deadline.run(
                    until: .now + .seconds(60), timeout: { TenantryError(code: .timeout, message: "late") },
                    onLate: { _ in handedLate.withLockedValue { $0 += 1 } },
                    sleep: { _ in for await _ in ready.stream { return } }
                ) {
                    made.withLockedValue { $0 += 1 }
                    ready.continuation.yield()
                    return 1
                }
                returned += 1
            } catch let error as TenantryError where error.code == .timeout {
                // The timer won the race: the value must reach onLate (checked below).
            }
        }
        // onLate runs in the operation's own task: give the last ones a moment to be counted.
        for _ in 0..<100 where returned + handedLate.withLockedValue({ $0 }) < made.withLockedValue({ $0 }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(returned + handedLate.withLockedValue { $0 } == made.withLockedValue { $0 },
                "made \(made.withLockedValue { $0 }), returned \(returned), handed late \(handedLate.withLockedValue { $0 })")
    }
}

