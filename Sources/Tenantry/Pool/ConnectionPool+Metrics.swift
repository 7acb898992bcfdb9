import Metrics
import TenantryCore

/// The swift-metrics instruments of one pool (names: ``TenantRouter/MetricName``, label `server`),
/// made once when the pool is made, so every series exists (at 0) from the start, and emitted
/// where the event happens: a counter when a connection opens, a gauge when a count changes, the
/// lease-wait timer when a lease is granted.
struct PoolInstruments: Sendable {
    let open: Gauge
    let idle: Gauge
    let leased: Gauge
    let waiting: Gauge
    let connects: Counter
    let connectFailures: Counter
    let evictions: Counter
    let idleClosed: Counter
    let discarded: Counter
    let leases: Counter
    let leaseTimeouts: Counter
    let leaseWaitTotal: FloatingPointCounter
    let leaseWait: Timer

    init(server: String, factory: any MetricsFactory) {
        typealias Name = TenantRouter.MetricName
        let labels = [("server", server)]
        func gauge(_ state: String) -> Gauge {
            Gauge(label: Name.connections, dimensions: labels + [("state", state)], factory: factory)
        }
        func counter(_ name: String) -> Counter { Counter(label: name, dimensions: labels, factory: factory) }
        open = gauge("open")
        idle = gauge("idle")
        leased = gauge("leased")
        waiting = Gauge(label: Name.waiting, dimensions: labels, factory: factory)
        connects = counter(Name.connects)
        connectFailures = counter(Name.connectFailures)
        evictions = counter(Name.evictions)
        idleClosed = counter(Name.idleClosed)
        discarded = counter(Name.discarded)
        leases = counter(Name.leases)
        leaseTimeouts = counter(Name.leaseTimeouts)
        leaseWaitTotal = FloatingPointCounter(label: Name.leaseWait, dimensions: labels, factory: factory)
        leaseWait = Timer(label: Name.leaseWaitDuration, dimensions: labels, factory: factory)
        for gauge in [open, idle, leased, waiting] { gauge.record(0) }
    }
}

extension ConnectionPool {
    /// Records the gauges from the pool's counts; called after every change of them.
    func recordGauges() {
        metrics.open.record(openTotal)
        metrics.idle.record(idleCount)
        metrics.leased.record(heldTotal - opening)
        metrics.waiting.record(waitingCount)
    }

    /// A lease granted after waiting `waited`.
    func countLease(waited: Duration) {
        let ms = waited.totalMilliseconds
        stats.leases += 1
        stats.leaseWaitTotalMs += ms
        stats.leaseWaitMaxMs = max(stats.leaseWaitMaxMs, ms)
        metrics.leases.increment()
        metrics.leaseWaitTotal.increment(by: ms / 1000)
        metrics.leaseWait.recordNanoseconds(Int64(min(ms * 1e6, Double(Int64.max))))
    }

    /// A lease that timed out.
    func countLeaseTimeout() {
        stats.leaseTimeouts += 1
        metrics.leaseTimeouts.increment()
    }

    /// `count` broken connections discarded.
    func countDiscarded(_ count: Int = 1) {
        stats.discarded += count
        metrics.discarded.increment(by: count)
    }
}
