/// Calls per second of an operation on a server (the `--postgres` rows): a warm-up call per
/// caller (`serial` nil, not counted), then `callers` tasks each calling
/// `operation(caller, serial)` with serial 0, 1, … until `seconds` have passed. Only calls
/// that returned inside the window count.
enum CallRate {
    static func measure(
        callers: Int, seconds: Double,
        _ operation: @escaping @Sendable (_ caller: Int, _ serial: Int?) async throws -> Void
    ) async throws -> BenchResults.Rate {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<callers {
                group.addTask { try await operation(caller, nil) }
            }
            try await group.waitForAll()
        }
        let start = MonotonicClock.nanoseconds()
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        let operations = try await withThrowingTaskGroup(of: Int.self) { group in
            for caller in 0..<callers {
                group.addTask {
                    var count = 0
                    var serial = 0
                    repeat {
                        try await operation(caller, serial)
                        serial += 1
                        if MonotonicClock.nanoseconds() <= deadline { count += 1 }
                    } while MonotonicClock.nanoseconds() < deadline
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        return BenchResults.Rate(operations: operations, seconds: Double(deadline - start) / 1e9)
    }
}
