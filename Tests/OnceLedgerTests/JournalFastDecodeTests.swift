// Proves the journal's direct reading and writing of plain JSON outputs (a string without
// escapes, an unsigned integer) gives exactly what `JSONDecoder` / `JSONEncoder` (sorted keys,
// slashes unescaped) give, and leaves everything else to them: by comparing both on ordinary,
// escaped, non-ASCII, invalid and edge-case values.
import Foundation
@testable import OnceLedger
import Testing

@Suite struct JournalFastDecodeTests {
    static let strings: [[UInt8]] = [
        Array("\"a recorded answer\"".utf8), Array("\"\"".utf8), Array("\"héllo → 世界 🙂\"".utf8),
        Array("\"a \\\"quoted\\\" word\"".utf8), Array("\"tab\\there\"".utf8), Array("\"\\u00e9\"".utf8),
        Array("\"a/b\"".utf8), [0x22, 0xff, 0xfe, 0x22], [0x22, 0x61, 0x0a, 0x22], Array("\"unterminated".utf8),
        Array("\"".utf8), Array("12".utf8), Array("null".utf8), Array(" \"spaced\" ".utf8),
    ]
    static let numbers: [[UInt8]] = [
        Array("0".utf8), Array("7".utf8), Array("1733480000000".utf8), Array("18446744073709551615".utf8),
        Array("18446744073709551616".utf8), Array("-1".utf8), Array("01".utf8), Array("1.0".utf8), Array("1e3".utf8),
        Array("".utf8), Array("\"5\"".utf8), Array(" 5".utf8),
    ]

    @Test(arguments: strings) func aPlainStringReadsAsTheDecoderReadsIt(_ bytes: [UInt8]) {
        let decoded = try? JSONDecoder().decode(String.self, from: Data(bytes))
        if let fast = Journal.plainJSONString(bytes) {
            #expect(fast == decoded)
        } else {
            // Left to the decoder: only bytes with escapes, quotes, control characters or no plain frame.
            #expect(bytes.count < 2 || bytes.first != 0x22 || bytes.last != 0x22
                || bytes.dropFirst().dropLast().contains { $0 == 0x5c || $0 == 0x22 || $0 < 0x20 } || decoded == nil)
        }
    }

    @Test(arguments: numbers) func aPlainUnsignedIntegerReadsAsTheDecoderReadsIt(_ bytes: [UInt8]) {
        let decoded = try? JSONDecoder().decode(UInt64.self, from: Data(bytes))
        if let fast = Journal.plainJSONUInt64(bytes) {
            #expect(fast == decoded)
        }
        // Every plain integer the decoder accepts without a leading zero is read directly.
        if let decoded, bytes == Array(String(decoded).utf8) {
            #expect(Journal.plainJSONUInt64(bytes) == decoded)
        }
    }

    static let texts: [String] = [
        "a recorded answer", "", String((0x20..<0x7f).map { Character(Unicode.Scalar($0)) }), "a/b", "quote \"", "back\\slash",
        "tab\t", "new\nline", "\u{7f}", "héllo", "世界 🙂", "\u{2028}", UUID().uuidString,
    ]

    @Test(arguments: texts) func aPlainStringIsWrittenAsTheEncoderWritesIt(_ text: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let encoded = Array(try encoder.encode(text))
        if let fast = Journal.plainJSONStringBytes(text) {
            #expect(fast == encoded)
        } else {
            #expect(text.utf8.contains { $0 < 0x20 || $0 >= 0x7f || $0 == 0x22 || $0 == 0x5c })
        }
        // And what is written reads back.
        #expect(try JSONDecoder().decode(String.self, from: Data(encoded)) == text)
    }

    @Test(arguments: [UInt64(0), 7, 1_733_480_000_000, .max]) func anUnsignedIntegerIsWrittenAsTheEncoderWritesIt(_ number: UInt64) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        #expect(Array(String(number).utf8) == Array(try encoder.encode(number)))
    }
}
