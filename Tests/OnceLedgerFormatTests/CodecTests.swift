// Proves the codec is total and canonical on untrusted bytes: every RecordBody kind round-trips;
// every truncation (and every extension) of every body decodes as a typed `.corrupt`, never a
// trap; `validate()` enforces each named limit at its exact bound and the decoder rejects what
// `validate()` rejects; and seeded random garbage and mutated encodings fed to every decoder
// never trap, while anything that does decode re-encodes to the same bytes. The seed is
// printed; ONCELEDGER_FUZZ_SEED and ONCELEDGER_FUZZ_ITERATIONS override it and the count.
import Foundation
import OnceLedgerFormat
import OnceLedgerTestSupport
import Testing

private enum Samples {
    static let fingerprint = [UInt8](0..<32)
    static let time: UInt64 = 1_700_000_000_000

    /// Small bodies of every kind, including empty optional fields and non-ASCII text.
    static let small: [RecordBody] = [
        .intent(.init(key: "k", fingerprint: fingerprint, attempt: 1, generation: 0, scope: .forever,
                      windowMilliseconds: 0, timeMilliseconds: time)),
        .intent(.init(key: "clé-✓", fingerprint: fingerprint, attempt: .max, generation: .max, scope: .window,
                      windowMilliseconds: .max, timeMilliseconds: .max)),
        .intent(.init(key: "in-flight", attempt: 2, generation: 7, scope: .whileInFlight, timeMilliseconds: 0)),
        .completion(.init(key: "k", attempt: 1, timeMilliseconds: time, receipt: [])),
        .completion(.init(key: "k", attempt: 9, timeMilliseconds: time, receipt: [0, 1, 2, 0xff])),
        .release(.init(key: "k", attempt: 1, timeMilliseconds: time, reason: "")),
        .release(.init(key: "k", attempt: 1, timeMilliseconds: time, reason: "threw before sending")),
        .resolve(.init(key: "k", outcome: .done, attempt: 3, timeMilliseconds: time, receipt: [7],
                       actor: "ops", reason: "checked")),
        .resolve(.init(key: "k", outcome: .absent, attempt: 3, timeMilliseconds: time, receipt: [],
                       actor: "", reason: "")),
        .forget(.init(key: "k", timeMilliseconds: time, actor: "ops", reason: "resend")),
        .forget(.init(key: "k", timeMilliseconds: time, actor: "", reason: "")),
        .memoPut(.init(run: "r", step: "s", name: "n", timeMilliseconds: time, value: [1, 2, 3])),
        .memoPut(.init(run: "r", step: "", name: "", timeMilliseconds: time, value: [])),
        .journalEntry(.init(run: "r", position: 0, step: "uuid", timeMilliseconds: time, value: [9])),
        .journalEntry(.init(run: "r", position: .max, step: "", timeMilliseconds: time, value: [])),
        .runTerminal(.init(run: "r", status: .succeeded, timeMilliseconds: time)),
        .runTerminal(.init(run: "r", status: .failed, timeMilliseconds: time)),
        .runTerminal(.init(run: "r", status: .cancelled, timeMilliseconds: time)),
        .memoEntry(.init(namespace: "", run: "r", generation: 1, step: "s", name: "n", timeMilliseconds: time,
                         value: [1, 2, 3])),
        .memoEntry(.init(namespace: "ns", run: "r", generation: .max, step: "", name: "", inputDigest: fingerprint,
                         timeMilliseconds: time, value: [])),
        .runEnd(.init(namespace: "", run: "r", generation: 1, status: .succeeded, timeMilliseconds: time)),
        .runEnd(.init(namespace: "ns", run: "r", generation: 2, status: .failed, timeMilliseconds: time)),
        .runEnd(.init(namespace: "ns", run: "r", generation: 3, status: .cancelled, timeMilliseconds: time)),
        .memoSweep(.init(namespace: "", run: "r", generation: 1, timeMilliseconds: time)),
        .snapshotMarker(.init(coveredSequence: 42, timeMilliseconds: time, snapshotBytes: 4096)),
        .checkpoint(timeMilliseconds: time),
        .entryState(.init(key: "k", status: .done, attempt: 1, generation: 0, fingerprint: fingerprint,
                          intentTimeMilliseconds: time, completedTimeMilliseconds: time + 1, receipt: [1])),
        .entryState(.init(key: "k", status: .pending, attempt: 2, generation: 1, fingerprint: fingerprint,
                          intentTimeMilliseconds: time, completedTimeMilliseconds: 0, receipt: [])),
        .entryState(.init(key: "k", status: .absent, attempt: 2, generation: 1, fingerprint: fingerprint,
                          intentTimeMilliseconds: 0, completedTimeMilliseconds: 0, receipt: [])),
        .seal(.init(successor: 2, timeMilliseconds: time)),
        .seal(.init(successor: .max, timeMilliseconds: .max)),
        .generationFloor(floor: 0),
        .generationFloor(floor: .max),
        .entryRetention(.init(key: "k", scope: .window, windowMilliseconds: .max)),
        .entryRetention(.init(key: "clé-✓", scope: .whileInFlight, windowMilliseconds: 0)),
        .opaque([]),
        .opaque(Array("opaque".utf8)),
    ]

    static func text(_ count: Int) -> String { String(repeating: "x", count: count) }
    static func data(_ count: Int) -> [UInt8] { [UInt8](repeating: 0x5a, count: count) }

    /// Bodies with every bounded field exactly at its limit.
    static let atLimits: [RecordBody] = [
        .intent(.init(key: text(FormatLimits.keyBytesMax), fingerprint: fingerprint, attempt: 1, timeMilliseconds: time)),
        .completion(.init(key: text(FormatLimits.keyBytesMax), attempt: 1, timeMilliseconds: time,
                          receipt: data(FormatLimits.receiptBytesMax))),
        .release(.init(key: "k", attempt: 1, timeMilliseconds: time, reason: text(FormatLimits.reasonBytesMax))),
        .resolve(.init(key: text(FormatLimits.keyBytesMax), outcome: .done, attempt: 1, timeMilliseconds: time,
                       receipt: data(FormatLimits.receiptBytesMax), actor: text(FormatLimits.reasonBytesMax),
                       reason: text(FormatLimits.reasonBytesMax))),
        .forget(.init(key: "k", timeMilliseconds: time, actor: text(FormatLimits.reasonBytesMax),
                      reason: text(FormatLimits.reasonBytesMax))),
        .memoPut(.init(run: text(FormatLimits.nameBytesMax), step: text(FormatLimits.nameBytesMax),
                       name: text(FormatLimits.nameBytesMax), timeMilliseconds: time, value: data(FormatLimits.valueBytesMax))),
        .journalEntry(.init(run: text(FormatLimits.nameBytesMax), position: 1, step: text(FormatLimits.nameBytesMax),
                            timeMilliseconds: time, value: data(FormatLimits.valueBytesMax))),
        .runTerminal(.init(run: text(FormatLimits.nameBytesMax), status: .failed, timeMilliseconds: time)),
        .memoEntry(.init(namespace: text(FormatLimits.namespaceBytesMax), run: text(FormatLimits.runBytesMax),
                         generation: .max, step: text(FormatLimits.stepBytesMax), name: text(FormatLimits.memoNameBytesMax),
                         inputDigest: fingerprint, timeMilliseconds: time, value: data(FormatLimits.valueBytesMax))),
        .runEnd(.init(namespace: text(FormatLimits.namespaceBytesMax), run: text(FormatLimits.runBytesMax),
                      generation: .max, status: .cancelled, timeMilliseconds: time)),
        .memoSweep(.init(namespace: text(FormatLimits.namespaceBytesMax), run: text(FormatLimits.runBytesMax),
                         generation: .max, timeMilliseconds: time)),
        .entryState(.init(key: text(FormatLimits.keyBytesMax), status: .done, attempt: 1, generation: 1,
                          fingerprint: fingerprint, intentTimeMilliseconds: time, completedTimeMilliseconds: time,
                          receipt: data(FormatLimits.receiptBytesMax))),
        .entryRetention(.init(key: text(FormatLimits.keyBytesMax), scope: .forever, windowMilliseconds: 0)),
        .generationFloor(floor: .max),
        // A key of 512 two-byte characters: the limit counts UTF-8 bytes.
        .intent(.init(key: String(repeating: "é", count: FormatLimits.keyBytesMax / 2), attempt: 1, timeMilliseconds: time)),
    ]
}

@Suite struct CodecTests {
    // MARK: Round trips

    @Test func everyKindHasASample() {
        #expect(Set(Samples.small.map(\.kind)) == Set(RecordKind.known))
        #expect(Set(Samples.atLimits.map(\.kind)).isSuperset(of: RecordKind.known.filter { ![.snapshotMarker, .checkpoint, .seal, .opaque].contains($0) }))
    }

    @Test(arguments: Samples.small)
    func roundTrip(body: RecordBody) throws {
        try Self.checkRoundTrip(body)
    }

    /// Not parameterized: describing megabyte-sized arguments would dominate the test's time.
    @Test func roundTripAtLimits() throws {
        for body in Samples.atLimits { try Self.checkRoundTrip(body) }
    }

    private static func checkRoundTrip(_ body: RecordBody, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try body.validate()
        let bytes = body.encode()
        #expect(RecordBody.decode(kind: body.kind, bytes) == .body(body), "\(body.kind)", sourceLocation: sourceLocation)
        // The frame round-trips too, at an arbitrary position.
        let id = LedgerID(bytes: Array(100..<116))!
        var frame: [UInt8] = [0xee]  // the frame need not start at index 0 of the buffer
        let checksum = RecordFrame.encode(
            into: &frame, sequence: 9, ackedThrough: 8, previousChain: 0x1234_5678, kind: body.kind, flags: 0,
            body: bytes, position: RecordPosition(ledgerID: id, segment: 3, offset: 1024))
        let result = frame.withUnsafeBytes { raw in
            RecordFrame.decode(raw, at: 1, end: frame.count, baseOffset: 1023, ledgerID: id, segment: 3)
        }
        guard case .record(let header, let bodyStart) = result else {
            Issue.record("\(body.kind) frame does not decode: \(result)", sourceLocation: sourceLocation)
            return
        }
        #expect(header.checksum == checksum, sourceLocation: sourceLocation)
        #expect(header.sequence == 9 && header.ackedThrough == 8 && header.previousChain == 0x1234_5678,
                sourceLocation: sourceLocation)
        #expect(header.kind == body.kind && header.flags == 0, sourceLocation: sourceLocation)
        #expect(Array(frame[bodyStart..<(bodyStart + Int(header.bodyBytes))]) == bytes, sourceLocation: sourceLocation)
        #expect((frame.count - 1) % FormatLimits.recordAlignment == 0, sourceLocation: sourceLocation)
    }

    // MARK: Truncation and extension

    @Test(arguments: Samples.small.filter { $0.kind != .opaque })
    func everyTruncationIsCorrupt(body: RecordBody) {
        let bytes = body.encode()
        for length in 0..<bytes.count {
            let result = RecordBody.decode(kind: body.kind, Array(bytes[0..<length]))
            guard case .corrupt = result else {
                Issue.record("\(body.kind) truncated to \(length) of \(bytes.count) bytes decoded as \(result)")
                continue
            }
        }
        for extra in [[UInt8(0)], [0xff], [0, 0, 0, 0, 0, 0, 0, 0]] {
            guard case .corrupt = RecordBody.decode(kind: body.kind, bytes + extra) else {
                Issue.record("\(body.kind) with \(extra.count) trailing bytes must be corrupt")
                continue
            }
        }
    }

    @Test func opaqueAcceptsAnyBytes() {
        let bytes = Array("opaque".utf8)
        for length in 0...bytes.count {
            #expect(RecordBody.decode(kind: .opaque, Array(bytes[0..<length])) == .body(.opaque(Array(bytes[0..<length]))))
        }
    }

    @Test func unknownKindsAreReportedNotGuessed() {
        for raw: UInt16 in [0, 18, 100, 0x7ffe, 0x8000, 0xffff] {
            #expect(RecordBody.decode(kind: RecordKind(rawValue: raw), [1, 2, 3]) == .unknownKind(RecordKind(rawValue: raw)))
        }
    }

    @Test func invalidFieldValuesAreCorrupt() {
        func corrupt(_ kind: RecordKind, _ bytes: [UInt8], _ what: String) {
            guard case .corrupt = RecordBody.decode(kind: kind, bytes) else {
                Issue.record("\(what) must be corrupt")
                return
            }
        }
        let intent = RecordBody.intent(.init(key: "k", attempt: 1, timeMilliseconds: 5)).encode()
        // key str16 (3 bytes) + fingerprint 32 + attempt 4 + generation 4 = 43: scope, then reserved.
        var badScope = intent
        badScope[43] = 3
        corrupt(.intent, badScope, "scope 3")
        for index in 44..<47 {
            var reserved = intent
            reserved[index] = 1
            corrupt(.intent, reserved, "nonzero reserved byte \(index)")
        }
        var emptyKey = intent
        emptyKey.replaceSubrange(0..<3, with: [0, 0])
        corrupt(.intent, emptyKey, "empty key")
        var badUTF8 = intent
        badUTF8[2] = 0xff
        corrupt(.intent, badUTF8, "invalid UTF-8 key")

        let resolve = RecordBody.resolve(.init(key: "k", outcome: .done, attempt: 1, timeMilliseconds: 1, receipt: [],
                                               actor: "", reason: "")).encode()
        for outcome: UInt8 in [0, 3, 0xff] {
            var bad = resolve
            bad[3] = outcome
            corrupt(.resolve, bad, "resolve outcome \(outcome)")
        }
        let terminal = RecordBody.runTerminal(.init(run: "r", status: .failed, timeMilliseconds: 1)).encode()
        for status: UInt8 in [0, 4] {
            var bad = terminal
            bad[3] = status
            corrupt(.runTerminal, bad, "run status \(status)")
        }
        let entry = RecordBody.entryState(.init(key: "k", status: .done, attempt: 1, generation: 1, fingerprint: Samples.fingerprint,
                                                intentTimeMilliseconds: 1, completedTimeMilliseconds: 2, receipt: [])).encode()
        for status: UInt8 in [0, 4] {
            var bad = entry
            bad[3] = status
            corrupt(.entryState, bad, "entry state \(status)")
        }
        let memo = RecordBody.memoPut(.init(run: "r", step: "", name: "", timeMilliseconds: 1, value: [])).encode()
        var emptyRun = memo
        emptyRun.replaceSubrange(0..<3, with: [0, 0])
        corrupt(.memoPut, emptyRun, "empty run")
        // Namespace "" (2 bytes), run "r" (3), generation (8): the run-end status is byte 13.
        let runEnd = RecordBody.runEnd(.init(namespace: "", run: "r", generation: 1, status: .failed,
                                             timeMilliseconds: 1)).encode()
        for status: UInt8 in [0, 4] {
            var bad = runEnd
            bad[13] = status
            corrupt(.runEnd, bad, "run-end status \(status)")
        }
        for kind in RecordKind.memoKinds {
            let body: RecordBody = switch kind {
            case .memoEntry: .memoEntry(.init(namespace: "", run: "r", generation: 1, step: "", name: "",
                                              timeMilliseconds: 1, value: []))
            case .runEnd: .runEnd(.init(namespace: "", run: "r", generation: 1, status: .failed, timeMilliseconds: 1))
            default: .memoSweep(.init(namespace: "", run: "r", generation: 1, timeMilliseconds: 1))
            }
            var emptyRun = body.encode()
            emptyRun.replaceSubrange(2..<5, with: [0, 0])
            corrupt(kind, emptyRun, "\(kind) with an empty run")
        }
    }

    // MARK: Limits

    private static func expectLimit(_ body: RecordBody, code: LedgerError.Code, limit: String?,
                                    sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try body.validate()
            Issue.record("validate() accepted a body over a limit: \(body.kind)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, sourceLocation: sourceLocation)
            #expect(error.limit == limit, sourceLocation: sourceLocation)
        }
        // What validate() rejects, the decoder rejects too (readers enforce the same bounds).
        if code == .limitExceeded, body.kind != .opaque {
            guard case .corrupt = RecordBody.decode(kind: body.kind, body.encode()) else {
                Issue.record("the decoder accepted an over-limit \(body.kind)", sourceLocation: sourceLocation)
                return
            }
        }
    }

    @Test func limitsAreEnforcedAtTheirBounds() throws {
        for body in Samples.atLimits { try body.validate() }
        let t = Samples.time
        let key = Samples.text(FormatLimits.keyBytesMax + 1)
        let long = Samples.text(FormatLimits.reasonBytesMax + 1)
        let name = Samples.text(FormatLimits.nameBytesMax + 1)
        let receipt = Samples.data(FormatLimits.receiptBytesMax + 1)
        let value = Samples.data(FormatLimits.valueBytesMax + 1)
        let fp = Samples.fingerprint

        Self.expectLimit(.intent(.init(key: key, attempt: 1, timeMilliseconds: t)), code: .limitExceeded, limit: "keyBytesMax")
        Self.expectLimit(.intent(.init(key: String(repeating: "é", count: 513), attempt: 1, timeMilliseconds: t)),
                         code: .limitExceeded, limit: "keyBytesMax")
        Self.expectLimit(.intent(.init(key: "", attempt: 1, timeMilliseconds: t)), code: .invalidArgument, limit: nil)
        Self.expectLimit(.intent(.init(key: "k", fingerprint: [1, 2], attempt: 1, timeMilliseconds: t)),
                         code: .invalidArgument, limit: nil)
        Self.expectLimit(.completion(.init(key: key, attempt: 1, timeMilliseconds: t, receipt: [])),
                         code: .limitExceeded, limit: "keyBytesMax")
        Self.expectLimit(.completion(.init(key: "k", attempt: 1, timeMilliseconds: t, receipt: receipt)),
                         code: .limitExceeded, limit: "receiptBytesMax")
        Self.expectLimit(.completion(.init(key: "", attempt: 1, timeMilliseconds: t, receipt: [])),
                         code: .invalidArgument, limit: nil)
        Self.expectLimit(.release(.init(key: "k", attempt: 1, timeMilliseconds: t, reason: long)),
                         code: .limitExceeded, limit: "reasonBytesMax")
        Self.expectLimit(.resolve(.init(key: "k", outcome: .done, attempt: 1, timeMilliseconds: t, receipt: receipt,
                                        actor: "", reason: "")), code: .limitExceeded, limit: "receiptBytesMax")
        Self.expectLimit(.resolve(.init(key: "k", outcome: .done, attempt: 1, timeMilliseconds: t, receipt: [],
                                        actor: long, reason: "")), code: .limitExceeded, limit: "actorBytesMax")
        Self.expectLimit(.resolve(.init(key: "k", outcome: .done, attempt: 1, timeMilliseconds: t, receipt: [],
                                        actor: "", reason: long)), code: .limitExceeded, limit: "reasonBytesMax")
        Self.expectLimit(.forget(.init(key: "k", timeMilliseconds: t, actor: long, reason: "")),
                         code: .limitExceeded, limit: "actorBytesMax")
        Self.expectLimit(.forget(.init(key: "", timeMilliseconds: t, actor: "", reason: "")),
                         code: .invalidArgument, limit: nil)
        Self.expectLimit(.memoPut(.init(run: "", step: "", name: "", timeMilliseconds: t, value: [])),
                         code: .invalidArgument, limit: nil)
        Self.expectLimit(.memoPut(.init(run: name, step: "", name: "", timeMilliseconds: t, value: [])),
                         code: .limitExceeded, limit: "runBytesMax")
        Self.expectLimit(.memoPut(.init(run: "r", step: name, name: "", timeMilliseconds: t, value: [])),
                         code: .limitExceeded, limit: "stepBytesMax")
        Self.expectLimit(.memoPut(.init(run: "r", step: "", name: name, timeMilliseconds: t, value: [])),
                         code: .limitExceeded, limit: "nameBytesMax")
        Self.expectLimit(.memoPut(.init(run: "r", step: "", name: "", timeMilliseconds: t, value: value)),
                         code: .limitExceeded, limit: "valueBytesMax")
        Self.expectLimit(.journalEntry(.init(run: "r", position: 1, step: name, timeMilliseconds: t, value: [])),
                         code: .limitExceeded, limit: "stepBytesMax")
        Self.expectLimit(.journalEntry(.init(run: "r", position: 1, step: "", timeMilliseconds: t, value: value)),
                         code: .limitExceeded, limit: "valueBytesMax")
        Self.expectLimit(.journalEntry(.init(run: "", position: 1, step: "", timeMilliseconds: t, value: [])),
                         code: .invalidArgument, limit: nil)
        Self.expectLimit(.runTerminal(.init(run: name, status: .failed, timeMilliseconds: t)),
                         code: .limitExceeded, limit: "runBytesMax")
        Self.expectLimit(.runTerminal(.init(run: "", status: .failed, timeMilliseconds: t)),
                         code: .invalidArgument, limit: nil)
        let namespace = Samples.text(FormatLimits.namespaceBytesMax + 1)
        func memoEntry(namespace: String = "", run: String = "r", step: String = "", name: String = "",
                       digest: [UInt8] = RecordBody.noInputDigest, value: [UInt8] = []) -> RecordBody {
            .memoEntry(.init(namespace: namespace, run: run, generation: 1, step: step, name: name, inputDigest: digest,
                             timeMilliseconds: t, value: value))
        }
        Self.expectLimit(memoEntry(run: ""), code: .invalidArgument, limit: nil)
        Self.expectLimit(memoEntry(namespace: namespace), code: .limitExceeded, limit: "namespaceBytesMax")
        Self.expectLimit(memoEntry(run: name), code: .limitExceeded, limit: "runBytesMax")
        Self.expectLimit(memoEntry(step: name), code: .limitExceeded, limit: "stepBytesMax")
        Self.expectLimit(memoEntry(name: name), code: .limitExceeded, limit: "memoNameBytesMax")
        Self.expectLimit(memoEntry(value: value), code: .limitExceeded, limit: "valueBytesMax")
        Self.expectLimit(memoEntry(digest: [1, 2]), code: .invalidArgument, limit: nil)
        for run in ["", name] {
            Self.expectLimit(.runEnd(.init(namespace: "", run: run, generation: 1, status: .failed, timeMilliseconds: t)),
                             code: run.isEmpty ? .invalidArgument : .limitExceeded, limit: run.isEmpty ? nil : "runBytesMax")
            Self.expectLimit(.memoSweep(.init(namespace: "", run: run, generation: 1, timeMilliseconds: t)),
                             code: run.isEmpty ? .invalidArgument : .limitExceeded, limit: run.isEmpty ? nil : "runBytesMax")
        }
        Self.expectLimit(.runEnd(.init(namespace: namespace, run: "r", generation: 1, status: .failed, timeMilliseconds: t)),
                         code: .limitExceeded, limit: "namespaceBytesMax")
        Self.expectLimit(.memoSweep(.init(namespace: namespace, run: "r", generation: 1, timeMilliseconds: t)),
                         code: .limitExceeded, limit: "namespaceBytesMax")
        Self.expectLimit(.entryState(.init(key: key, status: .done, attempt: 1, generation: 0, fingerprint: fp,
                                           intentTimeMilliseconds: t, completedTimeMilliseconds: t, receipt: [])),
                         code: .limitExceeded, limit: "keyBytesMax")
        Self.expectLimit(.entryState(.init(key: "k", status: .done, attempt: 1, generation: 0, fingerprint: fp,
                                           intentTimeMilliseconds: t, completedTimeMilliseconds: t, receipt: receipt)),
                         code: .limitExceeded, limit: "receiptBytesMax")
        Self.expectLimit(.entryState(.init(key: "k", status: .done, attempt: 1, generation: 0, fingerprint: [0],
                                           intentTimeMilliseconds: t, completedTimeMilliseconds: t, receipt: [])),
                         code: .invalidArgument, limit: nil)
        Self.expectLimit(.opaque(Samples.data(Int(FormatLimits.recordBodyBytesMax) + 1)),
                         code: .limitExceeded, limit: "recordBodyBytesMax")
        try RecordBody.opaque(Samples.data(Int(FormatLimits.recordBodyBytesMax))).validate()
    }

    @Test func frameRejectsOversizedBodyLength() {
        let id = LedgerID(bytes: [UInt8](repeating: 1, count: 16))!
        var header = [UInt8](repeating: 0, count: 64)
        // A nonzero header whose body length is one past the format maximum.
        withUnsafeBytes(of: (FormatLimits.recordBodyBytesMax + 1).littleEndian) { header.replaceSubrange(4..<8, with: $0) }
        let result = header.withUnsafeBytes { RecordFrame.decode($0, at: 0, end: 1 << 30, baseOffset: 0, ledgerID: id, segment: 1) }
        #expect(result == .corrupt(.bodyBytesOutOfBounds(FormatLimits.recordBodyBytesMax + 1)))
        // A length that fits the format but runs past the segment end is corrupt; past the
        // buffer (but inside the segment) it is incomplete.
        withUnsafeBytes(of: UInt32(100).littleEndian) { header.replaceSubrange(4..<8, with: $0) }
        let pastSegment = header.withUnsafeBytes { RecordFrame.decode($0, at: 0, end: 64, baseOffset: 0, ledgerID: id, segment: 1) }
        #expect(pastSegment == .corrupt(.bodyBytesOutOfBounds(100)))
        let pastBuffer = header.withUnsafeBytes { RecordFrame.decode($0, at: 0, end: 4096, baseOffset: 0, ledgerID: id, segment: 1) }
        #expect(pastBuffer == .incomplete)
    }

    // MARK: Checksums and names

    @Test func crc32IsZlibWithContinuation() {
        let check = Array("123456789".utf8)
        #expect(CRC32.checksum(check) == 0xcbf4_3926)
        #expect(CRC32.update(0xdead_beef, check) == 0xe34f_7c78)
        #expect(CRC32.checksum([]) == 0)
        for split in 0...check.count {
            #expect(CRC32.update(CRC32.checksum(Array(check[0..<split])), Array(check[split...])) == 0xcbf4_3926)
        }
    }

    @Test func fileNames() {
        #expect(LedgerFileNames.segment(1) == "wal-0000000000000001.seg")
        #expect(LedgerFileNames.segment(0xdead_beef_0000_0001) == "wal-deadbeef00000001.seg")
        #expect(LedgerFileNames.snapshot(6) == "snap-0000000000000006.snap")
        #expect(LedgerFileNames.torn(segment: 2, offset: 0x1f8) == "torn-0000000000000002-00000000000001f8.bin")
        #expect(LedgerFileNames.parseSegment("wal-ffffffffffffffff.seg") == .max)
        #expect(LedgerFileNames.parseSnapshot("snap-000000000000000a.snap") == 10)
        for name in ["wal-1.seg", "wal-000000000000000A.seg", "wal-00000000000000001.seg", "wal-0000000000000001.seg.tmp",
                     "wal-000000000000000g.seg", "WAL-0000000000000001.seg", "wal-+000000000000001.seg", "wal-0000000000000001"] {
            #expect(LedgerFileNames.parseSegment(name) == nil, "\(name) is not a segment")
        }
        #expect(LedgerFileNames.isTemporary("wal-0000000000000001.seg.tmp"))
        #expect(LedgerFileNames.isTorn("torn-0000000000000002-00000000000001f8-1.bin"))
    }

    // MARK: Garbage never traps

    static var fuzzSeed: UInt64 {
        ProcessInfo.processInfo.environment["ONCELEDGER_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x0_1ed9_5eed
    }
    static var fuzzIterations: Int {
        ProcessInfo.processInfo.environment["ONCELEDGER_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 3000
    }

    /// Decodes `bytes` with every decoder; whatever decodes must re-encode to the same bytes.
    private static func decodeEverything(_ bytes: [UInt8], random: inout SeededRandom, context: String) {
        let kinds = RecordKind.known + [RecordKind(rawValue: 0), RecordKind(rawValue: UInt16(truncatingIfNeeded: random.next()))]
        for kind in kinds {
            if case .body(let body) = RecordBody.decode(kind: kind, bytes) {
                #expect(body.encode() == bytes, "non-canonical \(kind) body, \(context)")
                #expect(body.kind == kind, "\(context)")
            }
        }
        if case .header(let header) = SegmentHeader.decode(bytes) {
            #expect(header.encode() == Array(bytes[0..<64]), "non-canonical segment header, \(context)")
        }
        if case .snapshot(let snapshot) = SnapshotFile.decode(bytes) {
            #expect(snapshot.encode() == bytes, "non-canonical snapshot, \(context)")
        }
        let id = LedgerID(bytes: Array(bytes.prefix(16)) + [UInt8](repeating: 0, count: max(0, 16 - bytes.count)))!
        let index = bytes.isEmpty ? 0 : random.int(below: bytes.count + 8) - 4
        let end = random.int(below: bytes.count + 64)
        let result = bytes.withUnsafeBytes { raw in
            RecordFrame.decode(raw, at: index, end: end, baseOffset: random.next() >> 8, ledgerID: id, segment: random.next())
        }
        if case .record(let header, let bodyStart) = result {
            #expect(bodyStart == index + 32 && bodyStart + Int(header.bodyBytes) <= bytes.count, "\(context)")
        }
    }

    @Test func randomGarbageNeverTraps() {
        let seed = Self.fuzzSeed
        print("CodecTests.randomGarbageNeverTraps seed=\(seed) iterations=\(Self.fuzzIterations)")
        var random = SeededRandom(seed: seed)
        for iteration in 0..<Self.fuzzIterations {
            let count = random.int(below: 4) == 0 ? random.int(below: 8) : random.int(below: 400)
            let bytes = random.bytes(count)
            Self.decodeEverything(bytes, random: &random, context: "seed \(seed) iteration \(iteration)")
        }
    }

    @Test func mutatedEncodingsNeverTrap() {
        let seed = Self.fuzzSeed &+ 1
        print("CodecTests.mutatedEncodingsNeverTrap seed=\(seed) iterations=\(Self.fuzzIterations)")
        var random = SeededRandom(seed: seed)
        let id = LedgerID(bytes: Array(0..<16))!
        var seeds: [[UInt8]] = Samples.small.map { $0.encode() }
        seeds.append(SegmentHeader(ledgerID: id, segmentNumber: 1, firstSequence: 1, segmentBytes: 4096, previousChain: 0).encode())
        seeds.append(SnapshotFile(ledgerID: id, coveredSequence: 3, chain: 7, items: Samples.small.prefix(4).map {
            SnapshotFile.Item(kind: $0.kind, body: $0.encode())
        }).encode())
        for iteration in 0..<Self.fuzzIterations {
            var bytes = seeds[random.int(below: seeds.count)]
            for _ in 0...random.int(below: 3) {
                switch random.int(below: 4) {
                case 0 where !bytes.isEmpty:
                    bytes[random.int(below: bytes.count)] ^= UInt8(1) << UInt8(random.int(below: 8))
                case 1 where !bytes.isEmpty:
                    bytes[random.int(below: bytes.count)] = UInt8(truncatingIfNeeded: random.next())
                case 2:
                    bytes = Array(bytes.prefix(random.int(below: bytes.count + 1)))
                default:
                    bytes += random.bytes(random.int(below: 9))
                }
            }
            Self.decodeEverything(bytes, random: &random, context: "seed \(seed) iteration \(iteration)")
        }
    }
}
