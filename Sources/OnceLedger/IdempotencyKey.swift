import OnceLedgerFormat

/// The identity of one effect: an explicit string, or one derived from a name and
/// params, plus the params fingerprint stored with the intent.
///
/// - Explicit: `IdempotencyKey("order-42-receipt")`, or a string literal where a key is
///   expected, interpolations included (`ledger.once("charge-\(order.id)") { … }`) — no
///   params, fingerprint all zero.
/// - Explicit with params: `IdempotencyKey("order-42-receipt", name: "send-receipt", params: order)`
///   (`name` may be left out) — the
///   key is the string; the fingerprint lets the ledger reject the same key reused
///   with different params (`.fingerprintMismatch`, Stripe's rule).
/// - Derived: `IdempotencyKey(name: "send-receipt", params: order)` — the key is
///   `name#<64 hex of SHA-256>` over a canonical encoding (`CanonicalEncoding`), so it
///   does not depend on dictionary order or encoder settings.
/// - `IdempotencyKey(explicit: maybeKey, name:, params:)`: an explicit key takes
///   precedence over the derived one.
///
/// The ledger compares keys byte for byte (their UTF-8), like the log and the effect
/// token: `"caf\u{e9}"` and `"cafe\u{301}"` are two keys, though Swift's `==` calls the
/// strings equal. Normalize keys (e.g. to NFC) before use if your inputs may differ
/// only that way.
public struct IdempotencyKey: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringInterpolation {
    public let rawValue: String
    /// SHA-256 of the canonical (name, params) encoding; 32 zero bytes when none.
    public let fingerprint: [UInt8]
    /// `rawValue`'s UTF-8 bytes, computed once: the in-flight table and the re-entry
    /// check look keys up by them several times per `once`.
    let keyBytes: KeyBytes

    public static let noFingerprint = [UInt8](repeating: 0, count: 32)

    public init(_ explicit: String) {
        rawValue = explicit
        fingerprint = IdempotencyKey.noFingerprint
        keyBytes = KeyBytes(explicit)
    }

    public init(stringLiteral value: String) { self.init(value) }

    /// `"charge-\(order.id)"` where a key is expected: the interpolated text is the key.
    public init(stringInterpolation: DefaultStringInterpolation) { self.init(String(stringInterpolation: stringInterpolation)) }

    /// An explicit key with a params fingerprint; the arguments in the order of
    /// `init(explicit:name:params:)` and `init(name:params:)`.
    public init<Params: Encodable>(_ explicit: String, name: String = "", params: Params) throws {
        rawValue = explicit
        fingerprint = try IdempotencyKey.fingerprint(name: name, params: params)
        keyBytes = KeyBytes(explicit)
    }

    /// The earlier spelling, with `name` after `params`.
    @available(*, deprecated, renamed: "init(_:name:params:)")
    public init<Params: Encodable>(_ explicit: String, params: Params, name: String) throws {
        try self.init(explicit, name: name, params: params)
    }

    public init<Params: Encodable>(name: String, params: Params) throws {
        let fingerprint = try IdempotencyKey.fingerprint(name: name, params: params)
        self.rawValue = name + "#" + Hex.string(fingerprint)
        self.fingerprint = fingerprint
        self.keyBytes = KeyBytes(rawValue)
    }

    public init<Params: Encodable>(explicit: String?, name: String, params: Params) throws {
        if let explicit {
            try self.init(explicit, name: name, params: params)
        } else {
            try self.init(name: name, params: params)
        }
    }

    /// A key given as bytes (e.g. from a request header); must be valid UTF-8.
    public init(bytes: [UInt8]) throws {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw LedgerError(.invalidArgument, "the idempotency key is not valid UTF-8")
        }
        self.init(text)
    }

    /// SHA-256("onceledger.params.v1" ‖ 0x00 ‖ name ‖ 0x00 ‖ canonical(params)).
    public static func fingerprint<Params: Encodable>(name: String, params: Params) throws -> [UInt8] {
        var hasher = SHA256()
        hasher.update(Array("onceledger.params.v1".utf8))
        hasher.update([0])
        hasher.update(Array(name.utf8))
        hasher.update([0])
        hasher.update(try CanonicalEncoding.encode(params))
        return hasher.finalize()
    }

    /// Keys that start with this are the journal's effects (`Journal.effect`; FORMAT §10.3):
    /// `once` refuses them from any other caller with `.invalidArgument`, because a compaction
    /// drops such a done entry once the journal run it names is swept.
    public static let reservedPrefix = "onceledger.journal/"
    static let reservedPrefixBytes = Array(reservedPrefix.utf8)

    /// Checks the named limits; throws a typed error and writes nothing.
    public func validate() throws {
        let count = rawValue.utf8.count
        if count == 0 { throw LedgerError(.invalidArgument, "the idempotency key is empty") }
        if count > FormatLimits.keyBytesMax {
            throw LedgerError(.limitExceeded, "the idempotency key is \(count) bytes; the limit is \(FormatLimits.keyBytesMax)",
                              limit: "keyBytesMax")
        }
    }

    public var description: String { rawValue }

    // Equality and hashing as before `keyBytes` was stored: over the text and the
    // fingerprint only (the cached bytes are derived from the text).
    public static func == (left: IdempotencyKey, right: IdempotencyKey) -> Bool {
        left.rawValue == right.rawValue && left.fingerprint == right.fingerprint
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(rawValue)
        hasher.combine(fingerprint)
    }
}

/// A key's UTF-8 bytes as a dictionary or set member. Compared byte for byte, as the
/// state and the log compare keys (`String` equality would merge canonically
/// equivalent keys), and hashed in one call, where `[UInt8]` feeds the hasher a byte
/// at a time.
struct KeyBytes: Hashable, Sendable {
    let bytes: [UInt8]

    init(_ key: String) { bytes = Array(key.utf8) }

    static func == (left: KeyBytes, right: KeyBytes) -> Bool { left.bytes == right.bytes }

    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}
