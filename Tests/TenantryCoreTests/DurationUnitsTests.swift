import TenantryCore
import Testing

@Suite("Duration in seconds and milliseconds")
struct DurationUnitsTests {
    @Test("fractions are kept; negative durations stay negative")
    func conversions() {
        #expect(Duration.milliseconds(1500).totalSeconds == 1.5)
        #expect(Duration.microseconds(2500).totalMilliseconds == 2.5)
        #expect(Duration.seconds(10).totalMilliseconds == 10_000)
        #expect(Duration.zero.totalSeconds == 0)
        #expect(Duration.milliseconds(-250).totalSeconds == -0.25)
        #expect(Duration.nanoseconds(1).totalMilliseconds == 1e-6)
    }
}
