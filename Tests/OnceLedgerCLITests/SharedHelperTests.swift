// Proves the helpers each kept once and shared by every caller behave as each caller needs:
// the one string escaper writes control characters Swift's way for text and RFC 8259's way for
// JSON (the outputs the inspection commands had before), the one `plural` groups digits, the
// one path join never doubles a slash, and the one name classification puts every ledger file
// name in its kind. Pure functions, called directly with literal inputs and outputs.
import OnceLedgerFormat
import OnceLedgerLog
import Testing
@testable import onceledger

@Suite struct SharedHelperTests {
    @Test func oneEscaperWritesTextAndJSON() {
        let text = "a\u{1b}\"\\\n\r\t\u{7f}é\u{0}"
        #expect(TextFormat.quoted(text) == #""a\u{1b}\"\\\n\r\t\u{7f}é\u{0}""#)
        #expect(JSONValue.string(text).rendered() == #""a\u001b\"\\\n\r\t\u007fé\u0000""#)
        #expect(JSONValue.object([("k\u{1}", .string("v"))]).rendered() == #"{"k\u0001":"v"}"#)
    }

    @Test func pluralGroupsDigits() {
        #expect(TextFormat.plural(1, "record") == "1 record")
        #expect(TextFormat.plural(0, "record") == "0 records")
        #expect(TextFormat.plural(1234, "valid record") == "1,234 valid records")
        #expect(TextFormat.plural(2, "entry", "entries") == "2 entries")
    }

    @Test func pathJoinNeverDoublesASlash() {
        #expect(Paths.join("/data/ledger", "LOCK") == "/data/ledger/LOCK")
        #expect(Paths.join("/data/ledger/", "LOCK") == "/data/ledger/LOCK")
        #expect(Paths.join("/", "wal-0000000000000001.seg") == "/wal-0000000000000001.seg")
        #expect(Paths.join("relative", "x") == "relative/x")
        #expect(Paths.join("/data", "") == "/data/")
    }

    @Test func everyNameHasOneKind() {
        let cases: [(String, LedgerFileNames.Kind)] = [
            ("wal-0000000000000002.seg", .segment(2)),
            ("snap-000000000000000a.snap", .snapshot(10)),
            ("wal-0000000000000002.seg.tmp", .temporary),
            ("snap-000000000000000a.snap.tmp", .temporary),
            ("torn-0000000000000002-00000000000001f8.bin.tmp", .temporary),
            ("torn-0000000000000002-00000000000001f8.bin", .torn),
            ("torn-0000000000000002-00000000000001f8-3.bin", .torn),
            ("LOCK", .lock),
            ("lock", .other),
            ("notes.tmp", .other),
            ("wal-000000000000000A.seg", .other),
            ("torn-2-3.bin", .other),
            ("lost+found", .other),
        ]
        for (name, kind) in cases { #expect(LedgerFileNames.kind(of: name) == kind, "\(name)") }
    }
}
