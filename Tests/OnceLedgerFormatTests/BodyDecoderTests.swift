// Proves the one body decoder, `RecordBody.decodeFields` (in place; `decode` copies its fields
// out), accepts and refuses exactly the bodies of `Spec/FORMAT.md` §5: differentially against a
// reference decoder written here field by field over a copying reader (the grammar of §5 read a
// second, independent way), on seeded random and mutated bodies of every kind, with the same
// result and message for every input; and on UTF-8 edge cases around the decoder's ASCII fast
// path. The seed is printed; ONCELEDGER_FUZZ_SEED and ONCELEDGER_FUZZ_ITERATIONS override it.
import Foundation
import OnceLedgerFormat
import OnceLedgerTestSupport
import Testing

@Suite struct BodyDecoderTests {
    /// §5 read with `ByteReader` (copying, one field at a time), as a second opinion.
    static func reference(kind: RecordKind, _ bytes: [UInt8]) -> RecordBody.DecodeResult {
        var r = ByteReader(bytes)
        func str(_ max: Int) -> String? {
            guard let raw = r.readBytes16(max: max) else { return nil }
            return String(validating: raw, as: UTF8.self)
        }
        func u8() -> UInt8? { r.readInteger(as: UInt8.self) }
        func u32() -> UInt32? { r.readInteger(as: UInt32.self) }
        func u64() -> UInt64? { r.readInteger(as: UInt64.self) }
        func finish(_ body: RecordBody?) -> RecordBody.DecodeResult {
            guard let body else { return .corrupt("\(kind) body is malformed or exceeds a limit") }
            guard r.readableBytes == 0 else { return .corrupt("\(kind) body has \(r.readableBytes) trailing bytes") }
            return .body(body)
        }
        let key = FormatLimits.keyBytesMax, reason = FormatLimits.reasonBytesMax, name = FormatLimits.nameBytesMax
        let receiptMax = FormatLimits.receiptBytesMax, valueMax = FormatLimits.valueBytesMax
        switch kind {
        case .intent:
            guard let k = str(key), !k.isEmpty, let f = r.readBytes(32), let a = u32(), let g = u32(),
                  let s = u8().flatMap(RecordBody.Scope.init(rawValue:)), r.readBytes(3) == [0, 0, 0],
                  let w = u64(), let t = u64()
            else { return finish(nil) }
            return finish(.intent(.init(key: k, fingerprint: f, attempt: a, generation: g, scope: s,
                                        windowMilliseconds: w, timeMilliseconds: t)))
        case .completion:
            guard let k = str(key), !k.isEmpty, let a = u32(), let t = u64(), let c = r.readBytes32(max: receiptMax)
            else { return finish(nil) }
            return finish(.completion(.init(key: k, attempt: a, timeMilliseconds: t, receipt: c)))
        case .release:
            guard let k = str(key), !k.isEmpty, let a = u32(), let t = u64(), let why = str(reason)
            else { return finish(nil) }
            return finish(.release(.init(key: k, attempt: a, timeMilliseconds: t, reason: why)))
        case .resolve:
            guard let k = str(key), !k.isEmpty, let o = u8().flatMap(RecordBody.Outcome.init(rawValue:)), let a = u32(),
                  let t = u64(), let c = r.readBytes32(max: receiptMax), let who = str(reason), let why = str(reason)
            else { return finish(nil) }
            return finish(.resolve(.init(key: k, outcome: o, attempt: a, timeMilliseconds: t, receipt: c, actor: who,
                                         reason: why)))
        case .forget:
            guard let k = str(key), !k.isEmpty, let t = u64(), let who = str(reason), let why = str(reason)
            else { return finish(nil) }
            return finish(.forget(.init(key: k, timeMilliseconds: t, actor: who, reason: why)))
        case .memoPut:
            guard let run = str(name), !run.isEmpty, let step = str(name), let n = str(name), let t = u64(),
                  let v = r.readBytes32(max: valueMax)
            else { return finish(nil) }
            return finish(.memoPut(.init(run: run, step: step, name: n, timeMilliseconds: t, value: v)))
        case .journalEntry:
            guard let run = str(name), !run.isEmpty, let p = u64(), let step = str(name), let t = u64(),
                  let v = r.readBytes32(max: valueMax)
            else { return finish(nil) }
            return finish(.journalEntry(.init(run: run, position: p, step: step, timeMilliseconds: t, value: v)))
        case .runTerminal:
            guard let run = str(name), !run.isEmpty, let s = u8().flatMap(RecordBody.RunStatus.init(rawValue:)),
                  let t = u64()
            else { return finish(nil) }
            return finish(.runTerminal(.init(run: run, status: s, timeMilliseconds: t)))
        case .snapshotMarker:
            guard let c = u64(), let t = u64(), let n = u64() else { return finish(nil) }
            return finish(.snapshotMarker(.init(coveredSequence: c, timeMilliseconds: t, snapshotBytes: n)))
        case .checkpoint:
            guard let t = u64() else { return finish(nil) }
            return finish(.checkpoint(timeMilliseconds: t))
        case .entryState:
            guard let k = str(key), !k.isEmpty, let s = u8().flatMap(RecordBody.EntryStatus.init(rawValue:)),
                  let a = u32(), let g = u32(), let f = r.readBytes(32), let it = u64(), let ct = u64(),
                  let c = r.readBytes32(max: receiptMax)
            else { return finish(nil) }
            return finish(.entryState(.init(key: k, status: s, attempt: a, generation: g, fingerprint: f,
                                            intentTimeMilliseconds: it, completedTimeMilliseconds: ct, receipt: c)))
        case .seal:
            guard let n = u64(), let t = u64() else { return finish(nil) }
            return finish(.seal(.init(successor: n, timeMilliseconds: t)))
        case .memoEntry:
            guard let ns = str(FormatLimits.namespaceBytesMax), let run = str(FormatLimits.runBytesMax), !run.isEmpty,
                  let g = u64(), let step = str(FormatLimits.stepBytesMax), let n = str(FormatLimits.memoNameBytesMax),
                  let d = r.readBytes(32), let t = u64(), let v = r.readBytes32(max: valueMax)
            else { return finish(nil) }
            return finish(.memoEntry(.init(namespace: ns, run: run, generation: g, step: step, name: n, inputDigest: d,
                                           timeMilliseconds: t, value: v)))
        case .runEnd:
            guard let ns = str(FormatLimits.namespaceBytesMax), let run = str(FormatLimits.runBytesMax), !run.isEmpty,
                  let g = u64(), let s = u8().flatMap(RecordBody.RunStatus.init(rawValue:)), let t = u64()
            else { return finish(nil) }
            return finish(.runEnd(.init(namespace: ns, run: run, generation: g, status: s, timeMilliseconds: t)))
        case .memoSweep:
            guard let ns = str(FormatLimits.namespaceBytesMax), let run = str(FormatLimits.runBytesMax), !run.isEmpty,
                  let g = u64(), let t = u64()
            else { return finish(nil) }
            return finish(.memoSweep(.init(namespace: ns, run: run, generation: g, timeMilliseconds: t)))
        case .generationFloor:
            guard let floor = u32() else { return finish(nil) }
            return finish(.generationFloor(floor: floor))
        case .entryRetention:
            guard let k = str(key), !k.isEmpty, let s = u8().flatMap(RecordBody.Scope.init(rawValue:)),
                  r.readBytes(3) == [0, 0, 0], let w = u64()
            else { return finish(nil) }
            return finish(.entryRetention(.init(key: k, scope: s, windowMilliseconds: w)))
        case .opaque:
            return .body(.opaque(bytes))
        default:
            return .unknownKind(kind)
        }
    }

    /// Both decoders on `bytes` as `kind`: the same result (body or message), and the
    /// in-place fields' ranges inside the body.
    static func expectAgreement(kind: RecordKind, _ bytes: [UInt8], _ context: @autoclosure () -> String,
                                sourceLocation: SourceLocation = #_sourceLocation) {
        let expected = reference(kind: kind, bytes)
        let actual = RecordBody.decode(kind: kind, bytes)
        #expect(actual == expected, "\(kind) \(context())", sourceLocation: sourceLocation)
        let fields = bytes.withUnsafeBytes { RecordBody.decodeFields(kind: kind, $0) }
        switch (fields, expected) {
        case (.fields(let fields), .body):
            if let key = fields.key {
                #expect(key.lowerBound >= 2 && key.upperBound <= bytes.count, "\(kind) \(context())",
                        sourceLocation: sourceLocation)
            }
        case (.corrupt(let message), .corrupt(let expected)):
            #expect(message == expected, sourceLocation: sourceLocation)
        case (.unknownKind, .unknownKind):
            break
        default:
            Issue.record("decodeFields disagrees on \(kind) \(context())", sourceLocation: sourceLocation)
        }
    }

    static var seed: UInt64 {
        ProcessInfo.processInfo.environment["ONCELEDGER_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x0_b0d7_5eed
    }
    static var iterations: Int {
        ProcessInfo.processInfo.environment["ONCELEDGER_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 3000
    }

    /// Valid bodies of every kind, ASCII and not, to mutate.
    static let samples: [RecordBody] = [
        .intent(.init(key: "order-0000000000001", fingerprint: Array(0..<32), attempt: 1, generation: 2, scope: .window,
                      windowMilliseconds: 9, timeMilliseconds: 5)),
        .intent(.init(key: "clé-✓", attempt: 3, timeMilliseconds: 0)),
        .completion(.init(key: "order-7", attempt: 1, timeMilliseconds: 5, receipt: [1, 2, 3])),
        .completion(.init(key: "ключ-ключ-ключ", attempt: 2, timeMilliseconds: 5, receipt: [])),
        .release(.init(key: "k", attempt: 1, timeMilliseconds: 2, reason: "threw")),
        .resolve(.init(key: "k", outcome: .done, attempt: 1, timeMilliseconds: 2, receipt: [9], actor: "ops", reason: "é")),
        .forget(.init(key: "k", timeMilliseconds: 2, actor: "ops", reason: "resend")),
        .memoPut(.init(run: "run", step: "s", name: "n", timeMilliseconds: 1, value: [1])),
        .journalEntry(.init(run: "run", position: 3, step: "uuid", timeMilliseconds: 1, value: [])),
        .runTerminal(.init(run: "run", status: .cancelled, timeMilliseconds: 1)),
        .memoEntry(.init(namespace: "", run: "run", generation: 7, step: "summarize", name: "llm",
                         inputDigest: Array(0..<32), timeMilliseconds: 1, value: [1, 2])),
        .memoEntry(.init(namespace: "espace-é", run: "exécution", generation: .max, step: "", name: "",
                         timeMilliseconds: 1, value: [])),
        .runEnd(.init(namespace: "ns", run: "run", generation: 3, status: .failed, timeMilliseconds: 9)),
        .memoSweep(.init(namespace: "", run: "run", generation: 3, timeMilliseconds: 10)),
        .snapshotMarker(.init(coveredSequence: 4, timeMilliseconds: 1, snapshotBytes: 4096)),
        .checkpoint(timeMilliseconds: 7),
        .entryState(.init(key: "entry-with-a-longer-key", status: .done, attempt: 1, generation: 1,
                          fingerprint: Array(repeating: 7, count: 32), intentTimeMilliseconds: 1,
                          completedTimeMilliseconds: 2, receipt: [4, 5])),
        .seal(.init(successor: 3, timeMilliseconds: 1)),
        .generationFloor(floor: 7),
        .entryRetention(.init(key: "daily-digest", scope: .window, windowMilliseconds: 86_400_000)),
        .entryRetention(.init(key: "clé", scope: .whileInFlight, windowMilliseconds: 0)),
        .opaque([1, 2, 3]),
    ]

    @Test func decodeFieldsAgreesWithTheReferenceOnRandomAndMutatedBodies() {
        let seed = Self.seed
        print("BodyDecoderTests seed=\(seed) iterations=\(Self.iterations)")
        var random = SeededRandom(seed: seed)
        let kinds = RecordKind.known + [RecordKind(rawValue: 18)]
        for iteration in 0..<Self.iterations {
            var bytes: [UInt8]
            let kind: RecordKind
            if random.int(below: 4) == 0 {
                kind = kinds[random.int(below: kinds.count)]
                bytes = random.bytes(random.int(below: 80))
            } else {
                let sample = Self.samples[random.int(below: Self.samples.count)]
                // Usually the sample's own kind; sometimes another, to read a body as the wrong kind.
                kind = random.int(below: 8) == 0 ? kinds[random.int(below: kinds.count)] : sample.kind
                bytes = sample.encode()
                for _ in 0..<random.int(below: 4) {
                    switch random.int(below: 5) {
                    case 0 where !bytes.isEmpty:
                        bytes[random.int(below: bytes.count)] ^= UInt8(1) << UInt8(random.int(below: 8))
                    case 1 where !bytes.isEmpty:
                        bytes[random.int(below: bytes.count)] = [0, 0x7f, 0x80, 0xc0, 0xed, 0xf4, 0xff][random.int(below: 7)]
                    case 2:
                        bytes = Array(bytes.prefix(random.int(below: bytes.count + 1)))
                    case 3 where bytes.count >= 2:
                        // A length field grown or shrunk by a little.
                        let at = random.int(below: bytes.count - 1)
                        bytes[at] = bytes[at] &+ UInt8(random.int(below: 5)) &- 2
                    default:
                        bytes += random.bytes(random.int(below: 5))
                    }
                }
            }
            Self.expectAgreement(kind: kind, bytes, "seed \(seed) iteration \(iteration) bytes \(bytes)")
        }
    }

    /// Keys around the decoder's ASCII fast path (8 bytes at a time, then byte by byte,
    /// then the standard library's validation from the first non-ASCII byte).
    @Test func utf8EdgesAgreeWithTheReference() {
        let invalid: [[UInt8]] = [
            [0xff], [0xc3], [0xc3, 0x28], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80],
            [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80],
        ]
        let valid: [[UInt8]] = [Array("é".utf8), Array("✓".utf8), Array("🔑".utf8), [0x7f], [0]]
        for prefix in [0, 1, 7, 8, 9, 15, 16, 17] {
            let ascii = [UInt8](repeating: UInt8(ascii: "a"), count: prefix)
            for middle in invalid + valid {
                for suffix in [[], [UInt8(ascii: "z")], [UInt8](repeating: UInt8(ascii: "z"), count: 9)] {
                    let key = ascii + middle + suffix
                    var bytes = [UInt8(truncatingIfNeeded: key.count), UInt8(truncatingIfNeeded: key.count >> 8)] + key
                    bytes += [1, 0, 0, 0] + [UInt8](repeating: 0, count: 8) + [0, 0, 0, 0]  // attempt, time, receipt
                    Self.expectAgreement(kind: .completion, bytes, "key \(key)")
                    let isValid = String(validating: key, as: UTF8.self) != nil
                    guard case .body = RecordBody.decode(kind: .completion, bytes) else {
                        #expect(!isValid, "valid key \(key) refused")
                        continue
                    }
                    #expect(isValid, "invalid key \(key) accepted")
                }
            }
        }
    }

    @Test func fieldRangesPointAtTheFields() throws {
        let body = RecordBody.resolve(.init(key: "kéy", outcome: .done, attempt: 4, timeMilliseconds: 9,
                                            receipt: [1, 2], actor: "ops", reason: "checked")).encode()
        let fields = body.withUnsafeBytes { RecordBody.decodeFields(kind: .resolve, $0) }
        guard case .fields(.resolve(let key, let outcome, let attempt, let time, let receipt, let actor, let reason)) = fields
        else {
            Issue.record("resolve did not decode: \(fields)")
            return
        }
        #expect(Array(body[key]) == Array("kéy".utf8))
        #expect(outcome == .done && attempt == 4 && time == 9)
        #expect(Array(body[receipt]) == [1, 2])
        #expect(Array(body[actor]) == Array("ops".utf8))
        #expect(Array(body[reason]) == Array("checked".utf8))
        #expect(body.withUnsafeBytes { RecordBody.decodeFields(kind: .resolve, $0) } == fields)
    }
}
