/// One position of a replay journal, as the value of a memo entry (`Spec/FORMAT.md` §10):
/// what kind of step was recorded there, under which name, and the output it returned.
///
/// The journal of a run generation is the memo entries of that generation in the reserved
/// step (the empty step) whose names are the positions, ten decimal digits
/// (`JournalEntry.positionName`); the memo entry's input digest is the step's. This type
/// is only the value's bytes: pure, bounded, and decoded from untrusted bytes with a typed
/// answer, never a trap.
public struct JournalEntry: Sendable, Hashable {
    /// The value's format version this implementation writes and reads.
    public static let version: UInt8 = 1
    /// Bytes before the name: version u8, kind u8, flags u16, epoch u32, position u64.
    public static let headerBytes = 16
    /// The memo step every journal entry is stored in (users cannot name a memo step so).
    public static let reservedStep = ""
    /// The name of the memo entry (in `reservedStep`, empty value) that makes a run
    /// generation durable before an effect at its position 0 (`Spec/FORMAT.md` §10.3): not a
    /// position name, so no reader of positions sees it.
    public static let generationMarkerName = "generation"
    /// Positions are written as this many decimal digits, so names sort as positions do.
    public static let positionDigits = 10
    /// The largest position a journal may have (`positionDigits` nines).
    public static let positionMax: UInt64 = 9_999_999_999

    public enum Kind: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// A computation whose output was recorded (`Journal.step`): an LLM call, a tool result.
        case step = 1
        /// An external side effect run through `once` (`Journal.effect`).
        case effect = 2
        /// The clock (`Journal.now`).
        case now = 3
        /// A random UUID (`Journal.uuid`).
        case uuid = 4
        /// A random number (`Journal.random`).
        case random = 5
        /// A versioning marker (`Journal.patched`).
        case patched = 6
        /// A position an operator truncated: free again (`name` is the actor, `output` the reason).
        case truncated = 7

        public var description: String {
            switch self {
            case .step: "step"
            case .effect: "effect"
            case .now: "now"
            case .uuid: "uuid"
            case .random: "random"
            case .patched: "patched"
            case .truncated: "truncated"
            }
        }

        public init?(name: String) {
            guard let kind = Kind.allCases.first(where: { $0.description == name }) else { return nil }
            self = kind
        }
    }

    public var kind: Kind
    /// Bumped each time an operator truncates the position: an effect's `once` key includes
    /// it, so a new effect at a truncated position is a new key.
    public var epoch: UInt32
    /// The position this value was written for (equal to its memo entry's name).
    public var position: UInt64
    /// The step's name (UTF-8 bytes; the actor for `.truncated`).
    public var name: [UInt8]
    /// What the step returned (JSON with sorted keys for the journal's own kinds; the reason
    /// for `.truncated`).
    public var output: [UInt8]

    public init(kind: Kind, epoch: UInt32 = 0, position: UInt64, name: [UInt8], output: [UInt8]) {
        self.kind = kind
        self.epoch = epoch
        self.position = position
        self.name = name
        self.output = output
    }

    public init(kind: Kind, epoch: UInt32 = 0, position: UInt64, name: String, output: [UInt8]) {
        self.init(kind: kind, epoch: epoch, position: position, name: Array(name.utf8), output: output)
    }

    public var nameText: String { String(decoding: name, as: UTF8.self) }

    /// The largest output that fits a memo value with a name of `nameBytes` bytes.
    public static func outputBytesMax(nameBytes: Int) -> Int {
        FormatLimits.valueBytesMax - encodedBytes(nameBytes: nameBytes, outputBytes: 0)
    }

    /// The bytes of a value with a name of `nameBytes` and an output of `outputBytes`: the
    /// header, the name's length (2) and the output's (4), then both.
    public static func encodedBytes(nameBytes: Int, outputBytes: Int) -> Int {
        headerBytes + 2 + 4 + nameBytes + outputBytes
    }

    /// The memo name of `position`: ten decimal digits, zero-padded (`0000000003`).
    public static func positionName(_ position: UInt64) -> String {
        // Written digit by digit into one small string: a replay names thousands of
        // positions, and formatting then padding made three strings per name.
        guard position <= positionMax else {
            let digits = String(position)
            return String(repeating: "0", count: max(0, positionDigits - digits.count)) + digits
        }
        return String(unsafeUninitializedCapacity: positionDigits) { buffer in
            var rest = position
            for index in stride(from: positionDigits - 1, through: 0, by: -1) {
                buffer[index] = UInt8(truncatingIfNeeded: rest % 10) + 0x30
                rest /= 10
            }
            return positionDigits
        }
    }

    /// The position a memo name stands for, or nil if it is not exactly ten decimal digits.
    @inlinable public static func position(ofName name: some Collection<UInt8>) -> UInt64? {
        guard name.count == positionDigits else { return nil }
        var value: UInt64 = 0
        for byte in name {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            value = value * 10 + UInt64(byte - 0x30)
        }
        return value
    }

    /// Checks the bounds before anything is encoded; throws `.limitExceeded`.
    public func validate() throws {
        if position > JournalEntry.positionMax {
            throw LedgerError(.limitExceeded, "journal position \(position) is over the largest, \(JournalEntry.positionMax)",
                              limit: "journalPositionMax")
        }
        if name.count > FormatLimits.stepBytesMax {
            throw LedgerError(.limitExceeded,
                              "the journal step name is \(name.count) bytes; the limit is \(FormatLimits.stepBytesMax). Use a shorter name; nothing was written",
                              limit: "stepBytesMax")
        }
        let outputMax = JournalEntry.outputBytesMax(nameBytes: name.count)
        if output.count > outputMax {
            throw LedgerError(.limitExceeded,
                              "the output of journal step \"\(nameText)\" is \(output.count) bytes; the limit is \(outputMax). Record a reference (an object-store key, a URL) instead of the payload; nothing was written",
                              limit: "valueBytesMax")
        }
    }

    /// The value's bytes (`Spec/FORMAT.md` §10.2). Call `validate()` first.
    public func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: JournalEntry.encodedBytes(nameBytes: name.count, outputBytes: output.count))
        writer.writeInteger(JournalEntry.version)
        writer.writeInteger(kind.rawValue)
        writer.writeInteger(UInt16(0))
        writer.writeInteger(epoch)
        writer.writeInteger(position)
        writer.writeBytes16(name)
        writer.writeBytes32(output)
        return writer.bytes
    }

    /// What `decode` found.
    public enum Decoded: Sendable, Hashable {
        case entry(JournalEntry)
        /// Not a journal value this build reads, and why.
        case malformed(String)
    }

    /// Decodes untrusted bytes: every field bounded, every byte accounted for.
    public static func decode(_ bytes: [UInt8]) -> Decoded {
        var reader = ByteReader(bytes)
        guard let version = reader.readInteger(as: UInt8.self) else { return .malformed("empty journal value") }
        guard version == JournalEntry.version else {
            return .malformed("journal value version \(version) is not known to this build (it reads \(JournalEntry.version))")
        }
        guard let rawKind = reader.readInteger(as: UInt8.self), let flags = reader.readInteger(as: UInt16.self),
              let epoch = reader.readInteger(as: UInt32.self), let position = reader.readInteger(as: UInt64.self)
        else { return .malformed("journal value shorter than its \(headerBytes)-byte header") }
        guard let kind = Kind(rawValue: rawKind) else { return .malformed("journal entry kind \(rawKind) is not known") }
        guard flags == 0 else { return .malformed("journal entry flags \(flags) are not 0") }
        guard position <= positionMax else { return .malformed("journal position \(position) is over \(positionMax)") }
        guard let nameCount = reader.readInteger(as: UInt16.self), Int(nameCount) <= FormatLimits.stepBytesMax,
              let name = reader.readBytes(Int(nameCount))
        else { return .malformed("journal step name missing or over \(FormatLimits.stepBytesMax) bytes") }
        guard let outputCount = reader.readInteger(as: UInt32.self),
              Int(outputCount) <= outputBytesMax(nameBytes: name.count),
              let output = reader.readBytes(Int(outputCount))
        else { return .malformed("journal output missing or over its limit") }
        guard reader.readableBytes == 0 else {
            return .malformed("\(reader.readableBytes) bytes after the journal output")
        }
        return .entry(JournalEntry(kind: kind, epoch: epoch, position: position, name: name, output: output))
    }
}

/// What a replay journal found different between what a run recorded and what the code
/// now asks for (`LedgerError.journalDivergence`): both sides, field by field.
public struct JournalDivergence: Sendable, Hashable, CustomStringConvertible {
    /// One side of the comparison: a step as recorded, or as requested.
    public struct Step: Sendable, Hashable, CustomStringConvertible {
        public var kind: JournalEntry.Kind
        public var name: String
        /// SHA-256 of the step's canonical input; nil for none.
        public var inputDigest: [UInt8]?

        public init(kind: JournalEntry.Kind, name: String, inputDigest: [UInt8]?) {
            self.kind = kind
            self.name = name
            self.inputDigest = inputDigest
        }

        public var description: String {
            "\(kind) `\(name)` with \(JournalDivergence.describe(inputDigest))"
        }
    }

    public enum Reason: String, Sendable, Hashable {
        /// A recorded position holds another step than the code asks for.
        case mismatch
        /// The run finished (or was checked) and recorded positions were never reached.
        case unreached
        /// A replay of an export (`JournalReplayer`) asked for a position the export does
        /// not hold: the code would execute something new.
        case wouldExecute = "would-execute"
    }

    public var reason: Reason
    /// The run, as `namespace/run` (or `run` in the default namespace).
    public var run: String
    public var generation: UInt64
    /// The first position that differs.
    public var position: UInt64
    /// What the run recorded there (nil: nothing, for `.wouldExecute`; for an effect
    /// claimed in the ledger but not yet journaled, a step named by its fingerprint).
    public var recorded: Step?
    /// What the code asked for there (nil for `.unreached`).
    public var requested: Step?
    /// For `.unreached`: every recorded position the code did not reach.
    public var unreachedPositions: [UInt64]

    public init(reason: Reason, run: String, generation: UInt64, position: UInt64, recorded: Step?, requested: Step?,
                unreachedPositions: [UInt64] = []) {
        self.reason = reason
        self.run = run
        self.generation = generation
        self.position = position
        self.recorded = recorded
        self.requested = requested
        self.unreachedPositions = unreachedPositions
    }

    /// The differing fields, in words ("recorded step 3 was `llm.summarize` with input
    /// 9f1c…; the code now asks for `llm.translate`").
    public var description: String {
        let at = "run \(run) (generation \(generation))"
        switch reason {
        case .mismatch:
            guard let recorded, let requested else { return "\(at): position \(position) differs" }
            var differences: [String] = []
            if recorded.kind != requested.kind { differences.append("kind \(recorded.kind) → \(requested.kind)") }
            // Byte for byte, as the journal compares them (Swift's `==` on strings would call
            // the same text in two Unicode forms equal, and the message would name no difference).
            if !recorded.name.utf8.elementsEqual(requested.name.utf8) {
                let form = recorded.name == requested.name ? " (the same text in another Unicode form: other bytes)" : ""
                differences.append("name `\(recorded.name)` → `\(requested.name)`\(form)")
            }
            if recorded.inputDigest != requested.inputDigest {
                differences.append("input digest \(JournalDivergence.short(recorded.inputDigest)) → \(JournalDivergence.short(requested.inputDigest))")
            }
            return "\(at): recorded \(recorded.kind) \(position) was `\(recorded.name)` with \(JournalDivergence.describe(recorded.inputDigest)); the code now asks for \(requested.kind) `\(requested.name)` with \(JournalDivergence.describe(requested.inputDigest)) (differs in: \(differences.joined(separator: ", ")))"
        case .unreached:
            let positions = unreachedPositions.count <= 8
                ? unreachedPositions.map(String.init).joined(separator: ", ")
                : unreachedPositions.prefix(8).map(String.init).joined(separator: ", ") + ", … (\(unreachedPositions.count) in all)"
            let first = recorded.map { "; the first was \($0)" } ?? ""
            return "\(at): the code stopped at position \(position), but recorded positions \(positions) were never reached\(first)"
        case .wouldExecute:
            let what = requested.map { "\($0)" } ?? "a step"
            return "\(at): the code asks for \(what) at position \(position), which the recorded journal does not hold; a replay never executes anything new"
        }
    }

    /// "9f1c2a3b4c5d…" or "none".
    static func short(_ digest: [UInt8]?) -> String {
        guard let digest else { return "none" }
        return Hex.string(digest.prefix(6)) + "…"
    }

    /// "input digest 9f1c2a3b4c5d…" or "no input".
    public static func describe(_ digest: [UInt8]?) -> String {
        guard let digest else { return "no input" }
        return "input digest " + Hex.string(digest.prefix(6)) + "…"
    }
}
