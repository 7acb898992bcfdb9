import Testing
@testable import Tenantry

@Suite("ReadySignal")
struct ReadySignalTests {
    @Test("waiters wake when it is set, not before; a set signal returns at once; a cancelled waiter returns")
    func wakes() async throws {
        let signal = ReadySignal()
        let waiter = Task { await signal.wait(); return signal.isSet }
        await Task.yield()
        #expect(!signal.isSet)
        signal.set(true)
        #expect(await waiter.value)
        await signal.wait()  // already set: returns at once
        signal.set(false)
        let cancelled = Task { await signal.wait() }
        cancelled.cancel()
        await cancelled.value
        #expect(!signal.isSet)
    }
}
