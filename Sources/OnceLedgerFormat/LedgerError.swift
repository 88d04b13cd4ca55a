/// The one error type of OnceLedger: an extensible code, a message that says what
/// was wrong and what to do, and the context an operator needs.
///
/// Modelled on swift-nio's `FileSystemError`: switch on `code`, print the error.
public struct LedgerError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        // Operational
        /// A system call failed (see `errno`).
        public static let io = Code("io")
        /// A previous write or fsync failed; this instance refuses all work until reopened.
        public static let poisoned = Code("poisoned")
        /// Another process or another open instance holds the directory lock (see `holderPID`).
        public static let locked = Code("locked")
        /// The directory holds no ledger and creation was not requested.
        public static let notALedger = Code("not-a-ledger")
        /// A file the ledger reads or writes is a symbolic link, FIFO, device, socket or
        /// directory: never followed or opened as one (`Spec/FORMAT.md` §2.1).
        public static let notARegularFile = Code("not-a-regular-file")
        /// The instance was closed.
        public static let closed = Code("closed")
        /// A named limit was exceeded by a caller's input (see `limit`). Nothing was written,
        /// except for an effect's oversized receipt: the effect happened, so `once` recorded
        /// it as done without its receipt (`entry`).
        public static let limitExceeded = Code("limit-exceeded")
        /// A caller passed an invalid argument or configuration.
        public static let invalidArgument = Code("invalid-argument")
        /// A write to a ledger opened with `Ledger.openReadOnly`.
        public static let readOnly = Code("read-only")

        // Format / recovery (Spec/RECOVERY.md)
        /// A record proven durable is damaged (rows R12, R13, R14).
        public static let corruptRecord = Code("corrupt-record")
        /// A valid record or header does not continue the sequence or checksum chain (row R10).
        public static let chainBreak = Code("chain-break")
        /// A segment is missing from the numbered sequence (row R5).
        public static let missingSegment = Code("missing-segment")
        /// A segment header is damaged, or the file size differs from its header's (rows R6, R7).
        public static let corruptSegmentHeader = Code("corrupt-segment-header")
        /// A segment or snapshot belongs to another ledger (rows R3, R9).
        public static let foreignLedger = Code("foreign-ledger")
        /// A file was written by a newer, unsupported format version (rows R2, R8).
        public static let unsupportedVersion = Code("unsupported-version")
        /// The newest snapshot failed validation (row R1).
        public static let invalidSnapshot = Code("invalid-snapshot")
        /// A record body does not decode as its kind says.
        public static let malformedBody = Code("malformed-body")

        // Exactly-once semantics (the Ledger API)
        /// The key has an intent without a completion (a crash, or an effect that threw)
        /// and the call's policy is fail-closed. `entry` carries the intent.
        public static let pendingUnknown = Code("pending-unknown")
        /// The same key was used with different params. `entry` carries the stored record.
        public static let fingerprintMismatch = Code("fingerprint-mismatch")
        /// The effect threw an error other than `EffectDidNotHappen`: it may or may not have
        /// happened, so the key is now pending-unknown. `underlyingError` is what it threw.
        public static let effectFailed = Code("effect-failed")
        /// A stored receipt does not decode as the requested type. `entry` carries the bytes.
        public static let receiptDecodingFailed = Code("receipt-decoding-failed")
        /// An operator action needs a state the key is not in (e.g. resolving a key that is
        /// not pending-unknown, forgetting one that is not done). `entry` shows the state.
        public static let wrongState = Code("wrong-state")
        /// The effect threw `EffectDidNotHappen` (the `underlyingError`): its intent was
        /// released, the key is absent again and the next call runs the effect.
        public static let released = Code("released")
        /// A `.reconcile` closure threw (`underlyingError`): nothing was written, the key is
        /// still pending-unknown.
        public static let reconcileFailed = Code("reconcile-failed")

        // The memo (`Ledger.memo`)
        /// A memo value was asked for (or computed) with an input other than the one it was
        /// stored with (a changed prompt): not a stale hit. Nothing was written.
        public static let memoInputMismatch = Code("memo-input-mismatch")
        /// A stored memo value does not decode as the requested type.
        public static let memoDecodingFailed = Code("memo-decoding-failed")
        /// A put to a run generation that has ended (`Ledger.finishRun`) was refused; a run
        /// id used again starts a new generation (ask the ledger for a new `Memo`).
        public static let runEnded = Code("run-ended")

        // The replay journal (`Ledger.journal`)
        /// The code asked for another step than the run recorded at a position, or left
        /// recorded positions unreached, or (replaying an export) asked for one the export
        /// does not hold. `journalDivergence` says what differs, field by field.
        public static let journalDivergence = Code("journal-divergence")
    }

    public var code: Code
    public var message: String
    public var path: String?
    public var segment: UInt64?
    public var offset: UInt64?
    public var sequence: UInt64?
    public var expectedChecksum: UInt32?
    public var actualChecksum: UInt32?
    public var errno: Int32?
    public var holderPID: Int32?
    public var limit: String?
    /// The idempotency key involved, for ledger-level errors.
    public var key: String?
    /// The stored record of the key involved (pending intent, done entry, …).
    public var entry: EntryInfo?
    /// What the effect threw, for `.effectFailed` and `.released`; what the reconcile
    /// closure threw, for `.reconcileFailed`.
    public var underlyingError: (any Error & Sendable)? {
        get { underlyingBox?.error }
        set { underlyingBox = newValue.map(ErrorBox.init) }
    }
    private var underlyingBox: ErrorBox?
    /// For `.journalDivergence`: what the run recorded and what the code asked for.
    public var journalDivergence: JournalDivergence?

    public init(
        _ code: Code, _ message: String, path: String? = nil, segment: UInt64? = nil, offset: UInt64? = nil,
        sequence: UInt64? = nil, expectedChecksum: UInt32? = nil, actualChecksum: UInt32? = nil,
        errno: Int32? = nil, holderPID: Int32? = nil, limit: String? = nil, key: String? = nil,
        entry: EntryInfo? = nil, underlyingError: (any Error & Sendable)? = nil
    ) {
        self.key = key
        self.entry = entry
        self.underlyingBox = underlyingError.map(ErrorBox.init)
        self.code = code
        self.message = message
        self.path = path
        self.segment = segment
        self.offset = offset
        self.sequence = sequence
        self.expectedChecksum = expectedChecksum
        self.actualChecksum = actualChecksum
        self.errno = errno
        self.holderPID = holderPID
        self.limit = limit
    }

    /// True for the codes that mean "the bytes on disk are damaged or inconsistent".
    public var isCorruption: Bool {
        switch code {
        case .corruptRecord, .chainBreak, .missingSegment, .corruptSegmentHeader, .foreignLedger,
             .invalidSnapshot, .malformedBody:
            return true
        default:
            return false
        }
    }

    public var description: String {
        var parts = ["\(code): \(message)"]
        if let path { parts.append("path=\(path)") }
        if let segment { parts.append("segment=\(segment)") }
        if let offset { parts.append("offset=\(offset)") }
        if let sequence { parts.append("seq=\(sequence)") }
        if let expectedChecksum { parts.append("expected-crc=\(hex32(expectedChecksum))") }
        if let actualChecksum { parts.append("actual-crc=\(hex32(actualChecksum))") }
        if let errno { parts.append("errno=\(errno)") }
        if let holderPID { parts.append("holder-pid=\(holderPID)") }
        if let limit { parts.append("limit=\(limit)") }
        if let key { parts.append("key=\(key)") }
        if let entry { parts.append("entry={\(entry)}") }
        if let underlyingError { parts.append("underlying=\(underlyingError)") }
        if let journalDivergence { parts.append("divergence={\(journalDivergence)}") }
        return parts.joined(separator: " ")
    }
}

/// Identity-compared box so `LedgerError` stays Hashable while carrying any error.
final class ErrorBox: Hashable, Sendable {
    let error: any Error & Sendable
    init(_ error: any Error & Sendable) { self.error = error }
    static func == (lhs: ErrorBox, rhs: ErrorBox) -> Bool { lhs === rhs }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

/// `0x`-prefixed, 8-digit lowercase hex, as checksums are printed everywhere.
public func hex32(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
