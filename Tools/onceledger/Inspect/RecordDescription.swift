import OnceLedgerFormat

/// The fields of a record body or snapshot item (`Spec/FORMAT.md` §5), named once and
/// rendered two ways: `name=value` for people and JSON members for programs. Texts are
/// shown exactly (quoted, escapes only for control characters); byte strings (receipts,
/// memo values) as UTF-8 when they are valid UTF-8, else as hex.
enum RecordDescription {
    enum Field {
        case text(String)
        case number(UInt64)
        /// Milliseconds since the epoch: ISO 8601 for people; JSON gets `name` (ISO) and `nameMs`.
        case time(UInt64)
        /// JSON gets `name` and `nameEncoding` (`utf8` or `hex`).
        case bytes([UInt8])
        case fingerprint([UInt8])
        /// An enumeration value such as `done` or `forever`.
        case word(String)
    }

    enum Decoded {
        case fields([(String, Field)])
        case malformed(String)
        case unknownKind
    }

    /// `tokenScope`: how the ledger derives tokens (`LedgerInspection.tokenScope`); when
    /// unknown, no token is shown.
    static func decode(kind: RecordKind, body: [UInt8], tokenScope: TokenScope?) -> Decoded {
        switch RecordBody.decode(kind: kind, body) {
        case .body(let decoded): return .fields(fields(of: decoded, tokenScope: tokenScope))
        case .corrupt(let reason): return .malformed(reason)
        case .unknownKind: return .unknownKind
        }
    }

    static func fields(of body: RecordBody, tokenScope: TokenScope?) -> [(String, Field)] {
        func token(_ key: String, _ generation: UInt32) -> [(String, Field)] {
            guard let tokenScope else { return [] }
            return [("token", .word(EffectToken.derive(key: key, generation: generation, scope: tokenScope)))]
        }
        switch body {
        case .intent(let b):
            let scope: String = switch b.scope {
            case .forever: "forever"
            case .whileInFlight: "while-in-flight"
            case .window: "window"
            }
            var fields: [(String, Field)] = [
                ("key", .text(b.key)), ("attempt", .number(UInt64(b.attempt))),
                ("generation", .number(UInt64(b.generation))), ("scope", .word(scope)),
            ]
            if b.scope == .window || b.windowMilliseconds != 0 { fields.append(("windowMs", .number(b.windowMilliseconds))) }
            fields += [("time", .time(b.timeMilliseconds)), ("fingerprint", .fingerprint(b.fingerprint))]
            fields += token(b.key, b.generation)
            return fields
        case .completion(let b):
            return [("key", .text(b.key)), ("attempt", .number(UInt64(b.attempt))), ("time", .time(b.timeMilliseconds)),
                    ("receipt", .bytes(b.receipt))]
        case .release(let b):
            return [("key", .text(b.key)), ("attempt", .number(UInt64(b.attempt))), ("time", .time(b.timeMilliseconds)),
                    ("reason", .text(b.reason))]
        case .resolve(let b):
            var fields: [(String, Field)] = [
                ("key", .text(b.key)), ("outcome", .word(b.outcome == .done ? "done" : "absent")),
                ("attempt", .number(UInt64(b.attempt))), ("time", .time(b.timeMilliseconds)),
            ]
            if b.outcome == .done || !b.receipt.isEmpty { fields.append(("receipt", .bytes(b.receipt))) }
            fields += [("actor", .text(b.actor)), ("reason", .text(b.reason))]
            return fields
        case .forget(let b):
            return [("key", .text(b.key)), ("time", .time(b.timeMilliseconds)), ("actor", .text(b.actor)),
                    ("reason", .text(b.reason))]
        case .memoPut(let b):
            return [("run", .text(b.run)), ("step", .text(b.step)), ("name", .text(b.name)),
                    ("time", .time(b.timeMilliseconds)), ("value", .bytes(b.value))]
        case .journalEntry(let b):
            return [("run", .text(b.run)), ("position", .number(b.position)), ("step", .text(b.step)),
                    ("time", .time(b.timeMilliseconds)), ("value", .bytes(b.value))]
        case .runTerminal(let b):
            let status: String = switch b.status {
            case .succeeded: "succeeded"
            case .failed: "failed"
            case .cancelled: "cancelled"
            }
            return [("run", .text(b.run)), ("status", .word(status)), ("time", .time(b.timeMilliseconds))]
        case .memoEntry(let b):
            let fields: [(String, Field)] = [
                ("namespace", .text(b.namespace)), ("run", .text(b.run)), ("generation", .number(b.generation)),
                ("step", .text(b.step)), ("name", .text(b.name)), ("input", .fingerprint(b.inputDigest)),
                ("time", .time(b.timeMilliseconds)),
            ]
            // The replay journal's positions are memo entries of the reserved step (`Spec/FORMAT.md` §10).
            // (Its other entry, the generation marker, is a plain value.)
            guard b.step == JournalEntry.reservedStep, b.name != JournalEntry.generationMarkerName
            else { return fields + [("value", .bytes(b.value))] }
            switch JournalEntry.decode(b.value) {
            case .entry(let entry):
                return fields + [("journalKind", .word(entry.kind.description)), ("journalPosition", .number(entry.position)),
                                 ("journalEpoch", .number(UInt64(entry.epoch))), ("journalName", .text(entry.nameText)),
                                 ("journalOutput", .bytes(entry.output))]
            case .malformed(let reason):
                return fields + [("value", .bytes(b.value)), ("journalError", .text(reason))]
            }
        case .runEnd(let b):
            let status: String = switch b.status {
            case .succeeded: "succeeded"
            case .failed: "failed"
            case .cancelled: "cancelled"
            }
            return [("namespace", .text(b.namespace)), ("run", .text(b.run)), ("generation", .number(b.generation)),
                    ("status", .word(status)), ("time", .time(b.timeMilliseconds))]
        case .memoSweep(let b):
            return [("namespace", .text(b.namespace)), ("run", .text(b.run)), ("generation", .number(b.generation)),
                    ("time", .time(b.timeMilliseconds))]
        case .snapshotMarker(let b):
            return [("coveredSequence", .number(b.coveredSequence)), ("time", .time(b.timeMilliseconds)),
                    ("snapshotBytes", .number(b.snapshotBytes))]
        case .checkpoint(let time):
            return [("time", .time(time))]
        case .seal(let b):
            return [("successor", .number(b.successor)), ("time", .time(b.timeMilliseconds))]
        case .entryState(let b):
            let state: String = switch b.status {
            case .done: "done"
            case .pending: "pending-unknown"
            case .absent: "absent"
            }
            var fields: [(String, Field)] = [
                ("key", .text(b.key)), ("state", .word(state)), ("attempt", .number(UInt64(b.attempt))),
                ("generation", .number(UInt64(b.generation))),
            ]
            if b.intentTimeMilliseconds != 0 { fields.append(("intentTime", .time(b.intentTimeMilliseconds))) }
            if b.completedTimeMilliseconds != 0 { fields.append(("completedTime", .time(b.completedTimeMilliseconds))) }
            fields.append(("fingerprint", .fingerprint(b.fingerprint)))
            if b.status == .done || !b.receipt.isEmpty { fields.append(("receipt", .bytes(b.receipt))) }
            fields += token(b.key, b.generation)
            return fields
        case .generationFloor(let floor):
            return [("floor", .number(UInt64(floor)))]
        case .entryRetention(let b):
            let scope: String = switch b.scope {
            case .forever: "forever"
            case .whileInFlight: "while-in-flight"
            case .window: "window"
            }
            var fields: [(String, Field)] = [("key", .text(b.key)), ("scope", .word(scope))]
            if b.scope == .window || b.windowMilliseconds != 0 { fields.append(("windowMs", .number(b.windowMilliseconds))) }
            return fields
        case .opaque(let bytes):
            return [("body", .bytes(bytes))]
        }
    }

    // MARK: Rendering

    static func human(_ fields: [(String, Field)]) -> String {
        fields.map { name, field in
            switch field {
            case .text(let text): "\(name)=\(TextFormat.quoted(text))"
            case .number(let value): "\(name)=\(value)"
            case .time(let ms): "\(name)=\(TextFormat.time(ms))"
            case .bytes(let bytes): "\(name)=\(TextFormat.bytes(bytes))"
            case .fingerprint(let bytes): "\(name)=\(TextFormat.fingerprint(bytes))"
            case .word(let word): "\(name)=\(word)"
            }
        }.joined(separator: " ")
    }

    static func json(_ fields: [(String, Field)]) -> [(String, JSONValue)] {
        fields.flatMap { name, field -> [(String, JSONValue)] in
            switch field {
            case .text(let text): [(name, .string(text))]
            case .number(let value): [(name, .unsigned(value))]
            case .time(let ms): [(name, .string(TextFormat.time(ms))), (name + "Ms", .unsigned(ms))]
            case .bytes(let bytes): TextFormat.jsonBytes(bytes, name: name)
            case .fingerprint(let bytes): [(name, bytes.allSatisfy { $0 == 0 } ? .null : .string(Hex.string(bytes)))]
            case .word(let word): [(name, .string(word))]
            }
        }
    }
}
