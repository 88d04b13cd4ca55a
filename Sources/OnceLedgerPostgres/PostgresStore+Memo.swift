import OnceLedger
import OnceLedgerFormat
import PostgresNIO

/// The memo operations of `LedgerStore` on PostgreSQL, with the rules of the file store
/// (`LogStore+Memo.swift`): each is one statement (a function of the schema,
/// `Spec/POSTGRES.md` §4), so it is atomic across every process sharing the store.
extension PostgresStore {
    public func memoGeneration(of run: MemoRun) async throws -> UInt64 {
        try Self.validate(run)
        try checkOpen()
        let (namespace, runID) = Self.runBuffers(run)
        let generation = try await pool.withTransaction(.writing("handing out a memo generation")) { connection in
            var generation: Int64 = 0
            for try await (value) in try await connection.query(
                "SELECT \(unescaped: quotedSchema).memo_generation(\(namespace), \(runID))", logger: logger).decode(Int64.self) {
                generation = value
            }
            return generation
        }
        return try Self.generation(generation)
    }

    public func memoGet(_ key: MemoKey) async throws -> MemoValue? {
        try checkOpen()
        let (namespace, runID) = Self.runBuffers(key.run)
        let generation = try Self.int64(key.generation, "the memo generation")
        let step = ByteBuffer(bytes: Array(key.step.utf8))
        let name = ByteBuffer(bytes: Array(key.name.utf8))
        return try await pool.withConnection(.reading("reading a memo value")) { connection in
            let rows = try await connection.query("""
                SELECT input_digest, time_ms, value FROM \(unescaped: quotedSchema).memo_values
                 WHERE namespace = \(namespace) AND run = \(runID) AND generation = \(generation)
                   AND key_digest = sha256(int4send(octet_length(\(step)::bytea)) || \(step)::bytea || \(name)::bytea)
                   AND step = \(step) AND name = \(name)
                """, logger: logger)
            var found: MemoValue?
            for try await (digest, time, value) in rows.decode((ByteBuffer?, Int64, ByteBuffer).self) {
                guard let time = UInt64(exactly: time) else {
                    throw LedgerError(.corruptRecord, "memo value \(key) has time \(time), which OnceLedger never writes")
                }
                found = MemoValue(key: key, inputDigest: digest.map { Array(buffer: $0) }, timeMilliseconds: time,
                                  bytes: Array(buffer: value))
            }
            return found
        }
    }

    /// Every key in one statement (the replay journal reads a run's positions so).
    public func memoGetMany(_ keys: [MemoKey]) async throws -> [MemoValue?] {
        try checkOpen()
        if keys.isEmpty { return [] }
        let namespaces = keys.map { ByteBuffer(bytes: Array($0.run.namespace.utf8)) }
        let runIDs = keys.map { ByteBuffer(bytes: Array($0.run.run.utf8)) }
        let generations = try keys.map { try Self.int64($0.generation, "the memo generation") }
        let steps = keys.map { ByteBuffer(bytes: Array($0.step.utf8)) }
        let names = keys.map { ByteBuffer(bytes: Array($0.name.utf8)) }
        return try await pool.withConnection(.reading("reading memo values")) { connection in
            let rows = try await connection.query("""
                SELECT u.i, v.input_digest, v.time_ms, v.value
                  FROM unnest(\(namespaces), \(runIDs), \(generations), \(steps), \(names))
                       WITH ORDINALITY AS u(namespace, run, generation, step, name, i)
                  JOIN \(unescaped: quotedSchema).memo_values v
                    ON v.namespace = u.namespace AND v.run = u.run AND v.generation = u.generation
                   AND v.key_digest = \(unescaped: PostgresSchema.memoKeyDigest("u.step", "u.name"))
                   AND v.step = u.step AND v.name = u.name
                """, logger: logger)
            var values = [MemoValue?](repeating: nil, count: keys.count)
            for try await (index, digest, time, value) in rows.decode((Int64, ByteBuffer?, Int64, ByteBuffer).self) {
                let position = Int(index) - 1
                guard values.indices.contains(position) else { continue }
                // As `memoGet`: a value OnceLedger never writes is an error, never "not found"
                // (the journal would run a step again whose result it holds).
                guard let time = UInt64(exactly: time) else {
                    throw LedgerError(.corruptRecord, "memo value \(keys[position]) has time \(time), which OnceLedger never writes")
                }
                values[position] = MemoValue(key: keys[position], inputDigest: digest.map { Array(buffer: $0) },
                                             timeMilliseconds: time, bytes: Array(buffer: value))
            }
            return values
        }
    }

    /// One memo put of a batch (`memo_put_batch_commit`); an empty digest stands for none.
    struct MemoPutCall: Sendable {
        var namespace: ByteBuffer
        var run: ByteBuffer
        var generation: Int64
        var step: ByteBuffer
        var name: ByteBuffer
        var digest: ByteBuffer
        var time: Int64
        var value: ByteBuffer
    }

    /// The most value bytes one batch of memo puts carries (a larger value goes alone).
    static let memoBatchBytes = 8 << 20

    /// Sends `calls` as one batch; each put's answer: accepted, or refused because its
    /// generation is not its run's latest or has ended (nothing written for it).
    static func runMemoPuts(_ calls: [MemoPutCall], connection: PostgresConnection, schema: String, prepared: Bool,
                            logger: Logger) async throws -> [Bool] {
        let statement = MemoPutBatchStatement(
            namespaces: calls.map(\.namespace), runs: calls.map(\.run), generations: calls.map(\.generation),
            steps: calls.map(\.step), names: calls.map(\.name), digests: calls.map(\.digest), times: calls.map(\.time),
            values: calls.map(\.value))
        let rows = try await statement.rows(on: connection, prepared: prepared, schema: schema, logger: logger)
        guard let answers = rows.first, answers.count == calls.count else {
            throw LedgerError(.databaseError, "the memo put procedure answered \(rows.first?.count ?? 0) results for a batch of \(calls.count) puts; their outcome is unknown")
        }
        return answers
    }

    public func memoPut(_ request: MemoPutRequest) async throws {
        let key = request.key
        if let digest = request.inputDigest, digest.count != 32 {
            throw LedgerError(.invalidArgument, "an input digest is 32 bytes (SHA-256), not \(digest.count)")
        }
        // The file store's limits, checked by the same record validation.
        try RecordBody.memoEntry(.init(
            namespace: key.run.namespace, run: key.run.run, generation: key.generation, step: key.step, name: key.name,
            inputDigest: request.inputDigest ?? RecordBody.noInputDigest, timeMilliseconds: request.timeMilliseconds,
            value: request.value)).validate()
        try checkOpen()
        let (namespace, runID) = Self.runBuffers(key.run)
        let generation = try Self.int64(key.generation, "the memo generation")
        let step = ByteBuffer(bytes: Array(key.step.utf8))
        let name = ByteBuffer(bytes: Array(key.name.utf8))
        let digest = request.inputDigest.map { ByteBuffer(bytes: $0) }
        let time = try Self.int64(request.timeMilliseconds, "the memo value's time")
        let value = ByteBuffer(bytes: request.value)
        // With concurrent puts, one round trip and one commit for the batch; the procedure
        // commits before it answers (`Spec/POSTGRES.md` §3, §4).
        let accepted = try await memoPuts.submit(MemoPutCall(
            namespace: namespace, run: runID, generation: generation, step: step, name: name,
            digest: digest ?? ByteBuffer(), time: time, value: value))
        if !accepted {
            throw LedgerError(
                .runEnded,
                "cannot store memo value \"\(key.name)\" of step \"\(key.step)\": run \(key.run) generation \(key.generation) has ended; nothing was written. A run id used again after its run ended starts a new generation: ask the ledger for a new memo (`ledger.memo(run:step:)`)")
        }
    }

    public func finishRun(_ run: MemoRun, status: RunStatus, timeMilliseconds: UInt64) async throws -> RunInfo {
        try Self.validate(run)
        try checkOpen()
        let (namespace, runID) = Self.runBuffers(run)
        let statusCode = Int16(status.rawValue)
        let time = try Self.int64(timeMilliseconds, "the run's end time")
        let row = try await pool.withTransaction(.writing("finishing a run")) { connection in
            var row: (Int64, Int16?, Int64?, Int64, Int64)?
            for try await value in try await connection.query("""
                SELECT generation, status, end_ms, entries, value_bytes
                  FROM \(unescaped: quotedSchema).finish_run(\(namespace), \(runID), \(statusCode), \(time))
                """, logger: logger).decode((Int64, Int16?, Int64?, Int64, Int64).self) {
                row = value
            }
            return row
        }
        guard let row else {
            throw LedgerError(.databaseError, "finishing run \(run) returned no generation; read it with `runs`")
        }
        return try runInfo(run, row)
    }

    public func sweepMemo(_ request: MemoSweepRequest) async throws -> MemoSweepResult {
        try checkOpen()
        let now = try Self.int64(request.nowMilliseconds, "the sweep's time")
        func window(_ status: RunStatus) -> Int64? {
            request.retention.windowMilliseconds(for: status).map { Int64(clamping: $0) }
        }
        let succeeded = window(.succeeded), failed = window(.failed), cancelled = window(.cancelled)
        let swept = try await pool.withTransaction(.writing("a memo sweep")) { connection in
            var swept: [(ByteBuffer, ByteBuffer, Int64, Int64)] = []
            for try await row in try await connection.query("""
                SELECT namespace, run, generation, entries
                  FROM \(unescaped: quotedSchema).memo_sweep(\(now), \(succeeded)::bigint, \(failed)::bigint, \(cancelled)::bigint)
                """, logger: logger).decode((ByteBuffer, ByteBuffer, Int64, Int64).self) {
                swept.append(row)
            }
            return swept
        }
        var result = MemoSweepResult()
        for (namespace, run, generation, entries) in swept {
            let memoRun = MemoRun(namespace: String(decoding: namespace.readableBytesView, as: UTF8.self),
                                  run: String(decoding: run.readableBytesView, as: UTF8.self))
            result.runs[memoRun, default: []].append(try Self.generation(generation))
            result.entries += Int(entries)
        }
        return result
    }

    public func runs(_ query: RunQuery) async throws -> [RunInfo] {
        try checkOpen()
        let namespace = query.namespace.map { ByteBuffer(bytes: Array($0.utf8)) }
        let run = query.run.map { ByteBuffer(bytes: Array($0.utf8)) }
        let rows = try await pool.withConnection(.reading("listing runs")) { connection in
            var rows: [(ByteBuffer, ByteBuffer, Int64, Int16?, Int64?, Int64, Int64)] = []
            for try await row in try await connection.query("""
                SELECT g.namespace, g.run, g.generation, g.status, g.end_ms, count(v.name),
                       coalesce(sum(octet_length(v.value)), 0)::bigint
                  FROM \(unescaped: quotedSchema).memo_generations g
                  LEFT JOIN \(unescaped: quotedSchema).memo_values v
                    ON v.namespace = g.namespace AND v.run = g.run AND v.generation = g.generation
                 WHERE (\(namespace)::bytea IS NULL OR g.namespace = \(namespace)::bytea)
                   AND (\(run)::bytea IS NULL OR g.run = \(run)::bytea)
                 GROUP BY g.namespace, g.run, g.generation, g.status, g.end_ms
                 ORDER BY g.namespace, g.run, g.generation
                """, logger: logger).decode((ByteBuffer, ByteBuffer, Int64, Int16?, Int64?, Int64, Int64).self) {
                rows.append(row)
            }
            return rows
        }
        return try rows.map { namespace, run, generation, status, end, entries, bytes in
            let memoRun = MemoRun(namespace: String(decoding: namespace.readableBytesView, as: UTF8.self),
                                  run: String(decoding: run.readableBytesView, as: UTF8.self))
            return try runInfo(memoRun, (generation, status, end, entries, bytes))
        }
    }

    // MARK: Conversions

    private func runInfo(_ run: MemoRun, _ row: (Int64, Int16?, Int64?, Int64, Int64)) throws -> RunInfo {
        let (generation, statusCode, end, entries, bytes) = row
        var status: RunStatus?
        if let statusCode {
            guard let code = UInt8(exactly: statusCode), let known = RunStatus(rawValue: code) else {
                throw LedgerError(.corruptRecord, "run \(run) generation \(generation) has status \(statusCode), which OnceLedger never writes")
            }
            status = known
        }
        var endTime: UInt64?
        if let end {
            guard let time = UInt64(exactly: end) else {
                throw LedgerError(.corruptRecord, "run \(run) generation \(generation) ended at \(end), which OnceLedger never writes")
            }
            endTime = time
        }
        return RunInfo(run: run, generation: try Self.generation(generation), status: status,
                       endTimeMilliseconds: endTime, entryCount: Int(entries),
                       valueBytes: Int(bytes))
    }

    static func generation(_ value: Int64) throws -> UInt64 {
        guard let generation = UInt64(exactly: value), generation > 0 else {
            throw LedgerError(.corruptRecord, "a memo generation of \(value) was read; OnceLedger writes only positive ones")
        }
        return generation
    }

    static func runBuffers(_ run: MemoRun) -> (ByteBuffer, ByteBuffer) {
        (ByteBuffer(bytes: Array(run.namespace.utf8)), ByteBuffer(bytes: Array(run.run.utf8)))
    }

    /// `MemoRun`'s checks (the file store's): a nonempty run id, the named limits.
    static func validate(_ run: MemoRun) throws {
        if run.run.isEmpty {
            throw LedgerError(.invalidArgument,
                              "the run id is empty; give every run a nonempty id (an empty one would name every run)",
                              limit: "runBytesMax")
        }
        for (text, max, what, limit) in [(run.run, FormatLimits.runBytesMax, "run id", "runBytesMax"),
                                         (run.namespace, FormatLimits.namespaceBytesMax, "namespace", "namespaceBytesMax")]
        where text.utf8.count > max {
            throw LedgerError(.limitExceeded,
                              "the memo \(what) is \(text.utf8.count) bytes; the limit is \(max). Use a shorter \(what) (a hash of a long one); nothing was written",
                              limit: limit)
        }
    }
}
