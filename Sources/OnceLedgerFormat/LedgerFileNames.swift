/// File names inside a ledger directory (`Spec/FORMAT.md` §2).
///
/// - `LOCK`: the exclusive lock (its text is the holder's pid).
/// - `wal-<16 lowercase hex digits: segment number>.seg`: a segment.
/// - `snap-<16 hex: covered sequence number>.snap`: a snapshot.
/// - `<one of the names above>.tmp`: a file being created; never read; deleted on open.
/// - `torn-<16 hex segment>-<16 hex offset>.bin`: bytes quarantined from a torn tail.
/// Any other name is not part of the ledger and is ignored.
public enum LedgerFileNames {
    public static let lock = "LOCK"
    public static let temporarySuffix = ".tmp"

    public static func segment(_ number: UInt64) -> String { "wal-\(hex16(number)).seg" }
    public static func snapshot(_ covered: UInt64) -> String { "snap-\(hex16(covered)).snap" }
    public static func torn(segment: UInt64, offset: UInt64) -> String {
        "torn-\(hex16(segment))-\(hex16(offset)).bin"
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
    public static func isTorn(_ name: String) -> Bool { name.hasPrefix("torn-") && name.hasSuffix(".bin") }

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
