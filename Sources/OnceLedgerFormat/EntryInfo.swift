/// The stored record of one idempotency key, as the ledger reports it (in errors,
/// `pendingEntries()`, the CLI's `entries`/`pending`).
public struct EntryInfo: Hashable, Sendable, CustomStringConvertible {
    public enum Status: String, Hashable, Sendable {
        case done
        /// An intent without a completion: the effect may or may not have happened.
        case pendingUnknown = "pending-unknown"
        /// No entry blocks the key (never run, released, resolved absent, or forgotten).
        case absent
    }

    public var key: String
    public var status: Status
    /// Intents ever written for the key.
    public var attempt: UInt32
    public var generation: UInt32
    /// The token the effect received, derived from key, generation and the ledger's
    /// token scope when asked for (SHA-256 and hex: too costly to compute for every
    /// entry the ledger hands out).
    public var token: String { EffectToken.derive(key: key, generation: generation, scope: tokenScope) }
    /// How the ledger that holds the entry derives tokens (`Spec/FORMAT.md` §9.3).
    public var tokenScope: TokenScope
    /// SHA-256 of the canonical params (32 zero bytes when the call had no params).
    public var fingerprint: [UInt8]
    /// Milliseconds since the Unix epoch: when the intent was written (pending) or the
    /// completion (done), or the last change (absent).
    public var timeMilliseconds: UInt64
    /// The stored receipt (done entries).
    public var receipt: [UInt8]

    public init(key: String, status: Status, attempt: UInt32, generation: UInt32, fingerprint: [UInt8],
                timeMilliseconds: UInt64, receipt: [UInt8], tokenScope: TokenScope) {
        self.tokenScope = tokenScope
        self.key = key
        self.status = status
        self.attempt = attempt
        self.generation = generation
        self.fingerprint = fingerprint
        self.timeMilliseconds = timeMilliseconds
        self.receipt = receipt
    }

    public var hasFingerprint: Bool { fingerprint.contains { $0 != 0 } }

    public var description: String {
        var text = "key=\(key) state=\(status.rawValue) attempt=\(attempt) token=\(token) time-ms=\(timeMilliseconds)"
        if hasFingerprint { text += " fingerprint=\(Hex.string(fingerprint))" }
        if status == .done { text += " receipt-bytes=\(receipt.count)" }
        return text
    }
}

/// How a ledger derives its effect tokens: a durable property of the ledger (segment and
/// snapshot header flag bit 0, `Spec/FORMAT.md` §3.1, §9.3), so a token never changes for
/// an entry that exists.
public enum TokenScope: Hashable, Sendable {
    /// Token v1 (ledgers created before format version 2): key and generation only, so
    /// two ledgers give one key the same token.
    case unscoped
    /// Token v2: key, generation and the ledger's id, so tokens are unique per ledger.
    case ledger(LedgerID)

    /// The scope a ledger with this id and header flag uses.
    public init(ledgerID: LedgerID, ledgerScopedTokens: Bool) {
        self = ledgerScopedTokens ? .ledger(ledgerID) : .unscoped
    }

    public var isLedgerScoped: Bool {
        if case .ledger = self { return true }
        return false
    }
}

/// The token an effect receives, to pass downstream as that system's idempotency key
/// (`Spec/FORMAT.md` §9.3), `olt_` + the first 32 hex digits of
/// - v2 (`.ledger(id)`): SHA-256("onceledger.token.v2" ‖ 0x00 ‖ ledger id (16 bytes) ‖ key UTF-8 ‖ 0x00 ‖ generation u32 LE);
/// - v1 (`.unscoped`): SHA-256("onceledger.token.v1" ‖ 0x00 ‖ key UTF-8 ‖ 0x00 ‖ generation u32 LE).
/// Stable across retries of one pending entry; changes when a done entry is re-run.
public enum EffectToken {
    public static func derive(key: String, generation: UInt32, scope: TokenScope) -> String {
        var hasher = SHA256()
        switch scope {
        case .unscoped:
            hasher.update(Array("onceledger.token.v1".utf8))
            hasher.update([0])
        case .ledger(let id):
            hasher.update(Array("onceledger.token.v2".utf8))
            hasher.update([0])
            hasher.update(id.bytes)
        }
        hasher.update(Array(key.utf8))
        hasher.update([0])
        withUnsafeBytes(of: generation.littleEndian) { hasher.update(Array($0)) }
        return "olt_" + Hex.string(hasher.finalize().prefix(16))
    }
}
