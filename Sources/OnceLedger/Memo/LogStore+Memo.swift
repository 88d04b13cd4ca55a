import OnceLedgerFormat
import OnceLedgerLog

/// The memo operations of `LedgerStore`, once, for both stores: over `MemoTable` and the
/// record log, the way the claim rules are over `LedgerState` (`LogStore.swift`). Every
/// write is one record per act (`Spec/FORMAT.md` §5.16–§5.18), durable before the call
/// returns and applied to the table with the very bytes written.
extension LogStore {
    private static var closedError: LedgerError { LedgerError(.closed, "the ledger is closed") }

    public func memoGeneration(of run: MemoRun) async throws -> UInt64 {
        try run.validate()
        if isClosed { throw Self.closedError }
        return try memo.withLock { try $0.currentGeneration(MemoTable.runKey(run)) }
    }

    public func memoGet(_ key: MemoKey) async throws -> MemoValue? {
        if isClosed { throw Self.closedError }
        // The value is read outside the lock (one pread when it is on disk), unless the
        // value cache holds it (`MemoTable.remember`).
        guard let read = try memo.withLock({ try $0.read(key) }) else { return nil }
        let bytes = try read.finish(key)
        if let (entry, location) = read.cacheable {
            memo.withLock { $0.remember(entry, location: location, bytes: bytes) }
        }
        return MemoValue(key: key, inputDigest: read.inputDigest, timeMilliseconds: read.timeMilliseconds, bytes: bytes)
    }

    public func memoPut(_ request: MemoPutRequest) async throws {
        let key = request.key
        if let digest = request.inputDigest, digest.count != 32 {
            throw LedgerError(.invalidArgument, "an input digest is 32 bytes (SHA-256), not \(digest.count)")
        }
        let body = RecordBody.memoEntry(.init(
            namespace: key.run.namespace, run: key.run.run, generation: key.generation, step: key.step, name: key.name,
            inputDigest: request.inputDigest ?? RecordBody.noInputDigest, timeMilliseconds: request.timeMilliseconds,
            value: request.value))
        try body.validate()
        let generationKey = MemoTable.generationKey(key)
        try memo.withLock { table in
            if isClosed { throw Self.closedError }
            guard table.beginPut(generationKey) else {
                throw LedgerError(
                    .runEnded,
                    "cannot store memo value \"\(key.name)\" of step \"\(key.step)\": run \(key.run) generation \(key.generation) has ended; nothing was written. A run id used again after its run ended starts a new generation: ask the ledger for a new memo (`ledger.memo(run:step:)`)")
            }
        }
        defer { memo.withLock { $0.endPut(generationKey) } }
        try await appendMemo([LogRecord(body)])
    }

    public func finishRun(_ run: MemoRun, status: RunStatus, timeMilliseconds: UInt64) async throws -> RunInfo {
        try run.validate()
        let runKey = MemoTable.runKey(run)
        enum Decision { case ended(RunInfo), write(UInt64) }
        let decision: Decision = try memo.withLock { table in
            if isClosed { throw Self.closedError }
            if let latest = table.latest[runKey] {
                let key = MemoTable.GenerationKey(run: runKey, generation: latest)
                if let generation = table.generation(key) {
                    if generation.end != nil, let info = table.info(key) { return .ended(info) }
                    if generation.ending {
                        throw LedgerError(.wrongState,
                                          "run \(run) generation \(latest) is being finished by another call; nothing was written. Read it with `runs` once that call returns")
                    }
                }
                table.setEnding(key, true)
                return .write(latest)
            }
            let generation = try table.currentGeneration(runKey)
            table.setEnding(MemoTable.GenerationKey(run: runKey, generation: generation), true)
            return .write(generation)
        }
        switch decision {
        case .ended(let info):
            return info
        case .write(let generation):
            let key = MemoTable.GenerationKey(run: runKey, generation: generation)
            defer { memo.withLock { $0.setEnding(key, false) } }
            try await appendMemo([LogRecord(.runEnd(.init(namespace: run.namespace, run: run.run, generation: generation,
                                                          status: status.record, timeMilliseconds: timeMilliseconds)))])
            return memo.withLock { $0.info(key) }
                ?? RunInfo(run: run, generation: generation, status: status, endTimeMilliseconds: timeMilliseconds,
                           entryCount: 0, valueBytes: 0)
        }
    }

    public func sweepMemo(_ request: MemoSweepRequest) async throws -> MemoSweepResult {
        // One pass over the table picks the due generations, marks them and counts their values
        // (`MemoTable.beginSweep`): no lookup per generation under the lock.
        let due = try memo.withLock { table in
            if isClosed { throw Self.closedError }
            return table.beginSweep(now: request.nowMilliseconds, retention: request.retention)
        }
        var result = MemoSweepResult()
        result.runs.reserveCapacity(due.count)
        var start = 0
        defer {
            // Whatever was not swept stays for the next sweep.
            if start < due.count {
                memo.withLock { table in for (key, _) in due[start...] { table.setSweeping(key, false) } }
            }
        }
        while start < due.count {
            let chunk = due[start..<min(due.count, start + memoAppendRecordsMax)]
            // Each run's strings are made once, for its record and for the result.
            let runs = chunk.map { MemoTable.memoRun($0.key.run) }
            let records = zip(chunk, runs).map { item, run in
                LogRecord(.memoSweep(.init(namespace: run.namespace, run: run.run, generation: item.key.generation,
                                           timeMilliseconds: request.nowMilliseconds)))
            }
            try await appendMemo(records)
            for (item, run) in zip(chunk, runs) {
                result.runs[run, default: []].append(item.key.generation)
                result.entries += item.entries
            }
            start = chunk.endIndex
        }
        return result
    }

    public func runs(_ query: RunQuery) async throws -> [RunInfo] {
        if isClosed { throw Self.closedError }
        return memo.withLock { $0.infos(query) }
    }

    /// Every run generation the memo holds, synchronously (salvage's read-back check).
    package func memoRuns() -> [RunInfo] {
        memo.withLock { $0.infos(RunQuery()) }
    }

    /// Appends memo records durably and, once durable, applies the very bytes written to
    /// the memo table, with where each landed (a value then stays on disk).
    private func appendMemo(_ records: [LogRecord]) async throws {
        if isClosed { throw Self.closedError }
        _ = try await log.appendLocated(records, onDurable: { [self] _, locations in
            self.memo.withLock { table in
                for (index, record) in records.enumerated() {
                    do {
                        let location = locations.map { $0[$0.startIndex + index] }
                        try record.body.withUnsafeBytes {
                            try table.apply(kind: record.kind, body: $0, location: location)
                        }
                    } catch {
                        // Validated bodies encoded by RecordBody always decode: a bug, not bad input.
                        preconditionFailure("a validated \(record.kind) body did not apply: \(error)")
                    }
                }
            }
        })
    }
}
