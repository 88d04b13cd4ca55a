/// File names inside a ledger directory (`Spec/FORMAT.md` §2).
///
/// - `LOCK`: the exclusive lock (its text is the holder's pid).
/// - `wal-<16 lowercase hex digits: segment number>.seg`: a segment.
/// - `snap-<16 hex: covered sequence number>.snap`: a snapshot.
/// - `<one of the names above>.tmp`: a file being created; never read; deleted on open.
/// - `torn-<16 hex segment>-<16 hex offset>.bin`, or with `-<n>` before `.bin` (n = 1, 2, …
///   in decimal, no leading zero): bytes quarantined from a torn tail.
/// Any other name is not part of the ledger and is ignored.
public enum LedgerFileNames {
    public static let lock = "LOCK"
    public static let temporarySuffix = ".tmp"

    public static func segment(_ number: UInt64) -> String { "wal-\(hex16(number)).seg" }
    public static func snapshot(_ covered: UInt64) -> String { "snap-\(hex16(covered)).snap" }
    public static func torn(segment: UInt64, offset: UInt64) -> String {
        "torn-\(hex16(segment))-\(hex16(offset)).bin"
    }

    /// What a directory entry's name makes it (the one classification every reader of
    /// a ledger directory uses).
    public enum Kind: Hashable, Sendable {
        /// `wal-<n>.seg`: segment number n.
        case segment(UInt64)
        /// `snap-<n>.snap`: a snapshot covering sequence numbers up to n.
        case snapshot(UInt64)
        /// A segment, snapshot or torn side file name + `.tmp`.
        case temporary
        /// A torn side file.
        case torn
        /// `LOCK`.
        case lock
        /// Not part of the ledger (ignored).
        case other
    }

    public static func kind(of name: String) -> Kind {
        if let number = parseSegment(name) { return .segment(number) }
        if let covered = parseSnapshot(name) { return .snapshot(covered) }
        if isTemporary(name) { return .temporary }
        if isTorn(name) { return .torn }
        return name == lock ? .lock : .other
    }

    public static func parseSegment(_ name: String) -> UInt64? { parse(name, prefix: "wal-", suffix: ".seg") }
    public static func parseSnapshot(_ name: String) -> UInt64? { parse(name, prefix: "snap-", suffix: ".snap") }
    /// A temporary file of ours: a segment, snapshot or torn side file name + `.tmp`.
    /// Other `*.tmp` names are not ours and are left alone.
    public static func isTemporary(_ name: String) -> Bool {
        guard name.hasSuffix(temporarySuffix) else { return false }
        let base = String(name.dropLast(temporarySuffix.count))
        return parseSegment(base) != nil || parseSnapshot(base) != nil || isTorn(base)
    }
    /// A torn side file's name, exactly (`Spec/FORMAT.md` §2.1): `torn-<16 hex>-<16 hex>.bin`
    /// or `torn-<16 hex>-<16 hex>-<n>.bin`. Any other `torn-*.bin` is not the ledger's.
    public static func isTorn(_ name: String) -> Bool {
        guard name.hasPrefix("torn-"), name.hasSuffix(".bin") else { return false }
        let middle = Array(name.utf8.dropFirst(5).dropLast(4))
        // <16 hex> "-" <16 hex>, then nothing or "-" <n>.
        guard middle.count >= 33, middle[16] == UInt8(ascii: "-"),
              isLowerHex(middle[0..<16]), isLowerHex(middle[17..<33]) else { return false }
        let rest = middle[33...]
        guard let dash = rest.first else { return true }
        let digits = rest.dropFirst()
        return dash == UInt8(ascii: "-") && !digits.isEmpty && digits.count <= 19 && digits.first != UInt8(ascii: "0")
            && digits.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    private static func isLowerHex(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.allSatisfy { ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "f")) }
    }

    public static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }

    private static func parse(_ name: String, prefix: String, suffix: String) -> UInt64? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let middle = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard middle.count == 16, middle.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { return nil }
        return UInt64(middle, radix: 16)
    }
}
