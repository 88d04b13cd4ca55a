import OnceLedgerFormat

/// One key's entry (`EntryInfo`) for `entries` and `pending`.
enum EntryDescription {
    static func json(_ entry: EntryInfo) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("key", .string(entry.key)), ("state", .string(entry.status.rawValue)),
            ("attempt", .unsigned(UInt64(entry.attempt))), ("generation", .unsigned(UInt64(entry.generation))),
            ("token", .string(entry.token)),
        ]
        let timeName = switch entry.status {
        case .done: "completedTime"
        case .pendingUnknown: "intentTime"
        case .absent: "changedTime"
        }
        members += [(timeName, .string(TextFormat.time(entry.timeMilliseconds))),
                    (timeName + "Ms", .unsigned(entry.timeMilliseconds)),
                    ("fingerprint", entry.hasFingerprint ? .string(Hex.string(entry.fingerprint)) : .null)]
        if entry.status == .done { members += TextFormat.jsonBytes(entry.receipt, name: "receipt") }
        return .object(members)
    }
}
