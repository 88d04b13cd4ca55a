import OnceLedgerFormat

/// What the effect closure receives.
public struct EffectContext: Sendable, Hashable {
    public let key: String
    /// Pass this downstream as that system's idempotency key (e.g. the HTTP
    /// `Idempotency-Key` header): it is the same on every retry of one pending entry,
    /// so the downstream system can de-duplicate the unknown window.
    ///
    /// Derived from `key`, `generation` and the ledger (`EffectToken.derive`) when read, so an
    /// effect that never reads it does not pay for the SHA-256 and hex encoding.
    public var token: String { EffectToken.derive(key: key, generation: generation, scope: tokenScope) }
    /// The ledger's token derivation (`Ledger.tokenScope`).
    public let tokenScope: TokenScope
    /// 1 for the first intent written for the key; +1 for every later one. A key whose entry a
    /// compaction dropped (retention, `Spec/FORMAT.md` §9.5) starts again at 1, at a new
    /// generation: tell runs apart by `token` (or attempt and generation), not by attempt alone.
    public let attempt: UInt32
    public let generation: UInt32
}

/// How long a completed entry blocks a new run of its key.
public enum DeduplicationScope: Sendable, Hashable {
    /// Exactly-once: a done entry blocks forever (the default).
    case forever
    /// Only a running effect blocks duplicates; once it finished, a new run is allowed
    /// (a task queue's "don't spawn a duplicate of a live task").
    case whileInFlight
    /// A done entry blocks for this many milliseconds after its completion.
    case window(milliseconds: UInt64)
}

/// What to do when the key is pending-unknown (an intent without a completion).
public enum PendingPolicy<Receipt: Sendable>: Sendable {
    /// Throw `LedgerError(.pendingUnknown)` carrying the intent; an operator resolves it
    /// (`resolvePending` or `onceledger resolve`). The default.
    case failClosed
    /// Run again with attempt + 1 and the same token. Safe only when the downstream
    /// de-duplicates by token.
    case retry
    /// Ask the external system: the closure answers whether the effect happened.
    case reconcile(@Sendable (EntryInfo) async throws -> ReconcileAnswer<Receipt>)
}

public enum ReconcileAnswer<Receipt: Sendable>: Sendable {
    /// It happened; record this receipt and return it as already done.
    case happened(Receipt)
    /// It did not happen; run the effect now.
    case didNotHappen
}

/// The result of `once`: the effect ran now, or it had already run.
public enum OnceOutcome<Receipt: Sendable>: Sendable {
    case performed(Receipt, EntryInfo)
    /// The stored receipt (the "minimal acknowledgment") and when it completed
    /// (`entry.timeMilliseconds`).
    case alreadyDone(Receipt, EntryInfo)

    public var receipt: Receipt {
        switch self {
        case .performed(let receipt, _), .alreadyDone(let receipt, _): receipt
        }
    }

    public var entry: EntryInfo {
        switch self {
        case .performed(_, let entry), .alreadyDone(_, let entry): entry
        }
    }

    public var wasPerformed: Bool {
        if case .performed = self { return true }
        return false
    }
}

/// Throw this from an effect that failed *before doing anything external*: the
/// intent is released (a release record is written), the key becomes absent again
/// and the next call runs the effect; `once` throws `LedgerError(.released)` with this
/// as its `underlyingError`. Any other error leaves the key pending-unknown.
public struct EffectDidNotHappen: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var underlyingError: (any Error & Sendable)?
    public init(_ reason: String, underlyingError: (any Error & Sendable)? = nil) {
        self.reason = reason
        self.underlyingError = underlyingError
    }
    public var description: String { "effect did not happen: \(reason)" }
}

/// How an operator resolves a pending-unknown entry.
public enum PendingResolution: Sendable, Hashable {
    /// It happened; store these receipt bytes as they are (what `onceBytes` returns).
    case done(receipt: [UInt8])
    /// It did not happen; the key becomes absent and may run again.
    case absent

    /// It happened; store `receipt` encoded as `once` stores receipts (JSON, sorted keys),
    /// so later `once(key, as: Receipt.self)` calls return it.
    public static func done<Receipt: Encodable>(_ receipt: Receipt) throws -> PendingResolution {
        .done(receipt: try ReceiptCoding.encode(receipt))
    }
}

extension EntryInfo {
    /// The stored receipt decoded as `once(key, as: type)` decodes it. Throws
    /// `.receiptDecodingFailed` (with this entry) if it does not decode.
    public func receipt<Receipt: Decodable>(as type: Receipt.Type) throws -> Receipt {
        try ReceiptCoding.decode(type, receipt, entry: self)
    }
}
