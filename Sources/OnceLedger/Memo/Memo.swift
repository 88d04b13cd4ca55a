import Foundation
import OnceLedgerFormat

/// A step's memo: values it computed, stored per name, so that a retried step finds what
/// an earlier attempt already paid for instead of paying again (README "Memo").
///
/// Bound to one generation of one run (`Ledger.memo(run:step:namespace:)`) and one step.
/// Unlike `once`, the memo is a cache: a value lost costs a recomputation, never
/// correctness; the values of an ended run are swept after its retention window.
///
/// Each value is stored with the digest of an optional `input` (SHA-256 over its
/// canonical encoding, `CanonicalEncoding`): asking for a name with another input (a
/// changed prompt) throws `.memoInputMismatch` instead of answering with a stale value.
/// Names match exactly (byte for byte). `Codable` values are stored as JSON with sorted
/// keys; `bytes`/`put(_:bytes:)` store raw bytes.
///
/// Reads of an ended generation return its values until it is swept; puts to it throw
/// `.runEnded` — a run id used again after its run ended gets a new generation from
/// `Ledger.memo`, which does not see the old values.
public struct Memo: Sendable {
    public let run: MemoRun
    /// The run generation this memo reads and writes (unique in the ledger).
    public let generation: UInt64
    public let step: String
    let store: any LedgerStore
    let clock: @Sendable () -> UInt64
    /// The ledger's decoded values (`MemoDecodedCache`); nil: every get decodes.
    var decodedCache: MemoDecodedCache? = nil

    /// The stored value of `name` decoded as `T`, or nil if there is none. Throws
    /// `.memoInputMismatch` if it was stored with another input than `input`, and
    /// `.memoDecodingFailed` if it does not decode as `T`.
    public func get<T: Decodable>(_ name: String, as type: T.Type = T.self, input: (any Encodable)? = nil)
        async throws -> T?
    {
        guard let bytes = try await bytes(name, input: input) else { return nil }
        return try decode(bytes, as: T.self, name: name)
    }

    /// `get` for a `Sendable` type: a value whose stored bytes were decoded as `T` before
    /// is answered from the ledger's decoded values (`MemoDecodedCache`) without decoding
    /// again; the bytes are still read and compared, and the input still checked.
    public func get<T: Decodable & Sendable>(_ name: String, as type: T.Type = T.self, input: (any Encodable)? = nil)
        async throws -> T?
    {
        guard let bytes = try await bytes(name, input: input) else { return nil }
        return try decodeRemembering(bytes, as: T.self, name: name)
    }

    /// The stored bytes of `name`, or nil if there is none (`get`'s input rule).
    public func bytes(_ name: String, input: (any Encodable)? = nil) async throws -> [UInt8]? {
        let digest = try Memo.digest(input)
        return try await read(name, digest: digest)?.bytes
    }

    /// Stores `value` (as JSON with sorted keys) under `name`, with `input`'s digest;
    /// replaces what the name held. Durable before returning. Throws `.runEnded` if the
    /// run generation ended, `.limitExceeded` (nothing written) over a limit.
    public func put<T: Encodable>(_ name: String, _ value: T, input: (any Encodable)? = nil) async throws {
        try await write(name, bytes: Memo.encode(value), digest: Memo.digest(input))
    }

    /// Stores raw `bytes` under `name` (`put`'s rules).
    public func put(_ name: String, bytes: [UInt8], input: (any Encodable)? = nil) async throws {
        try await write(name, bytes: bytes, digest: Memo.digest(input))
    }

    /// The value of `name` if stored (`.cached`), else `compute()`'s, stored before it is
    /// returned (`.computed`). A value stored for another input throws
    /// `.memoInputMismatch` and `compute` does not run. Two callers that find nothing at
    /// once both compute; the later put wins (a cache, not a lock: use `once` for an
    /// effect that must happen once).
    public func remember<T: Codable>(_ name: String, as type: T.Type = T.self, input: (any Encodable)? = nil,
                                     _ compute: () async throws -> T) async throws -> Remembered<T> {
        try await remembering(name, input: input, decode: { try decode($0, as: T.self, name: name) },
                              encode: { try Memo.encode($0) }, compute)
    }

    /// `remember` for a `Sendable` type: a cached value is answered like `get` answers it
    /// (from the ledger's decoded values when its bytes were decoded before).
    public func remember<T: Codable & Sendable>(_ name: String, as type: T.Type = T.self, input: (any Encodable)? = nil,
                                                _ compute: () async throws -> T) async throws -> Remembered<T> {
        try await remembering(name, input: input, decode: { try decodeRemembering($0, as: T.self, name: name) },
                              encode: { try Memo.encode($0) }, compute)
    }

    /// `remember` for raw bytes.
    public func rememberBytes(_ name: String, input: (any Encodable)? = nil,
                              _ compute: () async throws -> [UInt8]) async throws -> Remembered<[UInt8]> {
        try await remembering(name, input: input, decode: { $0 }, encode: { $0 }, compute)
    }

    /// The one get-or-compute of the `remember` forms: the stored value under `input`'s
    /// digest, decoded, or `compute()`'s, stored before it is returned.
    private func remembering<T>(_ name: String, input: (any Encodable)?, decode: ([UInt8]) throws -> T,
                                encode: (T) throws -> [UInt8],
                                _ compute: () async throws -> T) async throws -> Remembered<T> {
        let digest = try Memo.digest(input)
        if let stored = try await read(name, digest: digest) { return .cached(try decode(stored.bytes)) }
        let value = try await compute()
        try await write(name, bytes: encode(value), digest: digest)
        return .computed(value)
    }

    // MARK: Plumbing

    func key(_ name: String) -> MemoKey { MemoKey(run: run, generation: generation, step: step, name: name) }

    private func read(_ name: String, digest: [UInt8]?) async throws -> MemoValue? {
        try Memo.checkName(name)
        guard let stored = try await store.memoGet(key(name)) else { return nil }
        if stored.inputDigest != digest {
            throw LedgerError(
                .memoInputMismatch,
                "memo value \"\(name)\" of step \"\(step)\" (run \(run), generation \(generation)) was stored for \(Memo.describe(stored.inputDigest)), not for \(Memo.describe(digest)): its input changed, so it is not an answer to this question. Use another name for the new input, or put the new value explicitly")
        }
        return stored
    }

    private func write(_ name: String, bytes: [UInt8], digest: [UInt8]?) async throws {
        try Memo.checkName(name)
        if bytes.count > FormatLimits.valueBytesMax {
            throw LedgerError(
                .limitExceeded,
                "memo value \"\(name)\" of step \"\(step)\" is \(bytes.count) bytes; the limit is \(FormatLimits.valueBytesMax). Store a reference (an object-store key, a URL) instead of the payload; nothing was written",
                limit: "valueBytesMax")
        }
        try await store.memoPut(MemoPutRequest(key: key(name), value: bytes, inputDigest: digest,
                                               timeMilliseconds: clock()))
    }

    static func checkName(_ name: String) throws {
        try MemoRun.check(name, FormatLimits.memoNameBytesMax, "value name", limit: "memoNameBytesMax")
    }

    /// Throws `.invalidArgument` (the encoder's error underneath) for an input that does not
    /// encode.
    static func digest(_ input: (any Encodable)?) throws -> [UInt8]? {
        guard let input else { return nil }
        do {
            return SHA256.hash(try CanonicalEncoding.encode(input))
        } catch let error as LedgerError {
            throw error
        } catch {
            throw LedgerError(.invalidArgument,
                              "the memo input \(type(of: input)) does not encode: \(error). Give an input whose encoding cannot fail; nothing was read or written",
                              underlyingError: error)
        }
    }

    static func describe(_ digest: [UInt8]?) -> String {
        guard let digest else { return "no input" }
        return "input " + Hex.string(digest.prefix(6)) + "…"
    }

    /// `value` as JSON with sorted keys. Throws `.invalidArgument` (the encoder's error
    /// underneath) for a value JSON cannot hold (a `Double.nan`, say).
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(value))
        } catch {
            throw LedgerError(.invalidArgument,
                              "the memo value \(T.self) does not encode as JSON: \(error). Store a value JSON can hold (no NaN or infinity), or its bytes with `put(_:bytes:)`; nothing was written",
                              underlyingError: error)
        }
    }

    /// `decode`, through the ledger's decoded values when it has them.
    private func decodeRemembering<T: Decodable & Sendable>(_ bytes: [UInt8], as type: T.Type, name: String) throws -> T {
        guard let decodedCache else { return try decode(bytes, as: T.self, name: name) }
        let cacheKey = MemoDecodedCache.Key(key: key(name), type: ObjectIdentifier(T.self))
        if let value = decodedCache.value(cacheKey, bytes: bytes, as: T.self) { return value }
        let value = try decode(bytes, as: T.self, name: name)
        decodedCache.remember(cacheKey, bytes: bytes, value: value)
        return value
    }

    private func decode<T: Decodable>(_ bytes: [UInt8], as type: T.Type, name: String) throws -> T {
        do {
            // Decoded in place: the bytes are not copied into a `Data` first.
            return try bytes.withUnsafeBytes { raw in
                guard let base = raw.baseAddress else { return try JSONDecoder().decode(T.self, from: Data()) }
                return try JSONDecoder().decode(T.self, from: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base),
                                                                   count: raw.count, deallocator: .none))
            }
        } catch {
            throw LedgerError(
                .memoDecodingFailed,
                "memo value \"\(name)\" of step \"\(step)\" (run \(run)) does not decode as \(T.self): \(error). Read it with `bytes(_:)`, or store it under another name",
                underlyingError: error)
        }
    }
}

/// What `Memo.remember` returns: the value, and whether it was found or computed now.
public enum Remembered<Value> {
    /// Found in the memo: nothing was computed.
    case cached(Value)
    /// Computed now and stored.
    case computed(Value)

    public var value: Value {
        switch self {
        case .cached(let value), .computed(let value): value
        }
    }

    public var wasCached: Bool {
        if case .cached = self { return true }
        return false
    }
}

extension Remembered: Sendable where Value: Sendable {}
extension Remembered: Equatable where Value: Equatable {}

// MARK: - The ledger's memo API

extension Ledger {
    /// The memo of `step` in the current generation of `run` (in `namespace`): the run's
    /// latest generation, unless it ended — then a new one, which does not see the old
    /// values. Throws `.invalidArgument` for an empty run id or an empty step (the journal's,
    /// `JournalEntry.reservedStep`), `.limitExceeded` for a run
    /// id, namespace or step over its limit (`FormatLimits`); nothing is written.
    public func memo(run: String, step: String, namespace: String = "") async throws -> Memo {
        let memoRun = MemoRun(namespace: namespace, run: run)
        try memoRun.validate()
        try MemoRun.check(step, FormatLimits.stepBytesMax, "step", limit: "stepBytesMax")
        if step == JournalEntry.reservedStep {
            throw LedgerError(.invalidArgument,
                              "the empty memo step is reserved for the replay journal (`ledger.journal(run:)`); name the step")
        }
        if closed.withLock({ $0 }) { throw LedgerError(.closed, "the ledger is closed") }
        let generation = try await store.memoGeneration(of: memoRun)
        return Memo(run: memoRun, generation: generation, step: step, store: store, clock: clock,
                    decodedCache: memoDecodedCache)
    }

    /// Ends `run`'s current generation durably, with `status` and the time from the
    /// ledger's clock; puts to it are refused from then on, and its memo is swept once
    /// `memoRetention`'s window for `status` has passed. Finishing a run whose latest
    /// generation already ended writes nothing and returns that end.
    @discardableResult
    public func finishRun(_ run: String, namespace: String = "", status: RunStatus) async throws -> RunInfo {
        if closed.withLock({ $0 }) { throw LedgerError(.closed, "the ledger is closed") }
        return try await store.finishRun(MemoRun(namespace: namespace, run: run), status: status,
                                         timeMilliseconds: clock())
    }

    /// The run generations whose memo the ledger holds (running, or ended and not swept yet).
    public func runs(namespace: String? = nil, run: String? = nil) async throws -> [RunInfo] {
        try await store.runs(RunQuery(namespace: namespace, run: run))
    }

    /// Sweeps now what the background sweeper sweeps: the memo of every run generation that
    /// ended at least its retention window before `now` (default: the ledger's clock).
    /// `retention` defaults to the ledger's `memoRetention`; without one, sweeps nothing.
    @discardableResult
    public func sweepMemo(now: UInt64? = nil, retention: MemoRetention? = nil) async throws -> MemoSweepResult {
        guard let retention = retention ?? memoRetention else { return MemoSweepResult() }
        return try await store.sweepMemo(MemoSweepRequest(nowMilliseconds: now ?? clock(), retention: retention))
    }

    /// Waits until the background sweeper's first pass (the one at open) has finished
    /// (returns at once without `memoRetention`).
    package func firstMemoSweep() async {
        await memoSweeper.withLock { $0 }?.first.value
    }
}

/// The background sweeper of a ledger with `memoRetention`: sweeps at once, then every
/// `sweepInterval` (`interval(_:)`: within `sweepIntervalMin` … `sweepIntervalMax`), until
/// `stop()` (the ledger's `close()`). A failed pass is retried at the next interval; a closed
/// store ends it.
final class MemoSweeper: Sendable {
    let first: Task<Void, Never>
    private let loop: Task<Void, Never>

    /// The shortest interval the sweeper sleeps between passes: a zero or negative
    /// `sweepInterval` would make it spin, each pass scanning every run generation under the
    /// memo's lock.
    static let sweepIntervalMin: Duration = .seconds(1)
    /// The longest: `Task.sleep` traps when its deadline does not fit (an interval near
    /// `Int64.max` seconds, someone's "never"); about 136 years sleeps as long as anyone waits.
    static let sweepIntervalMax: Duration = .seconds(1 << 32)

    /// `requested`, within `sweepIntervalMin` … `sweepIntervalMax`.
    static func interval(_ requested: Duration) -> Duration {
        min(max(requested, sweepIntervalMin), sweepIntervalMax)
    }

    /// `sleep`: how the loop waits between passes (tests record what it asks for); throwing
    /// ends the loop, as a cancelled `Task.sleep` does.
    init(store: any LedgerStore, clock: @escaping @Sendable () -> UInt64, retention: MemoRetention,
         sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }) {
        let first = Task.detached {
            _ = try? await store.sweepMemo(MemoSweepRequest(nowMilliseconds: clock(), retention: retention))
        }
        self.first = first
        let interval = MemoSweeper.interval(retention.sweepInterval)
        loop = Task.detached {
            await first.value
            while !Task.isCancelled {
                do {
                    try await sleep(interval)
                } catch {
                    return
                }
                do {
                    _ = try await store.sweepMemo(MemoSweepRequest(nowMilliseconds: clock(), retention: retention))
                } catch let error as LedgerError where error.code == .closed {
                    return
                } catch {
                    continue
                }
            }
        }
    }

    func stop() {
        first.cancel()
        loop.cancel()
    }

    /// Whether `stop()` was called.
    var isStopped: Bool { loop.isCancelled }
}
