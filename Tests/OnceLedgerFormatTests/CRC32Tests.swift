// Proves our CRC-32 (the CCRC32 C target behind `CRC32` and the record checksum) is
// bit-identical to zlib's `crc32`: for every length 0 ... 2100 at every alignment 0 ... 15
// with several seeds, for random buffers of up to a few MiB, for chaining split at every
// point, and for the record checksum against the original two-call zlib computation. The
// accelerated path (PCLMULQDQ, when this CPU has it) and the portable slicing-by-8 path
// (`ol_crc32_portable`) are both checked, whatever the machine. No timing assertions here;
// the speed comparison is Tools/crcbench.
import CCRC32
import CZlib
import OnceLedgerFormat
import OnceLedgerTestSupport
import Testing


/// zlib's `crc32`, the reference (lengths here stay far below its 32-bit `uInt`).
private func zlibCRC(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
    guard let base = bytes.baseAddress else { return crc }
    return UInt32(truncatingIfNeeded: CZlib.crc32(UInt(crc), base.assumingMemoryBound(to: UInt8.self), uInt(bytes.count)))
}

/// Both of our paths over the same bytes: the dispatching one and the forced portable one.
private func ourCRCs(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> (dispatched: UInt32, portable: UInt32) {
    (CRC32.update(crc, bytes), ol_crc32_portable(crc, bytes.baseAddress, bytes.count))
}

@Suite struct CRC32Tests {
    static let seeds: [UInt32] = [0, 0xffff_ffff, 0x5a17_c0de, 0x0000_0001]

    @Test func knownValues() {
        let check = Array("123456789".utf8)
        check.withUnsafeBytes { raw in
            for (seed, expected): (UInt32, UInt32) in [(0, 0xcbf4_3926), (0xdead_beef, 0xe34f_7c78)] {
                let ours = ourCRCs(seed, raw)
                #expect(ours.dispatched == expected)
                #expect(ours.portable == expected)
                #expect(zlibCRC(seed, raw) == expected)
            }
        }
        // Empty input (and a NULL pointer) leaves the value unchanged, as zlib does.
        #expect(ol_crc32(0x1234_5678, nil, 0) == 0x1234_5678)
        #expect(ol_crc32_portable(0x1234_5678, nil, 0) == 0x1234_5678)
        // Which path `ol_crc32` takes here, for the log (both are compared below either way).
        print("CRC32Tests: PCLMULQDQ path \(ol_crc32_accelerated() == 1 ? "in use" : "not available")")
    }

    @Test func everyLengthAtEveryAlignmentMatchesZlib() {
        var random = SeededRandom(seed: 0x0c0f_fee0)
        let buffer = random.bytes(2100 + 16)
        var mismatches: [String] = []
        buffer.withUnsafeBytes { all in
            for seed in Self.seeds + [UInt32(truncatingIfNeeded: random.next())] {
                for alignment in 0...15 {
                    for length in 0...2100 {
                        let bytes = UnsafeRawBufferPointer(rebasing: all[alignment..<(alignment + length)])
                        let expected = zlibCRC(seed, bytes)
                        let ours = ourCRCs(seed, bytes)
                        if ours.dispatched != expected || ours.portable != expected, mismatches.count < 10 {
                            mismatches.append("seed \(seed) alignment \(alignment) length \(length)")
                        }
                    }
                }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches)")
    }

    @Test func largeRandomBuffersMatchZlib() {
        var random = SeededRandom(seed: 0xb16_b0f)
        for round in 0..<8 {
            let length = round == 0 ? 4 << 20 : random.int(below: 4 << 20)
            let buffer = random.bytes(length + 16)
            let start = random.int(below: 16)
            let seed = UInt32(truncatingIfNeeded: random.next())
            buffer.withUnsafeBytes { all in
                let bytes = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                let expected = zlibCRC(seed, bytes)
                let ours = ourCRCs(seed, bytes)
                #expect(ours.dispatched == expected, "length \(length) start \(start)")
                #expect(ours.portable == expected, "length \(length) start \(start)")
            }
        }
    }

    @Test func chainingAtEverySplitPointMatchesOneCall() {
        var random = SeededRandom(seed: 0xc4a1_2)
        for length in [300, 4100] {
            let buffer = random.bytes(length)
            buffer.withUnsafeBytes { all in
                for seed in Self.seeds {
                    let whole = zlibCRC(seed, all)
                    var bad: [Int] = []
                    for split in 0...length {
                        let head = UnsafeRawBufferPointer(rebasing: all[0..<split])
                        let tail = UnsafeRawBufferPointer(rebasing: all[split...])
                        let dispatched = CRC32.update(CRC32.update(seed, head), tail)
                        let portable = ol_crc32_portable(
                            ol_crc32_portable(seed, head.baseAddress, head.count), tail.baseAddress, tail.count)
                        if dispatched != whole || portable != whole, bad.count < 10 { bad.append(split) }
                    }
                    #expect(bad.isEmpty, "length \(length) seed \(seed): splits \(bad)")
                }
            }
        }
    }

    /// The record checksum as it was first written: the 32-byte position block built in
    /// memory, then two zlib calls (`Spec/FORMAT.md` §4.2).
    private static func twoCallZlibChecksum(
        previousChain: UInt32, position: RecordPosition, frame: UnsafeRawBufferPointer
    ) -> UInt32 {
        var block = position.ledgerID.bytes
        withUnsafeBytes(of: position.segment.littleEndian) { block.append(contentsOf: $0) }
        withUnsafeBytes(of: position.offset.littleEndian) { block.append(contentsOf: $0) }
        let seeded = block.withUnsafeBytes { zlibCRC(previousChain, $0) }
        return zlibCRC(seeded, frame)
    }

    @Test func recordChecksumMatchesTwoZlibCalls() {
        var random = SeededRandom(seed: 0x5ec0_4d)
        let buffer = random.bytes(4096 + 16)
        var mismatches: [String] = []
        buffer.withUnsafeBytes { all in
            for round in 0..<20_000 {
                // Mostly record-sized frames (28 ... 200 bytes), sometimes anything up to 4 KiB.
                let length = round % 4 == 0 ? random.int(below: 4097) : 28 + random.int(below: 173)
                let start = random.int(below: 16)
                let frame = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                guard let id = LedgerID(bytes: random.bytes(16)) else { continue }
                let position = RecordPosition(ledgerID: id, segment: random.next(), offset: random.next())
                let previous = round % 7 == 0 ? 0 : UInt32(truncatingIfNeeded: random.next())
                let expected = Self.twoCallZlibChecksum(previousChain: previous, position: position, frame: frame)
                let computed = RecordFrame.computeChecksum(
                    previousChain: previous, position: position, frameAfterChecksum: frame)
                // The portable path, composed from the forced slicing-by-8 function.
                let block = Self.positionBlock(position)
                let portable = block.withUnsafeBytes {
                    ol_crc32_portable(
                        ol_crc32_portable(previous, $0.baseAddress, 32), frame.baseAddress, frame.count)
                }
                if computed != expected || portable != expected, mismatches.count < 10 {
                    mismatches.append("length \(length) start \(start)")
                }
            }
            // An empty frame (never a real record, but the function takes any length).
            let position = RecordPosition(ledgerID: GoldenVectors.ledgerID, segment: 2, offset: 128)
            let empty = UnsafeRawBufferPointer(rebasing: all[0..<0])
            #expect(RecordFrame.computeChecksum(previousChain: 7, position: position, frameAfterChecksum: empty)
                    == Self.twoCallZlibChecksum(previousChain: 7, position: position, frame: empty))
        }
        #expect(mismatches.isEmpty, "\(mismatches)")
    }

    private static func positionBlock(_ position: RecordPosition) -> [UInt8] {
        var block = position.ledgerID.bytes
        withUnsafeBytes(of: position.segment.littleEndian) { block.append(contentsOf: $0) }
        withUnsafeBytes(of: position.offset.littleEndian) { block.append(contentsOf: $0) }
        return block
    }

    /// `LedgerID.bytes` is mutable, so a wrong-sized id can reach the checksum: it must not
    /// trap (missing bytes count as zero, extra bytes are ignored).
    @Test func wrongSizedLedgerIDDoesNotTrap() {
        let frame: [UInt8] = Array(0..<92)
        var short = GoldenVectors.ledgerID
        short.bytes = [1, 2, 3]
        var padded = GoldenVectors.ledgerID
        padded.bytes = [1, 2, 3] + [UInt8](repeating: 0, count: 13)
        var long = GoldenVectors.ledgerID
        long.bytes = Array(0..<40)
        frame.withUnsafeBytes { raw in
            func checksum(_ id: LedgerID) -> UInt32 {
                RecordFrame.computeChecksum(
                    previousChain: 1, position: RecordPosition(ledgerID: id, segment: 3, offset: 64),
                    frameAfterChecksum: raw)
            }
            #expect(checksum(short) == checksum(padded))
            #expect(checksum(long) == checksum(GoldenVectors.ledgerID))
        }
    }
}
