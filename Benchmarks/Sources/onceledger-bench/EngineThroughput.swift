import OnceLedgerFormat
@_spi(Benchmarks) import OnceLedgerLog

/// Appends/s through one open `LogEngine`: `appenders` concurrent tasks, each
/// appending one record at a time in a loop until the deadline. The engine's own
/// I/O thread does the blocking work; the tasks only suspend. The engine stays
/// open across rounds, so a segment is preallocated once, not per measurement.
final class EngineThroughput: Sendable {
    let engine: LogEngine
    let body: [UInt8]

    private init(engine: LogEngine, body: [UInt8]) {
        self.engine = engine
        self.body = body
    }

    static func open(directory: String, storage: PosixStorage = PosixStorage(), configuration: LogConfiguration,
                     body: [UInt8]) async throws -> EngineThroughput
    {
        let engine = try await BlockingThread.run {
            try LogEngine.open(directory: directory, storage: storage, configuration: configuration)
        }
        return EngineThroughput(engine: engine, body: body)
    }

    func close() async throws {
        let engine = self.engine
        try await BlockingThread.run { try engine.close() }
    }

    /// With `executor`, the appending tasks run on it (a diagnostic: no thread wake-up
    /// per commit).
    func run(appenders: Int, seconds: Double, on executor: SpinningExecutor? = nil) async throws
        -> BenchResults.EngineRate
    {
        let engine = self.engine
        let body = self.body
        return try await EngineThroughput.measure(engine: engine, callers: appenders, seconds: seconds, on: executor) { _, _ in
            _ = try await engine.append(kind: .opaque, body: body)
        }
    }

    /// The concurrent rate rows (engine appends, `Ledger.once`): a warm-up call per
    /// caller (`serial` nil, not counted), then `callers` tasks each calling
    /// `operation(caller, serial)` with serial 0, 1, … until `seconds` have passed.
    /// Only calls acknowledged inside the window count; batches are `engine`'s. With
    /// `executor`, the callers' tasks run on it (nil: the default executor).
    static func measure(
        engine: LogEngine, callers: Int, seconds: Double, on executor: (any TaskExecutor)? = nil,
        _ operation: @escaping @Sendable (_ caller: Int, _ serial: Int?) async throws -> Void
    ) async throws -> BenchResults.EngineRate {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<callers {
                group.addTask(executorPreference: executor) { try await operation(caller, nil) }
            }
            try await group.waitForAll()
        }
        let before = engine.commitStatistics
        let timingsBefore = engine.batchTimings
        let start = MonotonicClock.nanoseconds()
        let deadline = MonotonicClock.deadline(afterSeconds: seconds)
        let operations = try await withThrowingTaskGroup(of: Int.self) { group in
            for caller in 0..<callers {
                group.addTask(executorPreference: executor) {
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
        let elapsed = Double(deadline - start) / 1e9
        return EngineThroughput.rate(operations: operations, seconds: elapsed, appenders: callers,
                                     before: before, after: engine.commitStatistics,
                                     timings: engine.batchTimings.since(timingsBefore))
    }

    /// One appender using the blocking `appendAndWait` from a plain thread: the
    /// same engine path without the Swift-concurrency continuation hop (a
    /// diagnostic row).
    func runBlocking(seconds: Double) async throws -> BenchResults.EngineRate {
        let engine = self.engine
        let record = [LogRecord(kind: .opaque, body: body)]
        return try await BlockingThread.run {
            for _ in 0..<10 { _ = try engine.appendAndWait(record) }
            let before = engine.commitStatistics
            let timingsBefore = engine.batchTimings
            let deadline = MonotonicClock.deadline(afterSeconds: seconds)
            let clock = MonotonicClock()
            var operations = 0
            repeat {
                _ = try engine.appendAndWait(record)
                operations += 1
            } while MonotonicClock.nanoseconds() < deadline
            let elapsed = clock.elapsedSeconds
            return EngineThroughput.rate(operations: operations, seconds: elapsed, appenders: 1, before: before,
                                         after: engine.commitStatistics,
                                         timings: engine.batchTimings.since(timingsBefore))
        }
    }

    static func rate(
        operations: Int, seconds: Double, appenders: Int, before: (batches: UInt64, records: UInt64),
        after: (batches: UInt64, records: UInt64), timings: LogEngine.BatchTimings
    ) -> BenchResults.EngineRate {
        let batches = after.batches - before.batches
        let records = after.records - before.records
        return BenchResults.EngineRate(
            rate: .init(operations: operations, seconds: seconds), appenders: appenders, batches: batches,
            records: records, meanRecordsPerBatch: batches > 0 ? Double(records) / Double(batches) : 0,
            timings: timings)
    }
}
