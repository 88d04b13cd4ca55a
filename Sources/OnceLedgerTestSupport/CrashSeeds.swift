import Glibc

/// The seeds a seeded crash test runs, chosen from the environment: a quick run
/// (CI) takes few, a soak many, and a failure, which prints its seed, can be run
/// again alone with that seed.
///
/// ```swift
/// for seed in CrashSeeds.seeds(CrashSeeds.iterations(default: 20)) {
///     var random = SeededRandom(seed: seed)
///     // … a workload on SimulatedStorage, crashed at every step; print `seed` on failure
/// }
/// ```
public enum CrashSeeds {
    /// `ONCELEDGER_CRASH_ITERATIONS` (at least 1), or `defaultCount` where it is
    /// unset or not a number.
    public static func iterations(default defaultCount: Int) -> Int {
        max(1, variable("ONCELEDGER_CRASH_ITERATIONS").flatMap { Int($0) } ?? defaultCount)
    }

    /// `ONCELEDGER_SEED=<n>`: every seeded test runs that one seed only.
    public static var pinned: UInt64? {
        variable("ONCELEDGER_SEED").flatMap { UInt64($0) }
    }

    /// `count` fresh random seeds (at least one), or only the pinned seed.
    public static func seeds(_ count: Int) -> [UInt64] {
        if let pinned { return [pinned] }
        var system = SystemRandomNumberGenerator()
        return (0..<max(1, count)).map { _ in system.next() }
    }

    /// The seeds 1, 2, … `count` (at least one), the same on every run, or only the
    /// pinned seed: a test that passes today passes tomorrow, and a failure's seed is
    /// short to type. `LedgerCrashRunner` uses these by default.
    public static func fixed(_ count: Int) -> [UInt64] {
        if let pinned { return [pinned] }
        return (1...UInt64(max(1, count))).map { $0 }
    }

    private static func variable(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
