import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import Synchronization

extension Ledger {
    /// Runs `effect` exactly once for `key` and returns its receipt, or returns the
    /// stored receipt if it already ran.
    ///
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
        if OnceTaskContext.runningKeys?.contains(key.keyBytes) == true {
            throw LedgerError(.invalidArgument,
                              "once(\"\(key.rawValue)\") was called from inside its own effect; that would wait on itself forever",
                              key: key.rawValue)
        }
        while true {
            switch decide(key, scope: scope, policy: policy) {
            case .fail(let error):
                throw error
            case .alreadyDone(let entry):
                return .alreadyDone(entry.receipt, entry)
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
            case .waitThenDecide(let call):
                // An operator resolve or forget of this key is being written: its outcome
                // is not ours to return; decide again on the state it leaves.
                _ = await call.wait()
                continue
            case .run(let call, let attempt, let generation):
                return try await run(key, call: call, attempt: attempt, generation: generation, scope: scope,
                                     effect: effect)
            case .reconcile(let call, let entry, let ask):
                try checkCancellation(key, call)
                let answer: ReconcileAnswer<[UInt8]>
                do {
                    answer = try await ask(entry)
                } catch let cancelled as CancellationError where Task.isCancelled {
                    finish(key, call, .failure(LedgerErrorOrOther(error: cancelled)))
                    throw cancelled
                } catch {
                    let failure = LedgerError(
                        .reconcileFailed,
                        "the reconcile closure for key \"\(key.rawValue)\" threw \(error); nothing was written and the key is still pending-unknown. Call again, or resolve it (`onceledger resolve`)",
                        key: key.rawValue, entry: entry, underlyingError: error)
                    finish(key, call, .failure(LedgerErrorOrOther(error: failure)))
                    throw failure
                }
                switch answer {
                case .happened(let receipt):
                    try await commit([.resolve(.init(
                        key: key.rawValue, outcome: .done, attempt: entry.attempt, timeMilliseconds: now(),
                        receipt: receipt, actor: "reconcile", reason: "reconcile: the effect happened"))],
                                     checkingReceipt: receipt, orFinish: key, call)
                    // Reading the receipt back can fail (damage, a dead disk): the call
                    // still ends, so the key's waiters decide again instead of waiting forever.
                    let done: EntryInfo
                    do {
                        done = try self.entry(key.rawValue) ?? entry
                    } catch {
                        finish(key, call, .failure(LedgerErrorOrOther(error: error)))
                        throw error
                    }
                    finish(key, call, .success(done))
                    return .alreadyDone(receipt, done)
                case .didNotHappen:
                    try await commit([.resolve(.init(
                        key: key.rawValue, outcome: .absent, attempt: entry.attempt, timeMilliseconds: now(),
                        receipt: [], actor: "reconcile", reason: "reconcile: the effect did not happen"))],
                                     orFinish: key, call)
                    return try await run(key, call: call, attempt: entry.attempt + 1, generation: entry.generation,
                                         scope: scope, effect: effect)
                }
            }
        }
    }

    enum Decision {
        case fail(LedgerError)
        case alreadyDone(EntryInfo)
        case wait(InFlightCall)
        case waitThenDecide(InFlightCall)
        case run(InFlightCall, attempt: UInt32, generation: UInt32)
        case reconcile(InFlightCall, EntryInfo, @Sendable (EntryInfo) async throws -> ReconcileAnswer<[UInt8]>)
    }

    /// Decides, atomically with registering as the key's running call.
    func decide(_ key: IdempotencyKey, scope: DeduplicationScope, policy: PendingPolicy<[UInt8]>) -> Decision {
        inFlight.withLock { running -> Decision in
            let stored: EntryInfo?
            do {
                stored = try entry(key.rawValue)
            } catch {
                return .fail(error as? LedgerError ?? LedgerError(.io, "\(error)", key: key.rawValue))
            }
            if let call = running[key.keyBytes] {
                if call.isOperator { return .waitThenDecide(call) }
                if call.fingerprint != key.fingerprint {
                    return .fail(LedgerError(
                        .fingerprintMismatch,
                        "key \"\(key.rawValue)\" is running with different params; use a new key for different params",
                        key: key.rawValue, entry: stored))
                }
                return .wait(call)
            }
            guard let entry = stored, entry.status != .absent else {
                let previous = stored
                let call = InFlightCall(fingerprint: key.fingerprint)
                running[key.keyBytes] = call
                return .run(call, attempt: (previous?.attempt ?? 0) + 1, generation: previous?.generation ?? 0)
            }
            if entry.fingerprint != key.fingerprint {
                return .fail(LedgerError(
                    .fingerprintMismatch,
                    "key \"\(key.rawValue)\" was used before with different params; use a new key for different params",
                    key: key.rawValue, entry: entry))
            }
            switch entry.status {
            case .done:
                let expired: Bool = switch scope {
                case .forever: false
                case .whileInFlight: true
                case .window(let milliseconds):
                    // A window reaching past UInt64.max never expires (no wrap-around).
                    entry.timeMilliseconds.addingReportingOverflow(milliseconds).overflow == false
                        && now() >= entry.timeMilliseconds + milliseconds
                }
                if !expired { return .alreadyDone(entry) }
                let call = InFlightCall(fingerprint: key.fingerprint)
                running[key.keyBytes] = call
                return .run(call, attempt: entry.attempt + 1, generation: entry.generation &+ 1)
            case .pendingUnknown:
                switch policy {
                case .failClosed:
                    return .fail(LedgerError(
                        .pendingUnknown,
                        "key \"\(key.rawValue)\" has an intent (attempt \(entry.attempt)) but no completion: the effect may or may not have happened. Resolve it (`onceledger resolve`), or call with a retry or reconcile policy",
                        key: key.rawValue, entry: entry))
                case .retry:
                    let call = InFlightCall(fingerprint: key.fingerprint)
                    running[key.keyBytes] = call
                    return .run(call, attempt: entry.attempt + 1, generation: entry.generation)
                case .reconcile(let ask):
                    let call = InFlightCall(fingerprint: key.fingerprint)
                    running[key.keyBytes] = call
                    return .reconcile(call, entry, ask)
                }
            case .absent:
                preconditionFailure("absent handled above")
            }
        }
    }

    func finish(_ key: IdempotencyKey, _ call: InFlightCall, _ result: Result<EntryInfo, LedgerErrorOrOther>) {
        inFlight.withLock { running in
            if running[key.keyBytes] === call { running[key.keyBytes] = nil }
        }
        call.finish(result)
    }

    /// Throws `CancellationError` (and ends the key's running call, so waiters decide
    /// again) if the calling task was cancelled: used only where nothing has been
    /// written for this call, or its intent is about to be released.
    func checkCancellation(_ key: IdempotencyKey, _ call: InFlightCall) throws {
        guard Task.isCancelled else { return }
        let cancelled = CancellationError()
        finish(key, call, .failure(LedgerErrorOrOther(error: cancelled)))
        throw cancelled
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

    /// `commit`, and if it (or the receipt check) fails, ends the key's running call with
    /// that error before rethrowing it, so waiters get the same error.
    func commit(_ bodies: [RecordBody], checkingReceipt receipt: [UInt8]? = nil, orFinish key: IdempotencyKey,
                _ call: InFlightCall) async throws {
        do {
            if let receipt { try checkReceipt(receipt, key: key.rawValue) }
            try await commit(bodies)
        } catch {
            finish(key, call, .failure(LedgerErrorOrOther(error: error)))
            throw error
        }
    }

    func checkReceipt(_ receipt: [UInt8], key: String) throws {
        if receipt.count > FormatLimits.receiptBytesMax {
            throw LedgerError(.limitExceeded,
                              "the receipt is \(receipt.count) bytes; the limit is \(FormatLimits.receiptBytesMax). Store a reference (an id, a URL) instead of the payload",
                              limit: "receiptBytesMax", key: key)
        }
    }

    /// Intent (durable) → effect → completion (durable).
    ///
    /// A caller cancelled before the intent is written writes nothing; one cancelled while
    /// the intent was being written releases it without starting the effect. Once the
    /// effect starts, it and the recording of its outcome run in an unstructured task that
    /// does not inherit the caller's cancellation, and the caller awaits it: cancelling a
    /// caller never turns a key pending-unknown.
    private func run(
        _ key: IdempotencyKey, call: InFlightCall, attempt: UInt32, generation: UInt32, scope: DeduplicationScope,
        effect: @escaping @Sendable (EffectContext) async throws -> [UInt8]
    ) async throws -> OnceOutcome<[UInt8]> {
        try checkCancellation(key, call)
        let windowMilliseconds: UInt64
        let recordScope: RecordBody.Scope
        switch scope {
        case .forever: (recordScope, windowMilliseconds) = (.forever, 0)
        case .whileInFlight: (recordScope, windowMilliseconds) = (.whileInFlight, 0)
        case .window(let milliseconds): (recordScope, windowMilliseconds) = (.window, milliseconds)
        }
        try await commit([.intent(.init(
            key: key.rawValue, fingerprint: key.fingerprint, attempt: attempt, generation: generation,
            scope: recordScope, windowMilliseconds: windowMilliseconds, timeMilliseconds: now()))],
                         orFinish: key, call)
        if Task.isCancelled {
            // Durable intent, effect not started: nothing external was done.
            try await commit([.release(.init(key: key.rawValue, attempt: attempt, timeMilliseconds: now(),
                                              reason: "the caller was cancelled before the effect started"))],
                             orFinish: key, call)
            let cancelled = CancellationError()
            finish(key, call, .failure(LedgerErrorOrOther(error: cancelled)))
            throw cancelled
        }
        // The task the effect runs in: the caller's executor preference when it is this
        // ledger's executor (so the opt-in fast path keeps its thread), else the default.
        // (A separate task is the only way Swift 6.3 has to keep a caller's cancellation
        // from an effect; a cancellation shield, once the toolchain has one, would save
        // the hop.)
        let preferred = spinningExecutorIfPreferred()
        let task = Task(executorPreference: preferred) { [self] in
            try await self.perform(key, call: call, attempt: attempt, generation: generation, effect: effect)
        }
        return try await task.value
    }

    /// This ledger's `executor` if the current task prefers it, else nil.
    private func spinningExecutorIfPreferred() -> SpinningExecutor? {
        guard let current = withUnsafeCurrentTask(body: { $0?.unownedTaskExecutor }),
              let executor = createdExecutor else { return nil }
        return current == executor.asUnownedTaskExecutor() ? executor : nil
    }

    /// The effect, then its completion (or release) record; runs in the task `run` made.
    private func perform(
        _ key: IdempotencyKey, call: InFlightCall, attempt: UInt32, generation: UInt32,
        effect: @Sendable (EffectContext) async throws -> [UInt8]
    ) async throws -> OnceOutcome<[UInt8]> {
        let context = EffectContext(key: key.rawValue, tokenScope: tokenScope, attempt: attempt, generation: generation)
        let returned: [UInt8]
        do {
            returned = try await OnceTaskContext.$runningKeys.withValue(
                RunningKey(key.keyBytes, outer: OnceTaskContext.runningKeys)
            ) {
                try await effect(context)
            }
        } catch let didNotHappen as EffectDidNotHappen {
            try await commit([.release(.init(key: key.rawValue, attempt: attempt, timeMilliseconds: now(),
                                              reason: truncated(didNotHappen.reason, utf8BytesMax: FormatLimits.reasonBytesMax)))],
                             orFinish: key, call)
            let released = LedgerError(
                .released,
                "the effect for key \"\(key.rawValue)\" did not happen (\(didNotHappen.reason)): its intent was released and the key is absent again; calling again runs the effect",
                key: key.rawValue, entry: try? entry(key.rawValue), underlyingError: didNotHappen)
            finish(key, call, .failure(LedgerErrorOrOther(error: released)))
            throw released
        } catch {
            let failure = LedgerError(
                .effectFailed,
                "the effect for key \"\(key.rawValue)\" threw \(error); it may or may not have happened, so the key is pending-unknown. Throw EffectDidNotHappen from the effect when nothing external was done",
                key: key.rawValue, entry: try? entry(key.rawValue), underlyingError: error)
            finish(key, call, .failure(LedgerErrorOrOther(error: failure)))
            throw failure
        }
        // The effect happened. A receipt over the limit cannot be stored, but the effect
        // must not become one that `.retry` runs (and pays for) again: it is recorded as
        // done with an empty receipt, and the caller gets `.limitExceeded` saying so.
        let oversized = returned.count > FormatLimits.receiptBytesMax
        let receipt = oversized ? [] : returned
        let completedAt = now()
        do {
            try await commit([.completion(.init(key: key.rawValue, attempt: attempt, timeMilliseconds: completedAt,
                                                receipt: receipt))])
        } catch {
            var typed = (error as? LedgerError) ?? LedgerError(.io, "\(error)")
            typed.message += " — the effect ran but its completion was not recorded; the key is pending-unknown"
            typed.key = key.rawValue
            finish(key, call, .failure(LedgerErrorOrOther(error: typed)))
            throw typed
        }
        // What the state now holds for the key, built here rather than looked up: while
        // this call is running nothing else writes the key (duplicates wait on `call`;
        // operator resolves and forgets refuse a running key), so the completion just
        // applied the intent's fingerprint and generation, this attempt, receipt and time.
        let done = EntryInfo(
            key: key.rawValue, status: .done, attempt: attempt, generation: generation, fingerprint: key.fingerprint,
            timeMilliseconds: completedAt, receipt: receipt, tokenScope: tokenScope)
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
