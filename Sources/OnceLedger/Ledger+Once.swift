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
    /// - throws `LedgerError(.pendingUnknown)` (fail-closed), `.fingerprintMismatch`
    ///   (same key, different params; carries the stored entry), `.limitExceeded`
    ///   (key or receipt too large), `.effectFailed` (the effect threw: the key is now
    ///   pending-unknown), or the effect's own `EffectDidNotHappen` (the intent was
    ///   released; the key is absent again).
    /// Concurrent callers with the same key: one runs the effect, the others wait and
    /// get `.alreadyDone` with its receipt, or the error it threw.
    ///
    /// The receipt is stored as JSON (sorted keys), at most `FormatLimits.receiptBytesMax`
    /// bytes; use `onceBytes` to store raw bytes.
    @inlinable
    public func once<Receipt: Codable & Sendable>(
        _ key: IdempotencyKey, as type: Receipt.Type = Receipt.self, scope: DeduplicationScope = .forever,
        whenPending policy: PendingPolicy<Receipt> = .failClosed,
        _ effect: @Sendable (EffectContext) async throws -> Receipt
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
    public func onceBytes(
        _ key: IdempotencyKey, scope: DeduplicationScope = .forever,
        whenPending policy: PendingPolicy<[UInt8]> = .failClosed,
        _ effect: @Sendable (EffectContext) async throws -> [UInt8]
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
                case .failure(let boxed):
                    throw boxed.error
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
                let answer: ReconcileAnswer<[UInt8]>
                do {
                    answer = try await ask(entry)
                } catch {
                    finish(key, call, .failure(LedgerErrorOrOther(error: error)))
                    throw error
                }
                switch answer {
                case .happened(let receipt):
                    try await commit([.resolve(.init(
                        key: key.rawValue, outcome: .done, attempt: entry.attempt, timeMilliseconds: now(),
                        receipt: receipt, actor: "reconcile", reason: "reconcile: the effect happened"))],
                                     checkingReceipt: receipt, orFinish: key, call)
                    let done = state.withLock { $0.info(key.rawValue) } ?? entry
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
            if let call = running[key.keyBytes] {
                if call.isOperator { return .waitThenDecide(call) }
                if call.fingerprint != key.fingerprint {
                    let stored = entry(key.rawValue)
                    return .fail(LedgerError(
                        .fingerprintMismatch,
                        "key \"\(key.rawValue)\" is running with different params; use a new key for different params",
                        key: key.rawValue, entry: stored))
                }
                return .wait(call)
            }
            let stored = entry(key.rawValue)
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
    private func run(
        _ key: IdempotencyKey, call: InFlightCall, attempt: UInt32, generation: UInt32, scope: DeduplicationScope,
        effect: @Sendable (EffectContext) async throws -> [UInt8]
    ) async throws -> OnceOutcome<[UInt8]> {
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
        let context = EffectContext(key: key.rawValue, tokenScope: tokenScope, attempt: attempt, generation: generation)
        let receipt: [UInt8]
        do {
            receipt = try await OnceTaskContext.$runningKeys.withValue(
                RunningKey(key.keyBytes, outer: OnceTaskContext.runningKeys)
            ) {
                try await effect(context)
            }
        } catch let didNotHappen as EffectDidNotHappen {
            try await commit([.release(.init(key: key.rawValue, attempt: attempt, timeMilliseconds: now(),
                                              reason: truncated(didNotHappen.reason, utf8BytesMax: FormatLimits.reasonBytesMax)))],
                             orFinish: key, call)
            finish(key, call, .failure(LedgerErrorOrOther(error: didNotHappen)))
            throw didNotHappen
        } catch {
            let failure = LedgerError(
                .effectFailed,
                "the effect for key \"\(key.rawValue)\" threw \(error); it may or may not have happened, so the key is pending-unknown. Throw EffectDidNotHappen from the effect when nothing external was done",
                key: key.rawValue, entry: entry(key.rawValue), underlyingError: error)
            finish(key, call, .failure(LedgerErrorOrOther(error: failure)))
            throw failure
        }
        let completedAt = now()
        do {
            try checkReceipt(receipt, key: key.rawValue)
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
        do {
            return try JSONDecoder().decode(Receipt.self, from: Data(bytes))
        } catch {
            throw LedgerError(.receiptDecodingFailed,
                              "the stored receipt of \"\(entry.key)\" does not decode as \(Receipt.self): \(error)",
                              key: entry.key, entry: entry)
        }
    }
}
