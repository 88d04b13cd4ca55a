import Foundation
import OnceLedgerFormat
import Synchronization

/// The replay journal of one run generation: every non-deterministic step of a workflow
/// (an LLM call, a tool result, the clock, a random number, a UUID, an external effect)
/// recorded at its position on first execution, and returned from the record when the
/// workflow runs again after a crash — without running the step again (README "Replay
/// journal", `Spec/FORMAT.md` §10).
///
/// ```swift
/// let journal = try await ledger.journal(run: "order-42")
/// let summary = try await journal.step("llm.summarize", input: prompt) { try await llm.complete(prompt) }
/// let sentAt = try await journal.now()
/// let receipt = try await journal.effect("mail.send", input: summary) { effect in
///     try await mailer.send(summary, idempotencyKey: effect.token)
/// }
/// try await journal.finish(.succeeded)
/// ```
///
/// Each call takes the next position. At a recorded position the journal checks that the
/// code asks for the same thing — kind, name and input digest — and returns the recorded
/// output; anything else throws `.journalDivergence` naming the position, what was recorded
/// and what is asked, and writes nothing. At a new position it runs the step, records its
/// output durably, and only then returns it.
///
/// - A **step**'s body may run again if the process dies after it returned and before its
///   record was durable (its output was then never seen by anyone): use it for
///   computations (an LLM call, a read). A body with an external side effect belongs in an
///   **effect**, which runs through `once`: its intent is durable before it starts, so a
///   crash inside it leaves it pending-unknown, handled by `whenPending` as in `once` —
///   never silently run again.
/// - **One writer per run generation.** Steps of one journal run one at a time, in the
///   order the code calls them (a second step called while one runs throws
///   `.invalidArgument`). Run a run id in one place at a time (one `Journal` of a run
///   generation at a time; the directory lock already keeps other processes out): a journal
///   checks write-once against what it read and wrote itself, with no store read per step,
///   so a second journal of the same generation in the same process is not seen by the
///   first. A truncated position is checked against the store again before it is
///   rewritten (`.wrongState` if another writer took it). Effects stay exactly-once either
///   way (their `once` key is the position's).
/// - Positions are **write-once**: nothing overwrites a recorded position, and the journal
///   never truncates itself; `onceledger journal-truncate` (an audited operator act) frees
///   positions from one on.
/// - The journal is memo entries of its run generation in the reserved empty step, so it
///   shares the memo's run generations, terminal marker (`finish`), retention, sweeper and
///   compaction, and its outputs stay on disk: a replay reads them, nothing holds them.
public final class Journal: Sendable {
    /// The run this journal records.
    public let run: MemoRun
    /// The run generation it records (unique in the ledger; a run id reused after its run
    /// ended gets a new one, with an empty journal).
    public let generation: UInt64
    public let limits: JournalLimits
    let ledger: Ledger
    /// A replay of an export (`JournalReplayer`): a position the export does not hold
    /// throws `.wouldExecute` instead of running anything.
    let replayOnly: Bool
    /// In a replay, whether the exported run had ended: a `patched` asked past its end answers
    /// false (the run ended without asking), not `.wouldExecute`.
    let replayedRunEnded: Bool
    private let state = Mutex(State())
    /// One decoder for every replayed output and one encoder for every recorded one (making
    /// one per step cost more than the coding).
    private let decoder = JSONDecoder()
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// What a recorded position holds.
    struct Recorded: Sendable {
        var entry: JournalEntry
        var inputDigest: [UInt8]?
        var timeMilliseconds: UInt64
        var valueBytes: Int
    }

    private struct State {
        /// The next position a step takes.
        var cursor: UInt64 = 0
        /// Positions read ahead of the cursor (nil: free).
        var window: [UInt64: Recorded?] = [:]
        /// Positions below this were read (into `window`, or consumed).
        var readThrough: UInt64 = 0
        /// The first position with no memo entry: every later one is free too.
        var frontier: UInt64?
        /// Value bytes of the positions below the cursor.
        var bytes = 0
        /// A step is running.
        var busy = false
        /// What `patched` answered, per id: a run asks each id once, later asks answer the same.
        var patches: [String: Bool] = [:]
    }

    /// How many positions one read ahead asks the store for.
    static let readAheadPositions = 256

    /// The generation divergences name: `generation`, except in a replay (`JournalReplayer`),
    /// whose scratch ledger has its own numbers: there, the exported run's.
    let namedGeneration: UInt64

    init(run: MemoRun, generation: UInt64, limits: JournalLimits, ledger: Ledger, replayOnly: Bool = false,
         replayedRunEnded: Bool = false, namedGeneration: UInt64? = nil) {
        self.run = run
        self.replayedRunEnded = replayOnly && replayedRunEnded
        self.generation = generation
        self.namedGeneration = namedGeneration ?? generation
        self.limits = limits
        self.ledger = ledger
        self.replayOnly = replayOnly
    }

    /// The position the next step takes.
    public var position: UInt64 { state.withLock { $0.cursor } }

    // MARK: Steps

    /// Runs `body` and records its output at the next position; on replay returns the
    /// recorded output without running `body`. The output is stored as JSON with sorted
    /// keys. Throws `.journalDivergence` if the position holds another step (kind, name or
    /// `input`'s digest differ), `.limitExceeded` over a per-run limit (nothing written).
    /// If `body` throws, nothing is recorded and the position stays free for the next call.
    public func step<Output: Codable & Sendable>(
        _ name: String, input: (any Encodable)? = nil, as type: Output.Type = Output.self,
        _ body: () async throws -> Output
    ) async throws -> Output {
        let digest = try Memo.digest(input)
        // An output recorded now whose record reads back as exactly this value (a plain
        // string, an unsigned integer: `encodeExactly`) is returned as is, not decoded from
        // the bytes just encoded; any other is decoded, so a first run returns what a replay will.
        var exact: Output?
        let bytes = try await record(.init(kind: .step, name: name, inputDigest: digest)) { _, _ in
            let output = try await body()
            if let bytes = Journal.encodeExactly(output) {
                exact = output
                return bytes
            }
            return try self.encode(output)
        }
        if let exact { return exact }
        return try decode(bytes, as: Output.self, name: name)
    }

    /// Runs an external side effect through the ledger's exactly-once machinery (`once`,
    /// under a key derived from the run generation and the position) and records its
    /// output; on replay returns the recorded output. The intent is durable before `body`
    /// starts: if the process dies inside it, the effect is pending-unknown and the next
    /// run of the workflow gets what `whenPending` says (default: `.pendingUnknown` is
    /// thrown, an operator resolves it) — it never runs again silently. Pass
    /// `effect.token` downstream as its idempotency key. The output is stored as the
    /// effect's receipt too, so it is at most `FormatLimits.receiptBytesMax` bytes as JSON.
    public func effect<Output: Codable & Sendable>(
        _ name: String, input: (any Encodable)? = nil, as type: Output.Type = Output.self,
        whenPending policy: PendingPolicy<Output> = .failClosed,
        _ body: @escaping @Sendable (EffectContext) async throws -> Output
    ) async throws -> Output {
        let digest = try Memo.digest(input)
        let requested = JournalDivergence.Step(kind: .effect, name: name, inputDigest: digest)
        let bytes = try await record(requested) { position, epoch in
            let key = try IdempotencyKey(
                self.effectKey(position: position, epoch: epoch), name: "onceledger.journal.effect",
                params: EffectParams(name: name, input: digest.map { Hex.string($0) } ?? ""))
            // The key holds the generation. At position 0 nothing may have made it durable
            // yet (it is handed out in memory): after a crash inside the effect, the run would
            // get another number and the key would change, so the effect would run again.
            // The marker makes the number the run's across a restart (FORMAT §10.3).
            if position == 0 {
                try await self.markGeneration()
            } else {
                // The generation is durable (position 0 is), but it may have ended elsewhere
                // (an operator cancelled the run): then the effect must not start — the journal
                // entry after it would be refused, with the effect done (FORMAT §10.3).
                try await self.checkRunning()
            }
            let outcome: OnceOutcome<Output>
            do {
                outcome = try await self.ledger.journalEffectOnce(key, as: Output.self, whenPending: policy, body)
            } catch let error as LedgerError where error.code == .fingerprintMismatch {
                throw self.divergence(
                    .mismatch, at: position,
                    recorded: .init(kind: .effect, name: "(an effect not yet journaled: key \(key.rawValue), claimed with another name or input)",
                                    inputDigest: error.entry?.fingerprint),
                    requested: requested)
            }
            return try self.encode(outcome.receipt)
        }
        return try decode(bytes, as: Output.self, name: name)
    }

    /// The time, from the ledger's clock on first execution and from the record on replay.
    public func now(_ name: String = "now") async throws -> Date {
        let milliseconds = try await nowMilliseconds(name)
        return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// `now()` in milliseconds since 1970.
    public func nowMilliseconds(_ name: String = "now") async throws -> UInt64 {
        let clock = ledger.clock
        let bytes = try await record(.init(kind: .now, name: name, inputDigest: nil)) { _, _ in
            try self.encode(clock())
        }
        return try decode(bytes, as: UInt64.self, name: name)
    }

    /// A random UUID on first execution; the recorded one on replay.
    public func uuid(_ name: String = "uuid") async throws -> UUID {
        let bytes = try await record(.init(kind: .uuid, name: name, inputDigest: nil)) { _, _ in
            try self.encode(UUID().uuidString)
        }
        let text = try decode(bytes, as: String.self, name: name)
        guard let uuid = UUID(uuidString: text) else {
            throw LedgerError(.malformedBody, "the journal of run \(run) recorded \"\(text)\" for uuid step \"\(name)\", which is not a UUID")
        }
        return uuid
    }

    /// A random number on first execution (the system's generator); the recorded one on replay.
    public func random(_ name: String = "random") async throws -> UInt64 {
        let bytes = try await record(.init(kind: .random, name: name, inputDigest: nil)) { _, _ in
            try self.encode(UInt64.random(in: .min ... .max))
        }
        return try decode(bytes, as: UInt64.self, name: name)
    }

    /// A versioning marker, for a code change on purpose: `if try await journal.patched("fix-rounding") { new } else { old }`.
    ///
    /// At a new position it records the marker and returns true: new runs take the new
    /// path. At a recorded position it returns true if the marker is recorded there, and
    /// false *without taking the position* if something else is: the run was recorded by
    /// the code before the change, and replays the old path. Keep a `patched` call until the
    /// runs recorded before it have ended and been swept.
    ///
    /// The first ask of an `id` in a run decides: asked again (the same change guards several
    /// places), it answers the same and records nothing, so a run that predates the patch takes
    /// the old path everywhere — even past the end of what it recorded — and a new run the new
    /// path everywhere.
    public func patched(_ id: String) async throws -> Bool {
        try enter()
        defer { leave() }
        let (position, earlier) = state.withLock { ($0.cursor, $0.patches[id]) }
        let slot = try await lookup(position)
        if let earlier {
            // A marker of `id` here was recorded at a second ask by a build that recorded one
            // per ask: taken, so such a run replays as it was recorded.
            if earlier, let recorded = slot, recorded.entry.kind == .patched, recorded.entry.name.elementsEqual(id.utf8) {
                advance(past: position, bytes: recorded.valueBytes)
            }
            return earlier
        }
        let answer: Bool
        if let recorded = slot, recorded.entry.kind != .truncated {
            answer = recorded.entry.kind == .patched && recorded.entry.name.elementsEqual(id.utf8)
            if answer { advance(past: position, bytes: recorded.valueBytes) }
        } else if replayedRunEnded {
            // A replay of a run that ended: it never asked for this patch (production never
            // runs that run again), so it took the old path.
            answer = false
        } else {
            _ = try await write(.init(kind: .patched, name: id, inputDigest: nil), at: position, over: slot) { _, _ in
                try self.encode(true)
            }
            answer = true
        }
        state.withLock { $0.patches[id] = answer }
        return answer
    }

    // MARK: The end of a run

    /// Ends the run generation with `status` (the memo's terminal marker): nothing more is
    /// recorded in it, and its journal is swept with its memo once the ledger's
    /// `memoRetention` window for `status` has passed. With `.succeeded`, first checks that
    /// the code reached every recorded position: if not, throws `.journalDivergence`
    /// (`unreached`) and writes nothing. In a replay (`JournalReplayer`) it writes nothing.
    @discardableResult
    public func finish(_ status: RunStatus) async throws -> RunInfo {
        if status == .succeeded {
            let unreached = try await unreachedPositions()
            if let first = unreached.first {
                throw divergence(.unreached, at: state.withLock { $0.cursor }, recorded: first.step, requested: nil,
                                 unreached: unreached.map(\.position))
            }
        }
        if replayOnly {
            return RunInfo(run: run, generation: generation, status: status, endTimeMilliseconds: ledger.clock(),
                           entryCount: 0, valueBytes: 0)
        }
        let current = try await ledger.store.memoGeneration(of: run)
        if current != generation {
            // This journal's generation is no longer the run's: it ended (then its end is
            // the answer), or it ended and was swept. Never end the run's newer generation.
            if let info = try await ledger.store.runs(RunQuery(namespace: run.namespace, run: run.run))
                .first(where: { $0.generation == generation && $0.status != nil }) {
                return info
            }
            throw LedgerError(.runEnded,
                              "run \(run) generation \(generation) has ended and been swept; the run's current generation is \(current). Nothing was written")
        }
        return try await ledger.store.finishRun(run, status: status, timeMilliseconds: ledger.clock())
    }

    /// The recorded positions from the current one on that the code has not reached (an
    /// explicit check; `finish(.succeeded)` makes it too). Empty when the code is at the
    /// end of what was recorded.
    public func unreachedPositions() async throws -> [JournalRecord] {
        var found: [JournalRecord] = []
        var position = state.withLock { $0.cursor }
        while let recorded = try await lookup(position) {
            if recorded.entry.kind != .truncated { found.append(JournalRecord(recorded)) }
            position += 1
        }
        return found
    }

    // MARK: Recording

    /// The step at the next position: the recorded output if the position holds `requested`;
    /// else (a free position) `compute`'s output, recorded first. `compute` gets the
    /// position and the epoch the record will have.
    private func record(_ requested: JournalDivergence.Step,
                        _ compute: (UInt64, UInt32) async throws -> [UInt8]) async throws -> [UInt8] {
        try enter()
        defer { leave() }
        let position = state.withLock { $0.cursor }
        let slot = try await lookup(position)
        if let recorded = slot, recorded.entry.kind != .truncated {
            try check(recorded, against: requested, at: position)
            advance(past: position, bytes: recorded.valueBytes)
            return recorded.entry.output
        }
        return try await write(requested, at: position, over: slot, compute)
    }

    /// Records `compute`'s output at the free `position` (free since it was read as `slot`).
    private func write(_ requested: JournalDivergence.Step, at position: UInt64, over slot: Recorded?,
                       _ compute: (UInt64, UInt32) async throws -> [UInt8]) async throws -> [UInt8] {
        if replayOnly {
            throw divergence(.wouldExecute, at: position, recorded: nil, requested: requested)
        }
        if position >= UInt64(limits.entriesMax) {
            throw LedgerError(
                .limitExceeded,
                "run \(run) (generation \(generation)) has recorded \(position) journal positions, its limit (JournalLimits.entriesMax); nothing was written. Split the work into several runs, or raise the limit",
                limit: "journalEntriesMax")
        }
        let epoch = slot?.entry.epoch ?? 0
        // The name's limit before the body runs (it may pay for a call, or be an effect).
        try JournalEntry(kind: requested.kind, epoch: epoch, position: position, name: requested.name, output: []).validate()
        // And the byte limit, for the smallest value the step can record (an output is at least
        // one byte of JSON): a run that cannot hold even that runs no body.
        let smallest = JournalEntry.encodedBytes(nameBytes: requested.name.utf8.count, outputBytes: 1)
        let bytesBefore = state.withLock { $0.bytes }
        if bytesBefore + smallest > limits.bytesMax {
            throw bytesLimitExceeded(bytesBefore + smallest, requested, at: position, ran: false)
        }
        let output = try await compute(position, epoch)
        let entry = JournalEntry(kind: requested.kind, epoch: epoch, position: position, name: requested.name, output: output)
        try entry.validate()
        let value = entry.encode()
        if bytesBefore + value.count > limits.bytesMax {
            throw bytesLimitExceeded(bytesBefore + value.count, requested, at: position, ran: true)
        }
        // Write-once. A free position was read free by this journal (its window or its
        // frontier) and only this journal writes past its cursor, so that check is local and
        // costs no store read on the hot path. A truncated position (rare) is read again:
        // it must still hold the truncation marker this journal read.
        let key = memoKey(position)
        let unchanged: Bool
        if let slot {
            let current = try await ledger.store.memoGet(key)
            unchanged = current.map { JournalEntry.decode($0.bytes) == .entry(slot.entry) } ?? false
        } else {
            unchanged = state.withLock { state in
                state.cursor == position && (state.frontier.map { position >= $0 } ?? false)
            }
        }
        if !unchanged {
            throw LedgerError(
                .wrongState,
                "journal position \(position) of run \(run) (generation \(generation)) was written by another writer while this one ran step \"\(requested.name)\"; nothing was written. Run a run id in one place at a time, and run the workflow again to replay what the other recorded")
        }
        try await ledger.store.memoPut(MemoPutRequest(key: key, value: value, inputDigest: requested.inputDigest,
                                                      timeMilliseconds: ledger.clock()))
        state.withLock { state in
            state.window[position] = nil
            state.cursor = position + 1
            state.bytes += value.count
            if state.frontier == position { state.frontier = position + 1 }
            state.readThrough = max(state.readThrough, position + 1)
        }
        return output
    }

    private func bytesLimitExceeded(_ bytes: Int, _ requested: JournalDivergence.Step, at position: UInt64, ran: Bool) -> LedgerError {
        let effectNote = ran && requested.kind == .effect ? " (the effect itself is recorded as done in the ledger)" : ""
        let what = ran ? "would hold \(bytes) journal bytes" : "would hold at least \(bytes) journal bytes (so the step did not run)"
        return LedgerError(
            .limitExceeded,
            "run \(run) (generation \(generation)) \(what) with step \"\(requested.name)\" at position \(position); the limit (JournalLimits.bytesMax) is \(limits.bytesMax). Nothing was written\(effectNote). Record references instead of payloads, or raise the limit",
            limit: "journalBytesMax")
    }

    /// Refuses a step called while another runs (a workflow's steps are sequential).
    private func enter() throws {
        try state.withLock { state in
            if state.busy {
                throw LedgerError(
                    .invalidArgument,
                    "a step of the journal of run \(run) was called while another one runs; call a journal's steps one at a time (await each), so that every run takes them in the same order")
            }
            state.busy = true
        }
    }

    private func leave() { state.withLock { $0.busy = false } }

    private func advance(past position: UInt64, bytes: Int) {
        state.withLock { state in
            state.window[position] = nil
            state.cursor = position + 1
            state.bytes += bytes
        }
    }

    private func check(_ recorded: Recorded, against requested: JournalDivergence.Step, at position: UInt64) throws {
        if recorded.entry.kind != requested.kind || !recorded.entry.name.elementsEqual(requested.name.utf8)
            || recorded.inputDigest != requested.inputDigest {
            throw divergence(.mismatch, at: position, recorded: JournalRecord(recorded).step, requested: requested)
        }
    }

    func divergence(_ reason: JournalDivergence.Reason, at position: UInt64, recorded: JournalDivergence.Step?,
                    requested: JournalDivergence.Step?, unreached: [UInt64] = []) -> LedgerError {
        let divergence = JournalDivergence(reason: reason, run: run.description, generation: namedGeneration,
                                           position: position, recorded: recorded, requested: requested,
                                           unreachedPositions: unreached)
        let advice = switch reason {
        case .mismatch:
            " Nothing was written. If the change is on purpose, guard the new code with `journal.patched(id)` so recorded runs replay the old path; else restore the old step. An operator may truncate the run's journal from this position (`onceledger journal-truncate`, audited)."
        case .unreached:
            " The run was not finished. If the code changed on purpose, truncate the journal from this position (`onceledger journal-truncate`, audited) and finish again, or finish it as failed."
        case .wouldExecute:
            " The replayer refuses to run any step the recorded run did not: the code under test takes a path the recorded run did not."
        }
        var error = LedgerError(.journalDivergence, divergence.description + "." + advice)
        error.journalDivergence = divergence
        return error
    }

    // MARK: Reading

    func memoKey(_ position: UInt64) -> MemoKey {
        MemoKey(run: run, generation: generation, step: JournalEntry.reservedStep,
                name: JournalEntry.positionName(position))
    }

    /// The record at `position` (nil: free), read ahead from the store in batches of
    /// `readAheadPositions` (kept until the cursor passes them).
    private func lookup(_ position: UInt64) async throws -> Recorded? {
        let known: Recorded?? = state.withLock { state in
            if let frontier = state.frontier, position >= frontier { return .some(nil) }
            if let cached = state.window[position] { return .some(cached) }
            return nil
        }
        if let known { return known }
        let count = UInt64(Journal.readAheadPositions)
        let positions = Array(position..<(position + count))
        let values = try await ledger.store.memoGetMany(positions.map(memoKey))
        var decoded: [(UInt64, Recorded?)] = []
        var frontier: UInt64?
        for (at, value) in zip(positions, values) {
            guard let value else {
                frontier = at
                decoded.append((at, nil))
                break
            }
            decoded.append((at, try Journal.recorded(value, position: at, run: run, generation: generation)))
        }
        state.withLock { state in
            for (at, recorded) in decoded where at >= state.cursor { state.window[at] = .some(recorded) }
            if let frontier { state.frontier = min(state.frontier ?? frontier, frontier) }
            state.readThrough = max(state.readThrough, position + UInt64(decoded.count))
        }
        return decoded.first?.1 ?? nil
    }

    /// A memo value of the journal's step, checked and decoded (bytes from disk: a typed error, never a trap).
    static func recorded(_ value: MemoValue, position: UInt64, run: MemoRun, generation: UInt64) throws -> Recorded {
        switch JournalEntry.decode(value.bytes) {
        case .entry(let entry):
            guard entry.position == position else {
                throw LedgerError(
                    .malformedBody,
                    "journal position \(position) of run \(run) (generation \(generation)) holds the value of position \(entry.position); run `onceledger verify`")
            }
            return Recorded(entry: entry, inputDigest: value.inputDigest, timeMilliseconds: value.timeMilliseconds,
                            valueBytes: value.bytes.count)
        case .malformed(let reason):
            throw LedgerError(
                .malformedBody,
                "journal position \(position) of run \(run) (generation \(generation)) does not decode: \(reason). A value of a newer version needs the OnceLedger that wrote it; a damaged one, `onceledger verify` and `onceledger salvage` (truncation reads the positions it frees, so it cannot free this one)")
        }
    }

    /// JSON with sorted keys, as `Memo` stores values.
    private func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        if let bytes = Journal.encodeExactly(value) { return bytes }
        do {
            return Array(try encoder.encode(value))
        } catch {
            throw LedgerError(
                .invalidArgument,
                "the output \(T.self) of a step of the journal of run \(run) does not encode as JSON: \(error). Return a value JSON can hold (no NaN or infinity); nothing was written",
                underlyingError: error)
        }
    }

    /// A printable-ASCII string and an unsigned integer (what `now`, `random` and `uuid`
    /// record, and many steps) as JSON, written directly, byte for byte what the encoder
    /// writes — the encoder's fixed cost per call was the largest part of the journal's own
    /// CPU per recorded step in a profile — and read back by `decode` as exactly `value`;
    /// nil for anything else (the encoder's).
    static func encodeExactly<T>(_ value: T) -> [UInt8]? {
        if T.self == String.self, let text = value as? String { return Journal.plainJSONStringBytes(text) }
        if T.self == UInt64.self, let number = value as? UInt64 { return Array(String(number).utf8) }
        return nil
    }

    /// `text` as JSON if it is printable ASCII without a quote or a backslash (nothing the
    /// encoder escapes; slashes are not escaped), else nil.
    static func plainJSONStringBytes(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count + 2)
        bytes.append(0x22)
        for byte in text.utf8 {
            guard byte >= 0x20, byte < 0x7f, byte != 0x22, byte != 0x5c else { return nil }
            bytes.append(byte)
        }
        bytes.append(0x22)
        return bytes
    }

    private func decode<T: Decodable>(_ bytes: [UInt8], as type: T.Type, name: String) throws -> T {
        // The outputs `now`, `random`, `uuid` and most steps record — a string without
        // escapes, an unsigned integer — are read directly; a JSONDecoder costs more than a
        // replayed step's record read. Anything else (and anything the fast path is unsure
        // of) goes to the decoder, which gives the same value or the error.
        if T.self == String.self, let text = Journal.plainJSONString(bytes), let value = text as? T { return value }
        if T.self == UInt64.self, let number = Journal.plainJSONUInt64(bytes), let value = number as? T { return value }
        do {
            return try decoder.decode(T.self, from: Data(bytes))
        } catch {
            throw LedgerError(
                .memoDecodingFailed,
                "the output journaled for step \"\(name)\" of run \(run) does not decode as \(T.self): \(error). A changed output type needs a new step name (or `patched`)",
                underlyingError: error)
        }
    }

    /// `bytes` as a JSON string with no escapes (`"…"`, valid UTF-8, no backslash, no
    /// control character), or nil: the decoder then decides.
    static func plainJSONString(_ bytes: [UInt8]) -> String? {
        guard bytes.count >= 2, bytes.first == 0x22, bytes.last == 0x22 else { return nil }
        let inner = bytes[1..<(bytes.count - 1)]
        guard !inner.contains(where: { $0 == 0x5c || $0 == 0x22 || $0 < 0x20 }) else { return nil }
        return String(validating: inner, as: UTF8.self)
    }

    /// `bytes` as a JSON unsigned integer in `UInt64` (decimal digits, no sign, no leading
    /// zero, no fraction or exponent, no overflow), or nil: the decoder then decides.
    static func plainJSONUInt64(_ bytes: [UInt8]) -> UInt64? {
        guard !bytes.isEmpty, bytes.count <= 20, bytes.count == 1 || bytes[0] != 0x30 else { return nil }
        var value: UInt64 = 0
        for byte in bytes {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(UInt64(byte - 0x30))
            if overflow1 || overflow2 { return nil }
            value = sum
        }
        return value
    }

    /// Writes the memo entry `JournalEntry.generationMarkerName` (reserved step, empty
    /// value) of this run generation: durable, so a restart hands the run this generation
    /// again (refused like a put if the generation has ended).
    func markGeneration() async throws {
        try await ledger.store.memoPut(MemoPutRequest(
            key: MemoKey(run: run, generation: generation, step: JournalEntry.reservedStep,
                         name: JournalEntry.generationMarkerName),
            value: [], inputDigest: nil, timeMilliseconds: ledger.clock()))
    }

    /// Throws `.runEnded` if this journal's generation is no longer its run's current one (it
    /// ended, and maybe was swept); nothing is written to the journal or the entries. (Asking
    /// for the current generation of an ended run hands out the next number, as
    /// `Ledger.journal(run:)` would: in memory on the file store, durably in `memo_runs` on
    /// PostgreSQL, `Spec/POSTGRES.md` §3.5.)
    func checkRunning() async throws {
        let current = try await ledger.store.memoGeneration(of: run)
        if current != generation {
            throw LedgerError(
                .runEnded,
                "run \(run) generation \(generation) has ended (its current generation is \(current)); the effect did not start and nothing was written")
        }
    }

    /// The `once` key of the effect at `position` (`Spec/FORMAT.md` §10.3): the run
    /// generation and position (unique in the ledger), the epoch after a truncation, and the
    /// run for an operator to read, cut to fit the key limit.
    func effectKey(position: UInt64, epoch: UInt32) -> String {
        Journal.effectKey(run: run, generation: generation, position: position, epoch: epoch)
    }

    static func effectKey(run: MemoRun, generation: UInt64, position: UInt64, epoch: UInt32) -> String {
        var key = "onceledger.journal/g\(generation)/p\(position)"
        if epoch > 0 { key += "/e\(epoch)" }
        key += "/"
        var remaining = FormatLimits.keyBytesMax - key.utf8.count
        for scalar in run.description.unicodeScalars {
            let width = UTF8.width(scalar)
            if width > remaining { break }
            remaining -= width
            key.unicodeScalars.append(scalar)
        }
        return key
    }

    struct EffectParams: Encodable {
        var name: String
        var input: String
    }
}

/// Per-run bounds of a journal; over one, a step throws `.limitExceeded` and nothing is
/// written.
public struct JournalLimits: Sendable, Hashable {
    /// Positions a run generation may record.
    public var entriesMax: Int
    /// Bytes of journal values (outputs plus their 22-byte frames and names) a run generation may record.
    public var bytesMax: Int

    public init(entriesMax: Int = 100_000, bytesMax: Int = 256 << 20) {
        self.entriesMax = max(0, min(entriesMax, Int(JournalEntry.positionMax) + 1))
        self.bytesMax = max(0, bytesMax)
    }
}

/// One recorded position of a journal, as `unreachedPositions` and exports show it.
public struct JournalRecord: Sendable, Hashable {
    public var position: UInt64
    public var entry: JournalEntry
    /// The step's input digest; nil for none.
    public var inputDigest: [UInt8]?
    /// When it was recorded (the ledger's clock).
    public var timeMilliseconds: UInt64

    public init(position: UInt64, entry: JournalEntry, inputDigest: [UInt8]?, timeMilliseconds: UInt64) {
        self.position = position
        self.entry = entry
        self.inputDigest = inputDigest
        self.timeMilliseconds = timeMilliseconds
    }

    init(_ recorded: Journal.Recorded) {
        self.init(position: recorded.entry.position, entry: recorded.entry, inputDigest: recorded.inputDigest,
                  timeMilliseconds: recorded.timeMilliseconds)
    }

    /// The recorded step, as a divergence names it.
    public var step: JournalDivergence.Step {
        .init(kind: entry.kind, name: entry.nameText, inputDigest: inputDigest)
    }
}

extension Ledger {
    /// The replay journal of `run`'s current generation (in `namespace`): the run's latest
    /// generation unless it ended — then a new one, with an empty journal (like `memo`).
    /// Nothing is written until the first step. Throws `.invalidArgument` for an empty run id,
    /// `.limitExceeded` for a run id or namespace over its limit.
    public func journal(run: String, namespace: String = "", limits: JournalLimits = JournalLimits()) async throws -> Journal {
        let memoRun = MemoRun(namespace: namespace, run: run)
        try memoRun.validate()
        if closed.withLock({ $0 }) { throw LedgerError(.closed, "the ledger is closed") }
        let generation = try await store.memoGeneration(of: memoRun)
        return Journal(run: memoRun, generation: generation, limits: limits, ledger: self)
    }

    /// Every recorded position of the journal of `run`'s `generation` (default: the latest
    /// the ledger holds), in order — what `onceledger journal` shows and exports write.
    public func journalRecords(run: String, namespace: String = "", generation: UInt64? = nil) async throws -> [JournalRecord] {
        let memoRun = MemoRun(namespace: namespace, run: run)
        try memoRun.validate()
        guard let generation = try await journalGeneration(memoRun, generation) else { return [] }
        return try await Journal.records(store: store, run: memoRun, generation: generation)
    }

    func journalGeneration(_ run: MemoRun, _ generation: UInt64?) async throws -> UInt64? {
        if let generation { return generation }
        return try await store.runs(RunQuery(namespace: run.namespace, run: run.run)).last?.generation
    }
}

extension Journal {
    /// Reads positions 0, 1, … of a run generation until the first free one.
    static func records(store: any LedgerStore, run: MemoRun, generation: UInt64) async throws -> [JournalRecord] {
        var records: [JournalRecord] = []
        var position: UInt64 = 0
        while true {
            let positions = Array(position..<(position + UInt64(readAheadPositions)))
            let values = try await store.memoGetMany(positions.map {
                MemoKey(run: run, generation: generation, step: JournalEntry.reservedStep, name: JournalEntry.positionName($0))
            })
            for (at, value) in zip(positions, values) {
                guard let value else { return records }
                records.append(JournalRecord(try recorded(value, position: at, run: run, generation: generation)))
            }
            position += UInt64(readAheadPositions)
        }
    }
}

extension Ledger {
    /// `once` on a key under `IdempotencyKey.reservedPrefix`, which only the journal's effects
    /// may claim (`once` refuses it to any other caller). The effect's own body runs without
    /// that permission: a key it claims is the user's.
    func journalEffectOnce<Output: Codable & Sendable>(
        _ key: IdempotencyKey, as type: Output.Type = Output.self, whenPending policy: PendingPolicy<Output> = .failClosed,
        _ body: @escaping @Sendable (EffectContext) async throws -> Output
    ) async throws -> OnceOutcome<Output> {
        try await OnceTaskContext.$journalEffect.withValue(true) {
            try await once(key, as: type, whenPending: policy) { context in
                try await OnceTaskContext.$journalEffect.withValue(false) { try await body(context) }
            }
        }
    }
}
