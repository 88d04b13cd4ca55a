// Proves that a version-3 snapshot whose done entry state keeps its receipt in its hint (no
// value flag) is refused as corrupt, not accepted: every writer puts a done entry state's
// receipt and a memo entry's value in the values section (FORMAT §6.7), so such a file is not
// one a writer made, and re-encoding it would move the receipt (the snapshot fuzzer found it:
// "snapshot differs on re-encode"). The input is the fuzzer's, checksums recomputed as the
// fuzzer does.
import Foundation
import OnceLedgerFormat
import Testing

@Suite struct SnapshotCanonicalValueTests {
    static let fuzzerInput = "T0xTTkFQU0gDAEAAAQAAAAABAgMEBQYHCAkKCwwNDg8UAAAAAAAAAP7KrQu+9ML0YAAAAAAAAAAFAAAAoSkp208AAAALAAAANa+yXgAAAAAMAGRhaWx5LWRpZ2VzdAEDAAAAAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADoa+XPiwEAAAQAAABzZW50AEsAAAALAAEAQAAAAAAAAABPAAAAAAAAAAwAZGFpbHktZGlnZXN0AQMAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAOhr5c+LAQAAAAAAAAAAAAAASwAAAAsAAAAAAAAAAAAAAAAAAAAAAAAADABzcGF3bi13b3JrZQIBcgAAAAUAAACgoaKjpKWmp6ipqqusra6vsLGys7S1tre4ubq7vL2+v4h75c+LAQAAAAAAAAAAAAAAAAAAAAAAAAAaAAAAEQAAAAAAAAAAAAAAAAAAAAAAAAAMAGRhaWx5LWRpZ2VzdAIAAAAAXCYFAAAAAAAAAAAAABoAAAARAAAAAAAAAAAAAAAAAAAAAAAAAAwAc3Bhd24td29ya2VyAQAAAAAAAAAAAAAAAAAAAAAABAAAABAAAAAAAAAAAAAAAAAAAAAAAAAABwAAAAAAAABPTFNOQVBFTgAAAABLclgA"

    @Test func aDoneEntryStateWithoutItsValueIsCorrupt() throws {
        var bytes = [UInt8](try #require(Data(base64Encoded: Self.fuzzerInput)))
        func store(_ offset: Int, _ value: UInt32) {
            for index in 0..<4 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(index))) }
        }
        let trailerStart = bytes.count - FormatLimits.snapshotTrailerBytes
        let values = ByteReader.getInteger(bytes, at: 48, as: UInt64.self)
        store(44, CRC32.checksum(Array(bytes[(FormatLimits.snapshotHeaderBytes + Int(values))..<trailerStart])))
        store(60, CRC32.checksum(Array(bytes[0..<60])))
        store(trailerStart + 12, CRC32.checksum(Array(bytes[0..<(trailerStart + 12)])))
        guard case .corrupt(let reason) = SnapshotFile.decode(bytes) else {
            Issue.record("a done entry state without its value decoded")
            return
        }
        #expect(reason.contains("without its value"), "\(reason)")
    }
}
