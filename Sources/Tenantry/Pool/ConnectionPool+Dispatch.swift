import DequeModule
import TenantryCore

/// Granting: who gets a free connection, and when.
///
/// Waiters queue per key (first come, first served within a key), and keys with waiters take turns
/// (`rotation`, round-robin): whenever capacity frees up, the first key in turn order that is below
/// its own maximum is served and goes to the back. A key at its maximum is skipped but keeps its
/// place, so it is next once one of its own connections returns. When the server cap is reached,
/// the key whose turn it is gets the least recently used idle connection of another key closed
/// to make room, so one tenant's freed connection serves another tenant's waiter. A tenant with a
/// thousand queued requests therefore gets one turn per round, like a tenant with one.
extension ConnectionPool {
    /// Waits for a grant for `key` until `deadline` (throws a timeout error then).
    func acquire(_ key: Key, deadline: ContinuousClock.Instant) async throws -> Grant {
        if isClosed { throw TenantryError(code: .conflict, message: "pool \(name) is closed") }
        // Nobody waits: serve at once. Otherwise queue behind the others, so that a flooding
        // tenant cannot take every freed slot.
        if rotation.isEmpty, let grant = grantNow(key) {
            recordGauges()
            return grant
        }
        nextID += 1
        let id = nextID
        // Queued before any suspension; `dispatch`, `expire` and `close` resolve `slot` on the
        // actor, so a grant and an expiry can never both happen.
        let slot = DeadlineRace<Grant>()
        waiters[key, default: []].append(Waiter(id: id, slot: slot))
        waitingCount += 1
        if !rotation.contains(key) { rotation.append(key) }
        dispatch()
        recordGauges()
        // The lease timer is a child task: at the deadline, or when the caller is cancelled, it
        // expires the waiter (a no-op once granted); it is cancelled and has ended before this returns.
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await Task.sleep(until: deadline)
                    await self.expire(key, id: id)
                } catch {
                    await self.expire(key, id: id, cancelled: true)
                }
            }
            defer { group.cancelAll() }
            return try await withCheckedThrowingContinuation { slot.start($0) }
        }
    }

    /// The most connections `key` may hold.
    func limit(of key: Key) -> Int { key.limit ?? configuration.maxPerKey }

    /// A grant for `key` without waiting, if capacity allows; reserves it.
    func grantNow(_ key: Key) -> Grant? {
        if held[key, default: 0] >= limit(of: key) { return nil }
        while let entry = idle[key]?.popLast() {
            if idle[key]?.isEmpty == true { idle[key] = nil }
            idleCount -= 1
            if entry.connection.isClosed {
                // The server ended it while idle (a restart): forget it, try the next.
                openTotal -= 1
                countDiscarded()
                continue
            }
            held[key, default: 0] += 1
            heldTotal += 1
            return .connection(entry.id, entry.connection, .now - entry.since)
        }
        var evicted: Connection?
        if openTotal >= configuration.maxConnections {
            // The evicted connection's slot passes to this grant (`openTotal` stays), and the
            // grantee closes it before opening its own.
            guard let victim = evictLeastRecentlyUsed(except: key) else { return nil }
            evicted = victim
        } else {
            openTotal += 1
        }
        opening += 1
        held[key, default: 0] += 1
        heldTotal += 1
        stats.peakOpen = max(stats.peakOpen, openTotal)
        return .open(evicted: evicted)
    }

    /// Serves waiting keys in turn while capacity allows (see the type's notes).
    func dispatch() {
        while !rotation.isEmpty {
            // The first key in turn order below its own maximum; keys at their maximum keep their place.
            guard let index = rotation.firstIndex(where: { held[$0, default: 0] < limit(of: $0) }) else { return }
            let key = rotation[index]
            guard var queue = waiters[key], !queue.isEmpty else {
                waiters[key] = nil
                rotation.remove(at: index)
                continue
            }
            // At the server cap with nothing idle to close, no key can be served: this one keeps
            // its turn for the next connection that comes back.
            guard let grant = grantNow(key) else { return }
            let waiter = queue.removeFirst()
            waitingCount -= 1
            rotation.remove(at: index)
            if queue.isEmpty {
                waiters[key] = nil
            } else {
                waiters[key] = queue
                rotation.append(key)
            }
            waiter.slot.finish(.success(grant))
        }
    }

    /// Takes the least recently used idle connection of another key out of the pool, to be closed
    /// to make room at the cap.
    func evictLeastRecentlyUsed(except key: Key) -> Connection? {
        var victim: (Key, Int, ContinuousClock.Instant)?
        for (other, list) in idle where other != key {
            for (index, entry) in list.enumerated() where victim == nil || entry.since < victim!.2 {
                victim = (other, index, entry.since)
            }
        }
        guard let (other, index, _) = victim, var list = idle[other] else { return nil }
        let entry = list.remove(at: index)
        idle[other] = list.isEmpty ? nil : list
        idleCount -= 1
        stats.evictions += 1
        metrics.evictions.increment()
        return entry.connection
    }

    /// Ends a waiter that timed out (or was cancelled), if it is still waiting.
    func expire(_ key: Key, id: Int, cancelled: Bool = false) {
        guard var queue = waiters[key], let index = queue.firstIndex(where: { $0.id == id }) else { return }
        let waiter = queue.remove(at: index)
        waiters[key] = queue.isEmpty ? nil : queue
        waitingCount -= 1
        recordGauges()
        if queue.isEmpty, let turn = rotation.firstIndex(of: key) { rotation.remove(at: turn) }
        if cancelled {
            waiter.slot.finish(.failure(CancellationError()))
            return
        }
        countLeaseTimeout()
        let leased = heldTotal
        waiter.slot.finish(.failure(TenantryError(
            code: .timeout,
            message: "no connection for \(key) within \(Self.describe(configuration.leaseTimeout)) "
                + "(pool \(name): \(leased) of \(configuration.maxConnections) connections in use, "
                + "\(held[key, default: 0]) of \(limit(of: key)) for this tenant)")))
    }

    /// Drops a reservation or a broken connection of `key`.
    func forget(_ key: Key, discarded: Bool) {
        releaseHold(key)
        openTotal -= 1
        if discarded { countDiscarded() }
        dispatch()
        recordGauges()
    }
}
