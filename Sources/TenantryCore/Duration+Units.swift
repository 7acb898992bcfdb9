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
}
