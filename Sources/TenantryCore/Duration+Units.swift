extension Duration {
    /// This duration in seconds, fractions included (`.milliseconds(1500).totalSeconds == 1.5`).
    public var totalSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// This duration in milliseconds, fractions included (`.microseconds(2500).totalMilliseconds == 2.5`).
    public var totalMilliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    /// Whole microseconds, 0 for negative durations, `UInt64.max` past its range.
    public var wholeMicroseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        let micros = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000)
        guard !micros.overflow else { return UInt64.max }
        return micros.partialValue &+ UInt64(attoseconds / 1_000_000_000_000)
    }

    /// Whole milliseconds, rounded down.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
