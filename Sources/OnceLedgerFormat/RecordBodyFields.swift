/// The one decoder of record bodies (`Spec/FORMAT.md` §5): `RecordBody.decodeFields`
/// reads an untrusted body in place and says where each field is, without copying.
/// `RecordBody.decode` is built on it (it copies the fields out), and the ledger's
/// replay uses it directly, so both accept and refuse exactly the same bodies, and
/// the libFuzzer target (`Tools/fuzz/FuzzRecord.swift`) exercises the one parser.
extension RecordBody {
    /// A body's fields as found in its bytes: integers and enums read, strings (`str16`)
    /// and byte strings (`bytes32`, fixed-size fields) as ranges of the body, every one
    /// checked — in bounds, within its limit, strings valid UTF-8, keys and run ids
    /// nonempty, enums known, reserved bytes zero, no trailing bytes. The field order
    /// and meaning are those of the `RecordBody` case of the same name.
    public enum Fields: Hashable, Sendable {
        case intent(key: Range<Int>, fingerprint: Range<Int>, attempt: UInt32, generation: UInt32, scope: Scope,
                    windowMilliseconds: UInt64, timeMilliseconds: UInt64)
        case completion(key: Range<Int>, attempt: UInt32, timeMilliseconds: UInt64, receipt: Range<Int>)
        case release(key: Range<Int>, attempt: UInt32, timeMilliseconds: UInt64, reason: Range<Int>)
        case resolve(key: Range<Int>, outcome: Outcome, attempt: UInt32, timeMilliseconds: UInt64, receipt: Range<Int>,
                     actor: Range<Int>, reason: Range<Int>)
        case forget(key: Range<Int>, timeMilliseconds: UInt64, actor: Range<Int>, reason: Range<Int>)
        case memoPut(run: Range<Int>, step: Range<Int>, name: Range<Int>, timeMilliseconds: UInt64, value: Range<Int>)
        case journalEntry(run: Range<Int>, position: UInt64, step: Range<Int>, timeMilliseconds: UInt64,
                          value: Range<Int>)
        case runTerminal(run: Range<Int>, status: RunStatus, timeMilliseconds: UInt64)
        case snapshotMarker(SnapshotMarker)
        case checkpoint(timeMilliseconds: UInt64)
        case entryState(key: Range<Int>, status: EntryStatus, attempt: UInt32, generation: UInt32,
                        fingerprint: Range<Int>, intentTimeMilliseconds: UInt64, completedTimeMilliseconds: UInt64,
                        receipt: Range<Int>)
        case seal(Seal)
        case memoEntry(namespace: Range<Int>, run: Range<Int>, generation: UInt64, step: Range<Int>, name: Range<Int>,
                       inputDigest: Range<Int>, timeMilliseconds: UInt64, value: Range<Int>)
        case runEnd(namespace: Range<Int>, run: Range<Int>, generation: UInt64, status: RunStatus,
                    timeMilliseconds: UInt64)
        case memoSweep(namespace: Range<Int>, run: Range<Int>, generation: UInt64, timeMilliseconds: UInt64)
        case generationFloor(floor: UInt32)
        case entryRetention(key: Range<Int>, scope: Scope, windowMilliseconds: UInt64)
        /// The whole body, uninterpreted.
        case opaque

        /// Where the idempotency key is, for kinds that have one.
        public var key: Range<Int>? {
            switch self {
            case .intent(let key, _, _, _, _, _, _), .completion(let key, _, _, _), .release(let key, _, _, _),
                 .resolve(let key, _, _, _, _, _, _), .forget(let key, _, _, _), .entryState(let key, _, _, _, _, _, _, _),
                 .entryRetention(let key, _, _):
                key
            default:
                nil
            }
        }
    }

    public enum FieldsResult: Hashable, Sendable {
        case fields(Fields)
        case corrupt(String)
        case unknownKind(RecordKind)
    }

    /// Decodes an untrusted body of the given kind in place. Never traps. Every byte
    /// must be consumed. The ranges of a `.fields` result index `body` (from 0).
    public static func decodeFields(kind: RecordKind, _ body: UnsafeRawBufferPointer) -> FieldsResult {
        var r = FieldReader(body)
        func finish(_ fields: Fields?) -> FieldsResult {
            guard let fields else { return .corrupt("\(kind) body is malformed or exceeds a limit") }
            guard r.remaining == 0 else { return .corrupt("\(kind) body has \(r.remaining) trailing bytes") }
            return .fields(fields)
        }
        switch kind {
        case .intent:
            guard let key = r.key(), let fingerprint = r.fixed(32), let attempt = r.integer(UInt32.self),
                  let generation = r.integer(UInt32.self), let scopeRaw = r.integer(UInt8.self),
                  let scope = Scope(rawValue: scopeRaw), r.zeros(3), let window = r.integer(UInt64.self),
                  let time = r.integer(UInt64.self)
            else { return finish(nil) }
            return finish(.intent(key: key, fingerprint: fingerprint, attempt: attempt, generation: generation,
                                  scope: scope, windowMilliseconds: window, timeMilliseconds: time))
        case .completion:
            guard let key = r.key(), let attempt = r.integer(UInt32.self), let time = r.integer(UInt64.self),
                  let receipt = r.bytes32(max: FormatLimits.receiptBytesMax)
            else { return finish(nil) }
            return finish(.completion(key: key, attempt: attempt, timeMilliseconds: time, receipt: receipt))
        case .release:
            guard let key = r.key(), let attempt = r.integer(UInt32.self), let time = r.integer(UInt64.self),
                  let reason = r.text16(max: FormatLimits.reasonBytesMax)
            else { return finish(nil) }
            return finish(.release(key: key, attempt: attempt, timeMilliseconds: time, reason: reason))
        case .resolve:
            guard let key = r.key(), let outcomeRaw = r.integer(UInt8.self), let outcome = Outcome(rawValue: outcomeRaw),
                  let attempt = r.integer(UInt32.self), let time = r.integer(UInt64.self),
                  let receipt = r.bytes32(max: FormatLimits.receiptBytesMax),
                  let actor = r.text16(max: FormatLimits.reasonBytesMax), let reason = r.text16(max: FormatLimits.reasonBytesMax)
            else { return finish(nil) }
            return finish(.resolve(key: key, outcome: outcome, attempt: attempt, timeMilliseconds: time, receipt: receipt,
                                   actor: actor, reason: reason))
        case .forget:
            guard let key = r.key(), let time = r.integer(UInt64.self),
                  let actor = r.text16(max: FormatLimits.reasonBytesMax), let reason = r.text16(max: FormatLimits.reasonBytesMax)
            else { return finish(nil) }
            return finish(.forget(key: key, timeMilliseconds: time, actor: actor, reason: reason))
        case .memoPut:
            guard let run = r.text16(max: FormatLimits.nameBytesMax, nonEmpty: true),
                  let step = r.text16(max: FormatLimits.nameBytesMax), let name = r.text16(max: FormatLimits.nameBytesMax),
                  let time = r.integer(UInt64.self), let value = r.bytes32(max: FormatLimits.valueBytesMax)
            else { return finish(nil) }
            return finish(.memoPut(run: run, step: step, name: name, timeMilliseconds: time, value: value))
        case .journalEntry:
            guard let run = r.text16(max: FormatLimits.nameBytesMax, nonEmpty: true),
                  let position = r.integer(UInt64.self), let step = r.text16(max: FormatLimits.nameBytesMax),
                  let time = r.integer(UInt64.self), let value = r.bytes32(max: FormatLimits.valueBytesMax)
            else { return finish(nil) }
            return finish(.journalEntry(run: run, position: position, step: step, timeMilliseconds: time, value: value))
        case .runTerminal:
            guard let run = r.text16(max: FormatLimits.nameBytesMax, nonEmpty: true),
                  let statusRaw = r.integer(UInt8.self), let status = RunStatus(rawValue: statusRaw),
                  let time = r.integer(UInt64.self)
            else { return finish(nil) }
            return finish(.runTerminal(run: run, status: status, timeMilliseconds: time))
        case .snapshotMarker:
            guard let covered = r.integer(UInt64.self), let time = r.integer(UInt64.self), let size = r.integer(UInt64.self)
            else { return finish(nil) }
            return finish(.snapshotMarker(SnapshotMarker(coveredSequence: covered, timeMilliseconds: time,
                                                         snapshotBytes: size)))
        case .checkpoint:
            guard let time = r.integer(UInt64.self) else { return finish(nil) }
            return finish(.checkpoint(timeMilliseconds: time))
        case .entryState:
            guard let key = r.key(), let statusRaw = r.integer(UInt8.self), let status = EntryStatus(rawValue: statusRaw),
                  let attempt = r.integer(UInt32.self), let generation = r.integer(UInt32.self),
                  let fingerprint = r.fixed(32), let intentTime = r.integer(UInt64.self),
                  let completedTime = r.integer(UInt64.self), let receipt = r.bytes32(max: FormatLimits.receiptBytesMax)
            else { return finish(nil) }
            return finish(.entryState(key: key, status: status, attempt: attempt, generation: generation,
                                      fingerprint: fingerprint, intentTimeMilliseconds: intentTime,
                                      completedTimeMilliseconds: completedTime, receipt: receipt))
        case .seal:
            guard let successor = r.integer(UInt64.self), let time = r.integer(UInt64.self) else { return finish(nil) }
            return finish(.seal(Seal(successor: successor, timeMilliseconds: time)))
        case .memoEntry:
            guard let namespace = r.text16(max: FormatLimits.namespaceBytesMax),
                  let run = r.text16(max: FormatLimits.runBytesMax, nonEmpty: true),
                  let generation = r.integer(UInt64.self), let step = r.text16(max: FormatLimits.stepBytesMax),
                  let name = r.text16(max: FormatLimits.memoNameBytesMax), let digest = r.fixed(32),
                  let time = r.integer(UInt64.self), let value = r.bytes32(max: FormatLimits.valueBytesMax)
            else { return finish(nil) }
            return finish(.memoEntry(namespace: namespace, run: run, generation: generation, step: step, name: name,
                                     inputDigest: digest, timeMilliseconds: time, value: value))
        case .runEnd:
            guard let namespace = r.text16(max: FormatLimits.namespaceBytesMax),
                  let run = r.text16(max: FormatLimits.runBytesMax, nonEmpty: true),
                  let generation = r.integer(UInt64.self), let statusRaw = r.integer(UInt8.self),
                  let status = RunStatus(rawValue: statusRaw), let time = r.integer(UInt64.self)
            else { return finish(nil) }
            return finish(.runEnd(namespace: namespace, run: run, generation: generation, status: status,
                                  timeMilliseconds: time))
        case .memoSweep:
            guard let namespace = r.text16(max: FormatLimits.namespaceBytesMax),
                  let run = r.text16(max: FormatLimits.runBytesMax, nonEmpty: true),
                  let generation = r.integer(UInt64.self), let time = r.integer(UInt64.self)
            else { return finish(nil) }
            return finish(.memoSweep(namespace: namespace, run: run, generation: generation, timeMilliseconds: time))
        case .generationFloor:
            guard let floor = r.integer(UInt32.self) else { return finish(nil) }
            return finish(.generationFloor(floor: floor))
        case .entryRetention:
            guard let key = r.key(), let scopeRaw = r.integer(UInt8.self), let scope = Scope(rawValue: scopeRaw),
                  r.zeros(3), let window = r.integer(UInt64.self)
            else { return finish(nil) }
            return finish(.entryRetention(key: key, scope: scope, windowMilliseconds: window))
        case .opaque:
            return .fields(.opaque)
        default:
            return .unknownKind(kind)
        }
    }

    /// The body `fields` describes, its strings and byte strings copied out of `body`
    /// (the bytes `decodeFields` read them from).
    init(_ fields: Fields, in body: UnsafeRawBufferPointer) {
        func text(_ range: Range<Int>) -> String {
            // decodeFields validated the UTF-8.
            String(decoding: UnsafeRawBufferPointer(rebasing: body[range]), as: UTF8.self)
        }
        func bytes(_ range: Range<Int>) -> [UInt8] { Array(body[range]) }
        switch fields {
        case let .intent(key, fingerprint, attempt, generation, scope, window, time):
            self = .intent(Intent(key: text(key), fingerprint: bytes(fingerprint), attempt: attempt,
                                  generation: generation, scope: scope, windowMilliseconds: window,
                                  timeMilliseconds: time))
        case let .completion(key, attempt, time, receipt):
            self = .completion(Completion(key: text(key), attempt: attempt, timeMilliseconds: time,
                                          receipt: bytes(receipt)))
        case let .release(key, attempt, time, reason):
            self = .release(Release(key: text(key), attempt: attempt, timeMilliseconds: time, reason: text(reason)))
        case let .resolve(key, outcome, attempt, time, receipt, actor, reason):
            self = .resolve(Resolve(key: text(key), outcome: outcome, attempt: attempt, timeMilliseconds: time,
                                    receipt: bytes(receipt), actor: text(actor), reason: text(reason)))
        case let .forget(key, time, actor, reason):
            self = .forget(Forget(key: text(key), timeMilliseconds: time, actor: text(actor), reason: text(reason)))
        case let .memoPut(run, step, name, time, value):
            self = .memoPut(MemoPut(run: text(run), step: text(step), name: text(name), timeMilliseconds: time,
                                    value: bytes(value)))
        case let .journalEntry(run, position, step, time, value):
            self = .journalEntry(JournalEntry(run: text(run), position: position, step: text(step),
                                              timeMilliseconds: time, value: bytes(value)))
        case let .runTerminal(run, status, time):
            self = .runTerminal(RunTerminal(run: text(run), status: status, timeMilliseconds: time))
        case .snapshotMarker(let marker):
            self = .snapshotMarker(marker)
        case .checkpoint(let time):
            self = .checkpoint(timeMilliseconds: time)
        case let .entryState(key, status, attempt, generation, fingerprint, intentTime, completedTime, receipt):
            self = .entryState(EntryState(key: text(key), status: status, attempt: attempt, generation: generation,
                                          fingerprint: bytes(fingerprint), intentTimeMilliseconds: intentTime,
                                          completedTimeMilliseconds: completedTime, receipt: bytes(receipt)))
        case .seal(let seal):
            self = .seal(seal)
        case let .memoEntry(namespace, run, generation, step, name, digest, time, value):
            self = .memoEntry(MemoEntry(namespace: text(namespace), run: text(run), generation: generation,
                                        step: text(step), name: text(name), inputDigest: bytes(digest),
                                        timeMilliseconds: time, value: bytes(value)))
        case let .runEnd(namespace, run, generation, status, time):
            self = .runEnd(RunEnd(namespace: text(namespace), run: text(run), generation: generation, status: status,
                                  timeMilliseconds: time))
        case let .memoSweep(namespace, run, generation, time):
            self = .memoSweep(MemoSweep(namespace: text(namespace), run: text(run), generation: generation,
                                        timeMilliseconds: time))
        case .generationFloor(let floor):
            self = .generationFloor(floor: floor)
        case let .entryRetention(key, scope, window):
            self = .entryRetention(EntryRetention(key: text(key), scope: scope, windowMilliseconds: window))
        case .opaque:
            self = .opaque(Array(body))
        }
    }
}

/// Reads the fields of an untrusted body in place, for `RecordBody.decodeFields`.
/// Every read is bounds-checked and returns nil (or false) past the end; never traps.
struct FieldReader {
    let bytes: UnsafeRawBufferPointer
    private var index = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - index }

    /// The next `count` bytes, as a range of `bytes`.
    @inline(__always)
    mutating func fixed(_ count: Int) -> Range<Int>? {
        guard count >= 0, remaining >= count else { return nil }
        defer { index += count }
        return index..<(index + count)
    }

    @inline(__always)
    mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
        guard remaining >= MemoryLayout<T>.size else { return nil }
        defer { index += MemoryLayout<T>.size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: T.self))
    }

    /// `count` reserved bytes, which must be zero.
    mutating func zeros(_ count: Int) -> Bool {
        guard let range = fixed(count) else { return false }
        return bytes[range].allSatisfy { $0 == 0 }
    }

    /// bytes32: a u32 length, at most `max`, then that many bytes.
    @inline(__always)
    mutating func bytes32(max: Int) -> Range<Int>? {
        guard let length = integer(UInt32.self), UInt64(length) <= UInt64(max) else { return nil }
        return fixed(Int(length))
    }

    /// str16: a u16 length, at most `max` (and not 0 when `nonEmpty`), then that many
    /// bytes of valid UTF-8.
    @inline(__always)
    mutating func text16(max: Int, nonEmpty: Bool = false) -> Range<Int>? {
        guard let length = integer(UInt16.self), Int(length) <= max, !nonEmpty || length > 0,
              let range = fixed(Int(length)), isUTF8(range)
        else { return nil }
        return range
    }

    /// An idempotency key: str16, nonempty, at most `FormatLimits.keyBytesMax` bytes.
    mutating func key() -> Range<Int>? { text16(max: FormatLimits.keyBytesMax, nonEmpty: true) }

    /// Whether `bytes[range]` is valid UTF-8. ASCII (almost every key) is checked a word
    /// at a time; anything else by the standard library's validation.
    private func isUTF8(_ range: Range<Int>) -> Bool {
        var at = range.lowerBound
        while at + 8 <= range.upperBound {
            if bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 { break }
            at += 8
        }
        while at < range.upperBound, bytes[at] < 0x80 { at += 1 }
        if at == range.upperBound { return true }
        return String(validating: UnsafeRawBufferPointer(rebasing: bytes[at..<range.upperBound]), as: UTF8.self) != nil
    }
}
