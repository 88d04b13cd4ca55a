/// Typed record bodies (`Spec/FORMAT.md` §5). Field primitives:
/// `u8/u32/u64` little-endian; `str16` = u16 length + UTF-8 bytes;
/// `bytes32` = u32 length + bytes; `time` = u64 milliseconds since the Unix epoch.
/// Fields are packed with no inner alignment; the record frame pads the whole body.
public enum RecordBody: Hashable, Sendable {
    /// kind 1: key str16, fingerprint [32], attempt u32, generation u32, scope u8,
    /// reserved [3] = 0, window ms u64, time.
    case intent(Intent)
    /// kind 2: key str16, attempt u32, time, receipt bytes32.
    case completion(Completion)
    /// kind 3: key str16, attempt u32, time, reason str16.
    case release(Release)
    /// kind 4: key str16, outcome u8 (1 done, 2 absent), attempt u32, time,
    /// receipt bytes32, actor str16, reason str16.
    case resolve(Resolve)
    /// kind 5: key str16, time, actor str16, reason str16.
    case forget(Forget)
    /// kind 6: run str16, step str16, name str16, time, value bytes32.
    case memoPut(MemoPut)
    /// kind 7: run str16, position u64, step str16, time, value bytes32.
    case journalEntry(JournalEntry)
    /// kind 8: run str16, status u8 (1 succeeded, 2 failed, 3 cancelled), time.
    case runTerminal(RunTerminal)
    /// kind 9: covered sequence u64, time, snapshot file bytes u64.
    case snapshotMarker(SnapshotMarker)
    /// kind 10: time.
    case checkpoint(timeMilliseconds: UInt64)
    /// kind 11 (snapshot item only): key str16, state u8 (1 done, 2 pending, 3 absent),
    /// attempt u32, generation u32, fingerprint [32], intent time, completed time, receipt bytes32.
    case entryState(EntryState)
    /// kind 12: successor segment number u64, time. The last record of a segment
    /// (format version 2), written at rollover before the successor is renamed into place.
    case seal(Seal)
    /// kind 13: namespace str16, run str16 (non-empty), generation u64, step str16,
    /// name str16, input digest [32], time, value bytes32.
    case memoEntry(MemoEntry)
    /// kind 14: namespace str16, run str16 (non-empty), generation u64, status u8
    /// (1 succeeded, 2 failed, 3 cancelled), time.
    case runEnd(RunEnd)
    /// kind 15: namespace str16, run str16 (non-empty), generation u64, time.
    case memoSweep(MemoSweep)
    /// kind 16 (snapshot item): floor u32 — the generation a key without an entry starts at.
    case generationFloor(floor: UInt32)
    /// kind 17 (snapshot item): key str16, scope u8 (0 forever, 1 while in flight, 2 window),
    /// reserved [3] = 0, window ms u64 — the scope of the intent behind the key's entry.
    case entryRetention(EntryRetention)
    /// kind 0x7fff: uninterpreted bytes.
    case opaque([UInt8])

    public enum Scope: UInt8, Hashable, Sendable { case forever = 0, whileInFlight = 1, window = 2 }

    public struct Intent: Hashable, Sendable {
        public var key: String
        /// SHA-256 of the canonical params encoding, or 32 zero bytes for none.
        public var fingerprint: [UInt8]
        /// Counts every intent ever written for the key (1, 2, …), across releases and retries.
        public var attempt: UInt32
        /// Increments each time a done entry stops blocking (forget, or a re-run allowed by
        /// the scope); the effect's token is derived from (key, generation).
        public var generation: UInt32
        public var scope: Scope
        public var windowMilliseconds: UInt64
        public var timeMilliseconds: UInt64
        public init(key: String, fingerprint: [UInt8] = .init(repeating: 0, count: 32), attempt: UInt32,
                    generation: UInt32 = 0, scope: Scope = .forever, windowMilliseconds: UInt64 = 0,
                    timeMilliseconds: UInt64) {
            self.key = key; self.fingerprint = fingerprint; self.attempt = attempt; self.generation = generation
            self.scope = scope
            self.windowMilliseconds = windowMilliseconds; self.timeMilliseconds = timeMilliseconds
        }
    }

    public struct Completion: Hashable, Sendable {
        public var key: String
        public var attempt: UInt32
        public var timeMilliseconds: UInt64
        public var receipt: [UInt8]
        public init(key: String, attempt: UInt32, timeMilliseconds: UInt64, receipt: [UInt8]) {
            self.key = key; self.attempt = attempt; self.timeMilliseconds = timeMilliseconds; self.receipt = receipt
        }
    }

    public struct Release: Hashable, Sendable {
        public var key: String
        public var attempt: UInt32
        public var timeMilliseconds: UInt64
        public var reason: String
        public init(key: String, attempt: UInt32, timeMilliseconds: UInt64, reason: String) {
            self.key = key; self.attempt = attempt; self.timeMilliseconds = timeMilliseconds; self.reason = reason
        }
    }

    public enum Outcome: UInt8, Hashable, Sendable { case done = 1, absent = 2 }

    public struct Resolve: Hashable, Sendable {
        public var key: String
        public var outcome: Outcome
        public var attempt: UInt32
        public var timeMilliseconds: UInt64
        public var receipt: [UInt8]
        public var actor: String
        public var reason: String
        public init(key: String, outcome: Outcome, attempt: UInt32, timeMilliseconds: UInt64, receipt: [UInt8],
                    actor: String, reason: String) {
            self.key = key; self.outcome = outcome; self.attempt = attempt; self.timeMilliseconds = timeMilliseconds
            self.receipt = receipt; self.actor = actor; self.reason = reason
        }
    }

    public struct Forget: Hashable, Sendable {
        public var key: String
        public var timeMilliseconds: UInt64
        public var actor: String
        public var reason: String
        public init(key: String, timeMilliseconds: UInt64, actor: String, reason: String) {
            self.key = key; self.timeMilliseconds = timeMilliseconds; self.actor = actor; self.reason = reason
        }
    }

    public struct MemoPut: Hashable, Sendable {
        public var run: String
        public var step: String
        public var name: String
        public var timeMilliseconds: UInt64
        public var value: [UInt8]
        public init(run: String, step: String, name: String, timeMilliseconds: UInt64, value: [UInt8]) {
            self.run = run; self.step = step; self.name = name; self.timeMilliseconds = timeMilliseconds; self.value = value
        }
    }

    public struct JournalEntry: Hashable, Sendable {
        public var run: String
        public var position: UInt64
        public var step: String
        public var timeMilliseconds: UInt64
        public var value: [UInt8]
        public init(run: String, position: UInt64, step: String, timeMilliseconds: UInt64, value: [UInt8]) {
            self.run = run; self.position = position; self.step = step; self.timeMilliseconds = timeMilliseconds
            self.value = value
        }
    }

    public enum RunStatus: UInt8, Hashable, Sendable { case succeeded = 1, failed = 2, cancelled = 3 }

    public struct RunTerminal: Hashable, Sendable {
        public var run: String
        public var status: RunStatus
        public var timeMilliseconds: UInt64
        public init(run: String, status: RunStatus, timeMilliseconds: UInt64) {
            self.run = run; self.status = status; self.timeMilliseconds = timeMilliseconds
        }
    }

    public struct SnapshotMarker: Hashable, Sendable {
        public var coveredSequence: UInt64
        public var timeMilliseconds: UInt64
        public var snapshotBytes: UInt64
        public init(coveredSequence: UInt64, timeMilliseconds: UInt64, snapshotBytes: UInt64) {
            self.coveredSequence = coveredSequence; self.timeMilliseconds = timeMilliseconds
            self.snapshotBytes = snapshotBytes
        }
    }

    public struct Seal: Hashable, Sendable {
        /// The number of the segment that follows (the sealed segment's number + 1).
        public var successor: UInt64
        public var timeMilliseconds: UInt64
        public init(successor: UInt64, timeMilliseconds: UInt64) {
            self.successor = successor; self.timeMilliseconds = timeMilliseconds
        }
    }

    /// The digest of "no input": 32 zero bytes.
    public static let noInputDigest = [UInt8](repeating: 0, count: 32)

    public struct MemoEntry: Hashable, Sendable {
        /// Separates runtimes sharing one ledger; empty is the default namespace.
        public var namespace: String
        public var run: String
        /// The run generation (`Spec/FORMAT.md` §9.4): unique in the ledger, never reused.
        public var generation: UInt64
        public var step: String
        public var name: String
        /// SHA-256 of the canonical encoding of the input the value was computed from, or
        /// 32 zero bytes for none.
        public var inputDigest: [UInt8]
        public var timeMilliseconds: UInt64
        public var value: [UInt8]
        public init(namespace: String, run: String, generation: UInt64, step: String, name: String,
                    inputDigest: [UInt8] = RecordBody.noInputDigest, timeMilliseconds: UInt64, value: [UInt8]) {
            self.namespace = namespace; self.run = run; self.generation = generation; self.step = step
            self.name = name; self.inputDigest = inputDigest; self.timeMilliseconds = timeMilliseconds
            self.value = value
        }
    }

    public struct RunEnd: Hashable, Sendable {
        public var namespace: String
        public var run: String
        public var generation: UInt64
        public var status: RunStatus
        public var timeMilliseconds: UInt64
        public init(namespace: String, run: String, generation: UInt64, status: RunStatus, timeMilliseconds: UInt64) {
            self.namespace = namespace; self.run = run; self.generation = generation; self.status = status
            self.timeMilliseconds = timeMilliseconds
        }
    }

    public struct MemoSweep: Hashable, Sendable {
        public var namespace: String
        public var run: String
        public var generation: UInt64
        /// When the sweep ran (the ledger's clock).
        public var timeMilliseconds: UInt64
        public init(namespace: String, run: String, generation: UInt64, timeMilliseconds: UInt64) {
            self.namespace = namespace; self.run = run; self.generation = generation
            self.timeMilliseconds = timeMilliseconds
        }
    }

    public struct EntryRetention: Hashable, Sendable {
        public var key: String
        public var scope: Scope
        /// Meaningful for scope window; writers write 0 otherwise.
        public var windowMilliseconds: UInt64
        public init(key: String, scope: Scope, windowMilliseconds: UInt64) {
            self.key = key; self.scope = scope; self.windowMilliseconds = windowMilliseconds
        }
    }

    public enum EntryStatus: UInt8, Hashable, Sendable { case done = 1, pending = 2, absent = 3 }

    public struct EntryState: Hashable, Sendable {
        public var key: String
        public var status: EntryStatus
        public var attempt: UInt32
        public var generation: UInt32
        public var fingerprint: [UInt8]
        public var intentTimeMilliseconds: UInt64
        public var completedTimeMilliseconds: UInt64
        public var receipt: [UInt8]
        public init(key: String, status: EntryStatus, attempt: UInt32, generation: UInt32, fingerprint: [UInt8],
                    intentTimeMilliseconds: UInt64, completedTimeMilliseconds: UInt64, receipt: [UInt8]) {
            self.key = key; self.status = status; self.attempt = attempt; self.generation = generation
            self.fingerprint = fingerprint; self.intentTimeMilliseconds = intentTimeMilliseconds
            self.completedTimeMilliseconds = completedTimeMilliseconds; self.receipt = receipt
        }
    }

    public var kind: RecordKind {
        switch self {
        case .intent: .intent
        case .completion: .completion
        case .release: .release
        case .resolve: .resolve
        case .forget: .forget
        case .memoPut: .memoPut
        case .journalEntry: .journalEntry
        case .runTerminal: .runTerminal
        case .snapshotMarker: .snapshotMarker
        case .checkpoint: .checkpoint
        case .entryState: .entryState
        case .seal: .seal
        case .memoEntry: .memoEntry
        case .runEnd: .runEnd
        case .memoSweep: .memoSweep
        case .generationFloor: .generationFloor
        case .entryRetention: .entryRetention
        case .opaque: .opaque
        }
    }

    /// The idempotency key, for kinds that have one.
    public var key: String? {
        switch self {
        case .intent(let b): b.key
        case .completion(let b): b.key
        case .release(let b): b.key
        case .resolve(let b): b.key
        case .forget(let b): b.key
        case .entryState(let b): b.key
        case .entryRetention(let b): b.key
        default: nil
        }
    }

    // MARK: Validation

    /// Checks every field bound; returns the first violation as a typed error.
    public func validate() throws(LedgerError) {
        func check(_ text: String, _ max: Int, _ name: String, nonEmpty: Bool = false) throws(LedgerError) {
            let count = text.utf8.count
            if nonEmpty && count == 0 {
                throw LedgerError(.invalidArgument, "\(name) must not be empty")
            }
            if count > max {
                throw LedgerError(.limitExceeded, "\(name) is \(count) bytes; the limit is \(max)", limit: name + "BytesMax")
            }
        }
        func checkBytes(_ bytes: [UInt8], _ max: Int, _ name: String) throws(LedgerError) {
            if bytes.count > max {
                throw LedgerError(.limitExceeded, "\(name) is \(bytes.count) bytes; the limit is \(max)", limit: name + "BytesMax")
            }
        }
        switch self {
        case .intent(let b):
            try check(b.key, FormatLimits.keyBytesMax, "key", nonEmpty: true)
            if b.fingerprint.count != 32 { throw LedgerError(.invalidArgument, "fingerprint must be 32 bytes") }
        case .completion(let b):
            try check(b.key, FormatLimits.keyBytesMax, "key", nonEmpty: true)
            try checkBytes(b.receipt, FormatLimits.receiptBytesMax, "receipt")
        case .release(let b):
            try check(b.key, FormatLimits.keyBytesMax, "key", nonEmpty: true)
            try check(b.reason, FormatLimits.reasonBytesMax, "reason")
        case .resolve(let b):
            try check(b.key, FormatLimits.keyBytesMax, "key", nonEmpty: true)
            try checkBytes(b.receipt, FormatLimits.receiptBytesMax, "receipt")
            try check(b.actor, FormatLimits.reasonBytesMax, "actor")
            try check(b.reason, FormatLimits.reasonBytesMax, "reason")
        case .forget(let b):
            try check(b.key, FormatLimits.keyBytesMax, "key", nonEmpty: true)
            try check(b.actor, FormatLimits.reasonBytesMax, "actor")
            try check(b.reason, FormatLimits.reasonBytesMax, "reason")
        case .memoPut(let b):
            try check(b.run, FormatLimits.nameBytesMax, "run", nonEmpty: true)
            try check(b.step, FormatLimits.nameBytesMax, "step")
            try check(b.name, FormatLimits.nameBytesMax, "name")
            try checkBytes(b.value, FormatLimits.valueBytesMax, "value")
        case .journalEntry(let b):
            try check(b.run, FormatLimits.nameBytesMax, "run", nonEmpty: true)
            try check(b.step, FormatLimits.nameBytesMax, "step")
            try checkBytes(b.value, FormatLimits.valueBytesMax, "value")
        case .runTerminal(let b):
            try check(b.run, FormatLimits.nameBytesMax, "run", nonEmpty: true)
        case .memoEntry(let b):
            try check(b.namespace, FormatLimits.namespaceBytesMax, "namespace")
            try check(b.run, FormatLimits.runBytesMax, "run", nonEmpty: true)
            try check(b.step, FormatLimits.stepBytesMax, "step")
            try check(b.name, FormatLimits.memoNameBytesMax, "memoName")
            if b.inputDigest.count != 32 { throw LedgerError(.invalidArgument, "input digest must be 32 bytes") }
            try checkBytes(b.value, FormatLimits.valueBytesMax, "value")
        case .runEnd(let b):
            try check(b.namespace, FormatLimits.namespaceBytesMax, "namespace")
            try check(b.run, FormatLimits.runBytesMax, "run", nonEmpty: true)
        case .memoSweep(let b):
            try check(b.namespace, FormatLimits.namespaceBytesMax, "namespace")
            try check(b.run, FormatLimits.runBytesMax, "run", nonEmpty: true)
        case .snapshotMarker, .checkpoint, .seal, .generationFloor:
            break
        case .entryRetention(let b):
            try check(b.key, FormatLimits.keyBytesMax, "key", nonEmpty: true)
        case .entryState(let b):
            try check(b.key, FormatLimits.keyBytesMax, "key", nonEmpty: true)
            try checkBytes(b.receipt, FormatLimits.receiptBytesMax, "receipt")
            if b.fingerprint.count != 32 { throw LedgerError(.invalidArgument, "fingerprint must be 32 bytes") }
        case .opaque(let bytes):
            try checkBytes(bytes, Int(FormatLimits.recordBodyBytesMax), "recordBody")
        }
    }

    // MARK: Encoding

    /// `encode()` of a memo entry (FORMAT §5.16): the same bytes `ByteWriter` writes, into one
    /// buffer of the exact size with one copy per field — in a profile of 64 concurrent memo
    /// puts, `ByteWriter`'s generic appends took about 5 % of all CPU. Bounds as `ByteWriter`'s.
    static func encode(memoEntry b: MemoEntry) -> [UInt8] {
        var namespace = b.namespace, run = b.run, step = b.step, name = b.name
        let texts = (namespace.utf8.count, run.utf8.count, step.utf8.count, name.utf8.count)
        precondition(max(texts.0, texts.1, texts.2, texts.3) <= Int(UInt16.max), "writeBytes16 bound checked by caller")
        precondition(b.value.count <= Int(UInt32.max), "writeBytes32 bound checked by caller")
        let count = 8 + texts.0 + texts.1 + texts.2 + texts.3 + 8 + b.inputDigest.count + 8 + 4 + b.value.count
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let base = UnsafeMutableRawPointer(buffer.baseAddress.unsafelyUnwrapped)
            var at = 0
            func integer<T: FixedWidthInteger>(_ value: T) {
                withUnsafeBytes(of: value.littleEndian) { (base + at).copyMemory(from: $0.baseAddress.unsafelyUnwrapped, byteCount: $0.count) }
                at += MemoryLayout<T>.size
            }
            func bytes(_ raw: UnsafeRawBufferPointer) {
                if let source = raw.baseAddress { (base + at).copyMemory(from: source, byteCount: raw.count) }
                at += raw.count
            }
            func text(_ string: inout String) {
                string.withUTF8 { utf8 in
                    integer(UInt16(utf8.count))
                    bytes(UnsafeRawBufferPointer(utf8))
                }
            }
            text(&namespace)
            text(&run)
            integer(b.generation)
            text(&step)
            text(&name)
            b.inputDigest.withUnsafeBytes { bytes($0) }
            integer(b.timeMilliseconds)
            integer(UInt32(b.value.count))
            b.value.withUnsafeBytes { bytes($0) }
            precondition(at == count, "memo entry encoding size")
            initialized = at
        }
    }

    /// Encodes the body. Call `validate()` first; encoding assumes bounds hold.
    public func encode() -> [UInt8] {
        // A memo entry (one per memo put and per journal step) is written in one pass.
        if case .memoEntry(let b) = self { return RecordBody.encode(memoEntry: b) }
        // Sized for an intent or a completion with a short key and receipt, so the
        // common bodies are built without regrowing the buffer.
        var w = ByteWriter(capacity: 128)
        func str(_ text: String) { w.writeBytes16(text.utf8) }
        switch self {
        case .intent(let b):
            str(b.key)
            w.writeBytes(b.fingerprint)
            w.writeInteger(b.attempt)
            w.writeInteger(b.generation)
            w.writeInteger(b.scope.rawValue)
            w.writeZeros(3)
            w.writeInteger(b.windowMilliseconds)
            w.writeInteger(b.timeMilliseconds)
        case .completion(let b):
            str(b.key)
            w.writeInteger(b.attempt)
            w.writeInteger(b.timeMilliseconds)
            w.writeBytes32(b.receipt)
        case .release(let b):
            str(b.key)
            w.writeInteger(b.attempt)
            w.writeInteger(b.timeMilliseconds)
            str(b.reason)
        case .resolve(let b):
            str(b.key)
            w.writeInteger(b.outcome.rawValue)
            w.writeInteger(b.attempt)
            w.writeInteger(b.timeMilliseconds)
            w.writeBytes32(b.receipt)
            str(b.actor)
            str(b.reason)
        case .forget(let b):
            str(b.key)
            w.writeInteger(b.timeMilliseconds)
            str(b.actor)
            str(b.reason)
        case .memoPut(let b):
            str(b.run)
            str(b.step)
            str(b.name)
            w.writeInteger(b.timeMilliseconds)
            w.writeBytes32(b.value)
        case .journalEntry(let b):
            str(b.run)
            w.writeInteger(b.position)
            str(b.step)
            w.writeInteger(b.timeMilliseconds)
            w.writeBytes32(b.value)
        case .runTerminal(let b):
            str(b.run)
            w.writeInteger(b.status.rawValue)
            w.writeInteger(b.timeMilliseconds)
        case .snapshotMarker(let b):
            w.writeInteger(b.coveredSequence)
            w.writeInteger(b.timeMilliseconds)
            w.writeInteger(b.snapshotBytes)
        case .checkpoint(let time):
            w.writeInteger(time)
        case .seal(let b):
            w.writeInteger(b.successor)
            w.writeInteger(b.timeMilliseconds)
        case .entryState(let b):
            str(b.key)
            w.writeInteger(b.status.rawValue)
            w.writeInteger(b.attempt)
            w.writeInteger(b.generation)
            w.writeBytes(b.fingerprint)
            w.writeInteger(b.intentTimeMilliseconds)
            w.writeInteger(b.completedTimeMilliseconds)
            w.writeBytes32(b.receipt)
        case .memoEntry(let b):
            str(b.namespace)
            str(b.run)
            w.writeInteger(b.generation)
            str(b.step)
            str(b.name)
            w.writeBytes(b.inputDigest)
            w.writeInteger(b.timeMilliseconds)
            w.writeBytes32(b.value)
        case .runEnd(let b):
            str(b.namespace)
            str(b.run)
            w.writeInteger(b.generation)
            w.writeInteger(b.status.rawValue)
            w.writeInteger(b.timeMilliseconds)
        case .memoSweep(let b):
            str(b.namespace)
            str(b.run)
            w.writeInteger(b.generation)
            w.writeInteger(b.timeMilliseconds)
        case .generationFloor(let floor):
            w.writeInteger(floor)
        case .entryRetention(let b):
            str(b.key)
            w.writeInteger(b.scope.rawValue)
            w.writeZeros(3)
            w.writeInteger(b.windowMilliseconds)
        case .opaque(let bytes):
            w.writeBytes(bytes)
        }
        return w.bytes
    }

    // MARK: Decoding

    public enum DecodeResult: Hashable, Sendable {
        case body(RecordBody)
        case corrupt(String)
        case unknownKind(RecordKind)
    }

    /// Decodes an untrusted body of the given kind. Never traps. Every byte must be consumed.
    /// Built on `decodeFields` (the one body decoder), copying the fields out.
    public static func decode(kind: RecordKind, _ bytes: [UInt8]) -> DecodeResult {
        bytes.withUnsafeBytes { raw in
            switch decodeFields(kind: kind, raw) {
            case .fields(let fields): .body(RecordBody(fields, in: raw))
            case .corrupt(let reason): .corrupt(reason)
            case .unknownKind(let unknown): .unknownKind(unknown)
            }
        }
    }
}
