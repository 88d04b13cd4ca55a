/// A small, fast, seeded pseudo-random generator (SplitMix64) for deterministic
/// tests: the same seed gives the same sequence on every platform and toolchain.
///
/// The helpers (`int(in:)`, `chance(_:in:)`, `bytes(_:)`) are implemented here
/// rather than with the standard library's `random(in:using:)`, whose algorithm
/// may change between toolchains; a printed seed must reproduce a failure anywhere.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    /// SplitMix64 (Steele, Lea, Flood 2014), as in Java's `SplittableRandom`.
    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// A uniform integer in `range` (multiply-shift; the bias is below 2^-32 for
    /// the small ranges tests use).
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        let width = UInt64(bitPattern: Int64(range.upperBound &- range.lowerBound)) &+ 1
        if width == 0 { return Int(truncatingIfNeeded: next()) }
        let high = next().multipliedFullWidth(by: width).high
        return range.lowerBound &+ Int(truncatingIfNeeded: high)
    }

    /// A uniform integer in `0 ..< count`; `count` must be positive.
    public mutating func int(below count: Int) -> Int {
        precondition(count > 0, "int(below:) needs a positive bound")
        return int(in: 0...(count - 1))
    }

    /// True with probability `numerator / denominator`.
    public mutating func chance(_ numerator: Int, in denominator: Int) -> Bool {
        int(below: denominator) < numerator
    }

    /// One element of a non-empty array.
    public mutating func element<T>(of elements: [T]) -> T {
        elements[int(below: elements.count)]
    }

    /// `count` pseudo-random bytes: each `next()` gives eight, low byte first. Filled
    /// a word at a time, so multi-MiB buffers stay quick in debug builds.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        let count = max(0, count)
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var index = 0
            while index < count {
                var word = next()
                for _ in 0..<min(8, count - index) {
                    buffer[index] = UInt8(truncatingIfNeeded: word)
                    word >>= 8
                    index += 1
                }
            }
            initialized = count
        }
    }

    /// A seed derived from `seed` and `salt` (one SplitMix64 step over their mix),
    /// for independent sub-streams: one per crash point, per epoch, per file.
    public static func derive(_ seed: UInt64, _ salt: UInt64) -> UInt64 {
        var generator = SeededRandom(seed: seed ^ (salt &* 0xd6e8_feb8_6659_fd93))
        return generator.next()
    }
}
