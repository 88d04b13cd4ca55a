import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization

extension Ledger {
    /// Runs `effect` exactly once for `key` and returns its receipt, or returns the
    /// stored receipt if it already ran.
    ///
    /// The ledger's store decides whether the effect runs (`LedgerStore.claim`).
    /// Order of durability: the intent record is durable (fdatasync'd) before
    /// `effect` starts; the completion record is durable before `once` returns. If the
    /// process dies in between, the key is pending-unknown on the next open — the
    /// effect may or may not have happened — and `whenPending` decides what happens.
    ///
    /// What the caller sees:
    /// - `.performed(receipt, entry)`: the effect ran now and its completion is durable.
    /// - `.alreadyDone(receipt, entry)`: it ran before (`entry.timeMilliseconds` is when).
    /// - throws a `LedgerError`: `.pendingUnknown` (fail-closed), `.fingerprintMismatch`
    ///   (same key, different params; carries the stored entry), `.limitExceeded` (key too
    ///   large: nothing written; or receipt too large: the effect happened and is recorded
    ///   as done without its receipt), `.effectFailed` (the effect threw: the key is now
    ///   pending-unknown), `.released` (the effect threw `EffectDidNotHappen`, its
    ///   `underlyingError`: the intent was released, the key is absent again),
    ///   `.reconcileFailed` (the reconcile closure threw: nothing written), or
    ///   `.receiptDecodingFailed`, `.io`, `.poisoned`, `.closed`, `.invalidArgument`.
    /// - throws `CancellationError` if the calling task was cancelled before the effect
    ///   started: nothing was written, or the intent was released.
    ///
    /// Cancellation never interrupts a running effect: once it started, it runs (in an
    /// unstructured task that does not inherit the caller's cancellation) and its
    /// completion is recorded; the cancelled caller gets that outcome.
    ///
    /// Concurrent callers with the same key: one runs the effect, the others wait and
    /// get `.alreadyDone` with its receipt. If it fails, each waiter decides again under
    /// its own policy (the key is then absent or pending-unknown): no caller receives
    /// another caller's error.
    /// A caller that finds the key claimed in the store by another owner (another
    /// `Ledger` on the same store) waits until that claim ends, then decides again.
    ///
    /// The receipt is stored as JSON (sorted keys), at most `FormatLimits.receiptBytesMax`
    /// bytes; use `onceBytes` to store raw bytes.
    @inlinable @discardableResult
    public func once<Receipt: Codable & Sendable>(
        _ key: IdempotencyKey, as type: Receipt.Type = Receipt.self, scope: DeduplicationScope = .forever,
        whenPending policy: PendingPolicy<Receipt> = .failClosed,
        _ effect: @escaping @Sendable (EffectContext) async throws -> Receipt
    ) async throws -> OnceOutcome<Receipt> {
        // Inlinable, so a caller's `Receipt` is specialized where `once` is called:
        // unspecialized, every call looked up the generic metadata of `Mutex<Receipt?>`
        // and `OnceOutcome<Receipt>` at run time and cast `Receipt` dynamically.
        let corePolicy: PendingPolicy<[UInt8]>
        switch policy {
        case .failClosed: corePolicy = .failClosed
        case .retry: corePolicy = .retry
        case .reconcile(let ask):
            corePolicy = .reconcile { entry in
                switch try await ask(entry) {
                case .happened(let receipt): return .happened(try ReceiptCoding.encode(receipt))
                case .didNotHappen: return .didNotHappen
                }
            }
        }
        // The value the effect returned, so `.performed` hands it back as is rather
        // than decoding what was just stored.
        let produced = Mutex<Receipt?>(nil)
        let outcome = try await onceBytes(key, scope: scope, whenPending: corePolicy) { context in
            let receipt = try await effect(context)
            produced.withLock { $0 = receipt }
            return try ReceiptCoding.encode(receipt)
        }
        switch outcome {
        case .performed(let bytes, let entry):
            if let receipt = produced.withLock({ $0 }) { return .performed(receipt, entry) }
            return .performed(try ReceiptCoding.decode(Receipt.self, bytes, entry: entry), entry)
        case .alreadyDone(let bytes, let entry):
            return .alreadyDone(try ReceiptCoding.decode(Receipt.self, bytes, entry: entry), entry)
        }
    }

    /// `once` with a raw-bytes receipt.
    @discardableResult
    public func onceBytes(
        _ key: IdempotencyKey, scope: DeduplicationScope = .forever,
        whenPending policy: PendingPolicy<[UInt8]> = .failClosed,
        _ effect: @escaping @Sendable (EffectContext) async throws -> [UInt8]
    ) async throws -> OnceOutcome<[UInt8]> {
        try key.validate()
        // Keys under `onceledger.journal/` are the journal's effects (FORMAT §10.3): a
        // compaction drops a done one once its run generation is swept, so a key of the
        // caller's there could be dropped and its effect run again. Only `Journal.effect`
        // claims them (the check reads the task-local only for a key with the prefix).
        if key.keyBytes.bytes.starts(with: IdempotencyKey.reservedPrefixBytes) && !OnceTaskContext.journalEffect {
            throw LedgerError(.invalidArgument,
                              "the key \"\(key.rawValue)\" starts with \"\(IdempotencyKey.reservedPrefix)\", which is reserved for the journal's effects; use another key",
                              key: key.rawValue)
        }
        if OnceTaskContext.runningKeys?.contains(key.keyBytes) == true {
            throw LedgerError(.invalidArgument,
                              "once(\"\(key.rawValue)\") was called from inside its own effect; that would wait on itself forever",
                              key: key.rawValue)
        }
        // The common duplicate first: no call of this key runs in this process and the store
        // holds it done, so it returns without joining the table of running calls (no
        // allocation, no insert and removal). Anything else takes the path below.
        // (Its time is the first claim's too: one call, one reading of the clock.)
        var firstTime: UInt64?
        if inFlight.withLock({ $0[key.keyBytes] == nil }) {
            try Task.checkCancellation()
            if closed.withLock({ $0 }) { throw LedgerError(.closed, "the ledger is closed") }
            let time = now()
            let request = ClaimRequest(key: key, scope: scope, whenPending: .report, timeMilliseconds: time)
            if let entry = try await store.doneEntry(request) { return .alreadyDone(entry.receipt, entry) }
            firstTime = time
        }
        while true {
            // The fast path's reading of the clock serves only a claim made right after it.
            let time = firstTime
            firstTime = nil
            switch enter(key) {
            case .mismatch:
                let stored = (try? await store.entry(key.rawValue)) ?? nil
                throw LedgerError(
                    .fingerprintMismatch,
                    "key \"\(key.rawValue)\" is running with different params; use a new key for different params",
                    key: key.rawValue, entry: stored)
            case .wait(let call):
                switch await call.wait() {
                case .success(let entry):
                    return .alreadyDone(entry.receipt, entry)
                case .failure:
                    // The runner's failure is its own (its effect threw, its task was
                    // cancelled, …): decide again, under this caller's policy, on the
                    // state it left (absent after a release, pending-unknown otherwise).
                    continue
                }
            case .lead(let call):
                do {
                    return try await lead(key, call: call, scope: scope, policy: policy, firstTime: time,
                                          effect: effect)
                } catch {
                    // Ends the call for its waiters (a no-op if it already ended with an outcome).
                    finish(key, call, .failure(LedgerErrorOrOther(error: error)))
                    throw error
                }
            }
        }
    }

    enum Entrance {
        /// Another call of this key runs in this process with other params.
        case mismatch
        /// Another call of this key runs in this process: wait for its outcome.
        case wait(InFlightCall)
        /// This caller is the key's call in this process: ask the store.
        case lead(InFlightCall)
    }

    /// Joins the key's running call in this process, or becomes it.
    func enter(_ key: IdempotencyKey) -> Entrance {
        inFlight.withLock { running -> Entrance in
            if let call = running[key.keyBytes] {
                return call.fingerprint == key.fingerprint ? .wait(call) : .mismatch
            }
            let call = InFlightCall(fingerprint: key.fingerprint)
            running[key.keyBytes] = call
            return .lead(call)
        }
    }

    /// The key's call in this process: claims the key in the store until the store lets it
    /// run the effect or answers for it. `.running` (another owner of the store holds a live
    /// claim) waits for that claim to end and claims again; pending-unknown under
    /// `.reconcile` asks the closure, resolves, and claims again if the effect did not happen.
    /// Ends `call` with the outcome; errors are thrown and ended by the caller.
    private func lead(
        _ key: IdempotencyKey, call: InFlightCall, scope: DeduplicationScope, policy: PendingPolicy<[UInt8]>,
        firstTime: UInt64?, effect: @escaping @Sendable (EffectContext) async throws -> [UInt8]
    ) async throws -> OnceOutcome<[UInt8]> {
        let whenPending: PendingTakeover = if case .retry = policy { .retry } else { .report }
        var firstTime = firstTime
        while true {
            // Nothing has been written for this call yet (or its reconcile resolved the key
            // absent): a cancelled caller stops here.
            try Task.checkCancellation()
            if closed.withLock({ $0 }) { throw LedgerError(.closed, "the ledger is closed") }
            let time = firstTime ?? now()
            firstTime = nil
            let request = ClaimRequest(key: key, scope: scope, whenPending: whenPending, timeMilliseconds: time)
            switch try await store.claim(request) {
            case .claimed(let claim):
                return try await run(key, call: call, claim: claim, effect: effect)
            case .done(let entry):
                finish(key, call, .success(entry))
                return .alreadyDone(entry.receipt, entry)
            case .fingerprintMismatch(let entry):
                throw LedgerError(
                    .fingerprintMismatch,
                    "key \"\(key.rawValue)\" was used before with different params; use a new key for different params",
                    key: key.rawValue, entry: entry)
            case .running(let entry):
                try await store.waitForChange(of: entry)
            case .pendingUnknown(let entry):
                guard case .reconcile(let ask) = policy else {
                    throw LedgerError(
                        .pendingUnknown,
                        "key \"\(key.rawValue)\" has an intent (attempt \(entry.attempt)) but no completion: the effect may or may not have happened. Resolve it (`onceledger resolve`), or call with a retry or reconcile policy",
                        key: key.rawValue, entry: entry)
                }
                if let outcome = try await reconcile(key, entry, ask) {
                    finish(key, call, .success(outcome.entry))
                    return outcome
                }
            }
        }
    }

    /// Asks `ask` whether the pending effect of `entry` happened and resolves the key
    /// accordingly (checked against the attempt that was asked about). Returns the outcome
    /// when it happened; nil when the caller should claim again (it did not happen, so the
    /// key is absent now — or the key changed meanwhile).
    private func reconcile(
        _ key: IdempotencyKey, _ entry: EntryInfo, _ ask: @Sendable (EntryInfo) async throws -> ReconcileAnswer<[UInt8]>
    ) async throws -> OnceOutcome<[UInt8]>? {
        try Task.checkCancellation()
        let answer: ReconcileAnswer<[UInt8]>
        do {
            answer = try await ask(entry)
        } catch let cancelled as CancellationError where Task.isCancelled {
            throw cancelled
        } catch {
            throw LedgerError(
                .reconcileFailed,
                "the reconcile closure for key \"\(key.rawValue)\" threw \(error); nothing was written and the key is still pending-unknown. Call again, or resolve it (`onceledger resolve`)",
                key: key.rawValue, entry: entry, underlyingError: error)
        }
        let outcome: ResolveRequest.Outcome
        let reason: String
        switch answer {
        case .happened(let receipt):
            try checkReceipt(receipt, key: key.rawValue)
            (outcome, reason) = (.done(receipt: receipt), "reconcile: the effect happened")
        case .didNotHappen:
            (outcome, reason) = (.absent, "reconcile: the effect did not happen")
        }
        let resolved: EntryInfo
        do {
            resolved = try await store.resolve(ResolveRequest(
                key: key.rawValue, outcome: outcome, expected: .pendingUnknown, expectedAttempt: entry.attempt,
                expectedGeneration: entry.generation, actor: "reconcile", reason: reason, timeMilliseconds: now()))
        } catch let error as LedgerError where error.code == .wrongState {
            // Another owner of the store acted on the key since it was read: decide again.
            return nil
        }
        if case .done(let receipt) = outcome { return .alreadyDone(receipt, resolved) }
        return nil
    }

    func finish(_ key: IdempotencyKey, _ call: InFlightCall, _ result: Result<EntryInfo, LedgerErrorOrOther>) {
        inFlight.withLock { running in
            if running[key.keyBytes] === call { running[key.keyBytes] = nil }
        }
        call.finish(result)
    }

    /// `text` cut to at most `utf8BytesMax` UTF-8 bytes, at a Unicode scalar boundary.
    func truncated(_ text: String, utf8BytesMax: Int) -> String {
        guard text.utf8.count > utf8BytesMax else { return text }
        var bytes = 0
        var kept = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            bytes += UTF8.width(scalar)
            if bytes > utf8BytesMax { break }
            kept.append(scalar)
        }
        return String(kept)
    }

    func checkReceipt(_ receipt: [UInt8], key: String) throws {
        if receipt.count > FormatLimits.receiptBytesMax {
            throw LedgerError(.limitExceeded,
                              "the receipt is \(receipt.count) bytes; the limit is \(FormatLimits.receiptBytesMax). Store a reference (an id, a URL) instead of the payload",
                              limit: "receiptBytesMax", key: key)
        }
    }

    /// Intent (durable, written by the store's claim) → effect → completion (durable).
    ///
    /// A caller cancelled before the claim writes nothing; one cancelled while the intent
    /// was being written releases it without starting the effect. Once the effect starts,
    /// it and the recording of its outcome run in an unstructured task that does not
    /// inherit the caller's cancellation, and the caller awaits it: cancelling a caller
    /// never turns a key pending-unknown.
    private func run(
        _ key: IdempotencyKey, call: InFlightCall, claim: Claim,
        effect: @escaping @Sendable (EffectContext) async throws -> [UInt8]
    ) async throws -> OnceOutcome<[UInt8]> {
        if Task.isCancelled {
            // Durable intent, effect not started: nothing external was done.
            try await store.release(claim, reason: "the caller was cancelled before the effect started",
                                    timeMilliseconds: now())
            throw CancellationError()
        }
        // The task the effect runs in: the caller's executor preference when it is this
        // ledger's executor (so the opt-in fast path keeps its thread), else the default.
        // (A separate task is the only way Swift 6.3 has to keep a caller's cancellation
        // from an effect; a cancellation shield, once the toolchain has one, would save
        // the hop.)
        let preferred = spinningExecutorIfPreferred()
        let task = Task(executorPreference: preferred) { [self] in
            try await self.perform(key, call: call, claim: claim, effect: effect)
        }
        return try await task.value
    }

    /// This ledger's `executor` if the current task prefers it, else nil.
    private func spinningExecutorIfPreferred() -> SpinningExecutor? {
        guard let current = withUnsafeCurrentTask(body: { $0?.unownedTaskExecutor }),
              let executor = createdExecutor else { return nil }
        return current == executor.asUnownedTaskExecutor() ? executor : nil
    }

    /// The effect, then its completion (or release); runs in the task `run` made. Ends
    /// `call` itself on success and on the errors it makes, so waiters are not held up
    /// until the caller resumes.
    private func perform(
        _ key: IdempotencyKey, call: InFlightCall, claim: Claim,
        effect: @Sendable (EffectContext) async throws -> [UInt8]
    ) async throws -> OnceOutcome<[UInt8]> {
        let context = EffectContext(key: key.rawValue, tokenScope: tokenScope, attempt: claim.attempt,
                                    generation: claim.generation)
        let returned: [UInt8]
        do {
            returned = try await OnceTaskContext.$runningKeys.withValue(
                RunningKey(key.keyBytes, outer: OnceTaskContext.runningKeys)
            ) {
                try await effect(context)
            }
        } catch let didNotHappen as EffectDidNotHappen {
            do {
                try await store.release(claim, reason: truncated(didNotHappen.reason, utf8BytesMax: FormatLimits.reasonBytesMax),
                                        timeMilliseconds: now())
            } catch {
                finish(key, call, .failure(LedgerErrorOrOther(error: error)))
                throw error
            }
            let released = LedgerError(
                .released,
                "the effect for key \"\(key.rawValue)\" did not happen (\(didNotHappen.reason)): its intent was released and the key is absent again; calling again runs the effect",
                key: key.rawValue, entry: (try? await store.entry(key.rawValue)) ?? nil, underlyingError: didNotHappen)
            finish(key, call, .failure(LedgerErrorOrOther(error: released)))
            throw released
        } catch {
            // Nothing to write: the intent stays, the key is pending-unknown.
            try? await store.abandon(claim)
            let failure = LedgerError(
                .effectFailed,
                "the effect for key \"\(key.rawValue)\" threw \(error); it may or may not have happened, so the key is pending-unknown. Throw EffectDidNotHappen from the effect when nothing external was done",
                key: key.rawValue, entry: (try? await store.entry(key.rawValue)) ?? nil, underlyingError: error)
            finish(key, call, .failure(LedgerErrorOrOther(error: failure)))
            throw failure
        }
        // The effect happened. A receipt over the limit cannot be stored, but the effect
        // must not become one that `.retry` runs (and pays for) again: it is recorded as
        // done with an empty receipt, and the caller gets `.limitExceeded` saying so.
        let oversized = returned.count > FormatLimits.receiptBytesMax
        let receipt = oversized ? [] : returned
        let done: EntryInfo
        do {
            done = try await store.complete(claim, receipt: receipt, timeMilliseconds: now())
        } catch {
            var typed = (error as? LedgerError) ?? LedgerError(.io, "\(error)")
            typed.message += " — the effect ran but its completion was not recorded; the key is pending-unknown"
            typed.key = key.rawValue
            finish(key, call, .failure(LedgerErrorOrOther(error: typed)))
            throw typed
        }
        finish(key, call, .success(done))
        if oversized {
            throw LedgerError(
                .limitExceeded,
                "the effect for key \"\(key.rawValue)\" ran and returned a receipt of \(returned.count) bytes; the limit is \(FormatLimits.receiptBytesMax). The effect happened, so the key is recorded as done without its receipt: later calls return it as already done (with an empty receipt) and never run it again. Store a reference (an id, a URL) instead of the payload",
                limit: "receiptBytesMax", key: key.rawValue, entry: done)
        }
        return .performed(receipt, done)
    }
}

/// The keys whose effects are running in the current task (to refuse re-entry).
enum OnceTaskContext {
    /// The innermost running key, linked to the ones it runs inside.
    @TaskLocal static var runningKeys: RunningKey? = nil
    /// Set by `Journal.effect` around its `once`: the one caller that may claim a key under
    /// `IdempotencyKey.reservedPrefix`.
    @TaskLocal static var journalEffect = false
}

/// One key whose effect is running in this task, and the key whose effect it runs in
/// (effects nest rarely and shallowly, so a list beats building a set per call).
final class RunningKey: Sendable {
    let key: KeyBytes
    let outer: RunningKey?

    init(_ key: KeyBytes, outer: RunningKey?) {
        self.key = key
        self.outer = outer
    }

    func contains(_ candidate: KeyBytes) -> Bool {
        var node: RunningKey? = self
        while let current = node {
            if current.key == candidate { return true }
            node = current.outer
        }
        return false
    }
}

@usableFromInline
enum ReceiptCoding {
    @inlinable
    static func encode<Receipt: Encodable>(_ receipt: Receipt) throws -> [UInt8] {
        if let bytes = receipt as? [UInt8] { return bytes }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(receipt))
    }

    @inlinable
    static func decode<Receipt: Decodable>(_ type: Receipt.Type, _ bytes: [UInt8], entry: EntryInfo) throws -> Receipt {
        if Receipt.self == [UInt8].self { return bytes as! Receipt }
        if bytes.isEmpty {
            throw LedgerError(.receiptDecodingFailed,
                              "\"\(entry.key)\" is done but has no stored receipt (its effect returned one over the limit, or an operator resolved it without one); the effect will not run again. Store one with `correctReceipt` or `onceledger resolve --correct`",
                              key: entry.key, entry: entry)
        }
        do {
            return try JSONDecoder().decode(Receipt.self, from: Data(bytes))
        } catch {
            throw LedgerError(.receiptDecodingFailed,
                              "the stored receipt of \"\(entry.key)\" does not decode as \(Receipt.self): \(error). Decode it as the type it was stored as, or correct it (`correctReceipt`, `onceledger resolve --correct`; the token stays the same)",
                              key: entry.key, entry: entry)
        }
    }
}
