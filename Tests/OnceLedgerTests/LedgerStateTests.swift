import Foundation
import OnceLedgerFormat
import OnceLedgerLog
import OnceLedgerTestSupport
import Testing
@testable import OnceLedger

/// `LedgerState` (the hash table, the arenas, the in-place body reader) against a
/// plain reference model of `Spec/FORMAT.md` §9.1 written from the spec's table.
@Suite struct LedgerStateTests {
    /// §9.1 as a dictionary keyed by the key's bytes.
    struct Model {
        struct Entry: Equatable {
            var status: EntryInfo.Status = .absent
            var attempt: UInt32 = 0
            var generation: UInt32 = 0
            var fingerprint = IdempotencyKey.noFingerprint
            var time: UInt64 = 0
            var receipt: [UInt8] = []
        }
        var entries: [[UInt8]: Entry] = [:]

        mutating func apply(_ body: RecordBody) {
            guard let key = body.key.map({ Array($0.utf8) }) else { return }
            var entry = entries[key] ?? Entry()
            // Completion and resolve-done: done, attempt max(old, record's), fingerprint kept.
            func done(attempt: UInt32, receipt: [UInt8], time: UInt64) {
                entry.status = .done
                entry.attempt = max(entry.attempt, attempt)
                entry.receipt = receipt
                entry.time = time
            }
            switch body {
            case .intent(let b):
                entry = Entry(status: .pendingUnknown, attempt: b.attempt, generation: b.generation,
                              fingerprint: b.fingerprint, time: b.timeMilliseconds)
            case .completion(let b):
                done(attempt: b.attempt, receipt: b.receipt, time: b.timeMilliseconds)
            case .release(let b):
                entry = Entry(status: .absent, attempt: max(entry.attempt, b.attempt), generation: entry.generation,
                              time: b.timeMilliseconds)
            case .resolve(let b) where b.outcome == .done:
                done(attempt: b.attempt, receipt: b.receipt, time: b.timeMilliseconds)
            case .resolve(let b):
                entry = Entry(status: .absent, attempt: max(entry.attempt, b.attempt), generation: entry.generation,
                              time: b.timeMilliseconds)
            case .forget(let b):
                entry = Entry(status: .absent, attempt: entry.attempt, generation: entry.generation &+ 1,
                              time: b.timeMilliseconds)
            case .entryState(let b):
                let status: EntryInfo.Status = switch b.status {
                case .done: .done
                case .pending: .pendingUnknown
                case .absent: .absent
                }
                entry = Entry(status: status, attempt: b.attempt, generation: b.generation, fingerprint: b.fingerprint,
                              time: b.status == .done ? b.completedTimeMilliseconds : b.intentTimeMilliseconds,
                              receipt: b.status == .done ? b.receipt : [])
            default:
                return
            }
            if entry.status != .done { entry.receipt = [] }
            entries[key] = entry
        }
    }

    static func check(_ state: borrowing LedgerState, against model: Model) throws {
        #expect(state.count == model.entries.count)
        for (keyBytes, expected) in model.entries {
            let key = String(decoding: keyBytes, as: UTF8.self)
            guard let info = try state.info(key) else {
                Issue.record("key \(key) is missing")
                continue
            }
            #expect(info.status == expected.status, "\(key)")
            #expect(info.attempt == expected.attempt, "\(key)")
            #expect(info.generation == expected.generation, "\(key)")
            #expect(info.fingerprint == expected.fingerprint, "\(key)")
            #expect(info.timeMilliseconds == expected.time, "\(key)")
            #expect(info.receipt == expected.receipt, "\(key)")
        }
        let listed = try state.infos(status: nil).map { Array($0.key.utf8) }
        #expect(listed == model.entries.keys.sorted { $0.lexicographicallyPrecedes($1) })
    }

    static func randomBody(_ random: inout SeededRandom, keys: [String]) -> RecordBody {
        let key = keys[random.int(below: keys.count)]
        let time = random.next() >> 20
        let attempt = UInt32(random.int(below: 5))
        func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) } }
        let fingerprint = random.int(below: 3) == 0 ? IdempotencyKey.noFingerprint : bytes(32)
        let receipt = bytes([0, 1, 8, 100, 3000][random.int(below: 5)])
        switch random.int(below: 9) {
        case 0, 1:
            return .intent(.init(key: key, fingerprint: fingerprint, attempt: attempt,
                                 generation: UInt32(random.int(below: 3)), timeMilliseconds: time))
        case 2, 3:
            return .completion(.init(key: key, attempt: attempt, timeMilliseconds: time, receipt: receipt))
        case 4:
            return .release(.init(key: key, attempt: attempt, timeMilliseconds: time, reason: "r"))
        case 5:
            return .resolve(.init(key: key, outcome: random.int(below: 2) == 0 ? .done : .absent, attempt: attempt,
                                  timeMilliseconds: time, receipt: receipt, actor: "op", reason: "why"))
        case 6:
            return .forget(.init(key: key, timeMilliseconds: time, actor: "op", reason: "why"))
        case 7:
            return .entryState(.init(key: key, status: [.done, .pending, .absent][random.int(below: 3)], attempt: attempt,
                                     generation: UInt32(random.int(below: 3)), fingerprint: fingerprint,
                                     intentTimeMilliseconds: time, completedTimeMilliseconds: time + 1,
                                     receipt: receipt))
        default:
            return .memoPut(.init(run: "run", step: "s", name: "n", timeMilliseconds: time, value: bytes(4)))
        }
    }

    @Test func randomRecordsMatchTheReferenceModel() throws {
        var random = SeededRandom(seed: 0x5EED_57A7E)
        // ASCII keys (the in-place reader), non-ASCII ones (the general decoder), a key
        // of the maximum length, and keys sharing long prefixes.
        var keys = (0..<300).map { "order-\(String(repeating: "0", count: $0 % 40))\($0)" }
        keys += ["é", "e\u{301}", "ключ-1", "🔑", String(repeating: "k", count: FormatLimits.keyBytesMax)]
        var state = LedgerState()
        var model = Model()
        var records: [(RecordKind, [UInt8])] = []
        for step in 0..<20_000 {
            let body = Self.randomBody(&random, keys: keys)
            try body.validate()
            records.append((body.kind, body.encode()))
            try state.apply(kind: body.kind, body: body.encode())
            model.apply(body)
            if step % 5_000 == 0 { try Self.check(state, against: model) }
        }
        try Self.check(state, against: model)
        // Replay mode (each record held back one call, as an open does) ends in the same state.
        var replaying = LedgerState()
        for (kind, body) in records { try body.withUnsafeBytes { try replaying.replay(kind: kind, body: $0) } }
        replaying.finishReplay()
        try Self.check(replaying, against: model)
        // The snapshot of the state replays to the same state.
        var replayed = LedgerState()
        for item in try state.snapshotItems() { try replayed.apply(kind: item.kind, body: item.body) }
        try Self.check(replayed, against: model)
        #expect(try replayed.snapshotItems() == (try state.snapshotItems()))
        // Sized up front from the item count (as an open from a snapshot is), with too
        // small a hint, and with a hint arriving after some keys exist: the same state.
        let items = try state.snapshotItems()
        for (before, hint) in [(0, items.count), (0, items.count / 3), (items.count / 2, items.count + 5_000)] {
            var sized = LedgerState()
            for item in items[..<before] { try sized.apply(kind: item.kind, body: item.body) }
            sized.reserve(entries: hint)
            for item in items[before...] { try item.body.withUnsafeBytes { try sized.replay(kind: item.kind, body: $0) } }
            sized.finishReplay()
            try Self.check(sized, against: model)
            #expect(try sized.snapshotItems() == items)
        }
    }

    @Test func canonicallyEquivalentKeysWithDifferentBytesAreDifferentKeys() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-state-keys-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let composed = "caf\u{e9}", decomposed = "cafe\u{301}"
        #expect(composed == decomposed) // Swift's String equality says so…
        #expect(Array(composed.utf8) != Array(decomposed.utf8)) // …but the bytes differ.
        do {
            let ledger = try Ledger.open(directory: directory)
            _ = try await ledger.onceBytes(IdempotencyKey(composed)) { _ in [1] }
            let second = try await ledger.onceBytes(IdempotencyKey(decomposed)) { _ in [2] }
            guard case .performed = second else {
                Issue.record("the decomposed key was treated as the composed one")
                return
            }
            #expect(try await ledger.entryCount() == 2)
            try ledger.close()
        }
        let reopened = try Ledger.open(directory: directory)
        defer { try? reopened.close() }
        #expect(try await reopened.entryCount() == 2)
        #expect(try await reopened.entries().map { Array($0.key.utf8) } == [Array(decomposed.utf8), Array(composed.utf8)])
        let again = try await reopened.onceBytes(IdempotencyKey(decomposed)) { _ in [3] }
        guard case .alreadyDone(let receipt, _) = again else {
            Issue.record("expected the stored receipt")
            return
        }
        #expect(receipt == [2])
    }

    /// While one key's effect runs, a canonically equivalent key with other bytes is a
    /// different key: it runs its own effect rather than waiting for (or being refused
    /// as a re-entry of) the running one.
    @Test(.timeLimit(.minutes(5))) func equivalentKeysInFlightAreDifferentKeys() async throws {
        let ledger = Ledger.inMemory()
        let outer = try await ledger.onceBytes(IdempotencyKey("caf\u{e9}")) { _ in
            let inner = try await ledger.onceBytes(IdempotencyKey("cafe\u{301}")) { _ in [2] }
            guard case .performed(let receipt, _) = inner else { return [0] }
            return receipt
        }
        guard case .performed(let receipt, _) = outer else {
            Issue.record("the outer effect did not run")
            return
        }
        #expect(receipt == [2])
        #expect(try await ledger.entryCount() == 2)
    }

    /// The size hint comes from a file: a count too large to reserve (or to be real)
    /// must leave the state working, never trap. Whether the memory for the largest
    /// one is granted (virtually) depends on the machine; either way nothing changes.
    @Test func absurdSizeHintsAreHarmless() throws {
        for hint in [Int(UInt32.max) - 2, Int(UInt32.max), Int.max, -1, 0] {
            var state = LedgerState()
            try state.apply(kind: .intent, body: RecordBody.intent(.init(key: "before", attempt: 1, timeMilliseconds: 1)).encode())
            state.reserve(entries: hint)
            for index in 0..<2_000 {
                try state.apply(kind: .intent, body: RecordBody.intent(.init(key: "k\(index)", attempt: 1, timeMilliseconds: 1)).encode())
            }
            #expect(state.count == 2_001)
            #expect(try state.info("before")?.status == .pendingUnknown)
            #expect(try state.info("k1999")?.status == .pendingUnknown)
        }
    }

    @Test func manyKeysAndReplacedReceiptsStayFindable() throws {
        var state = LedgerState()
        let count = 50_000
        for index in 0..<count {
            let key = "k\(index)"
            try state.apply(kind: .intent, body: RecordBody.intent(.init(key: key, attempt: 1, timeMilliseconds: 1)).encode())
            try state.apply(kind: .completion, body: RecordBody.completion(
                .init(key: key, attempt: 1, timeMilliseconds: 2, receipt: Array("r\(index)".utf8))).encode())
        }
        // Replace every receipt with a larger one twice: the old blobs become garbage
        // and the arena is compacted along the way; nothing may point at stale bytes.
        for round in 0..<2 {
            for index in 0..<count {
                let receipt = Array(String(repeating: "x", count: 40 + round) .utf8) + Array("\(index)".utf8)
                try state.apply(kind: .resolve, body: RecordBody.resolve(
                    .init(key: "k\(index)", outcome: .done, attempt: 1, timeMilliseconds: 3, receipt: receipt,
                          actor: "a", reason: "r")).encode())
            }
        }
        #expect(state.count == count)
        for index in stride(from: 0, to: count, by: 7) {
            let found = try state.info("k\(index)")
            let info = try #require(found)
            #expect(info.status == .done)
            #expect(info.receipt == Array(String(repeating: "x", count: 41).utf8) + Array("\(index)".utf8))
        }
        let missing = try state.info("k\(count)")
        #expect(missing == nil)
    }

    @Test func malformedBodiesAreRefusedAndChangeNothing() throws {
        let good = RecordBody.intent(.init(key: "abc", attempt: 1, timeMilliseconds: 5)).encode()
        var cases: [(RecordKind, [UInt8])] = [
            (.intent, good + [0]), // a trailing byte
            (.intent, Array(good.dropLast())), // one byte short
            (.intent, [0, 0] + good.dropFirst(5)), // an empty key
            (.completion, [3, 0, 0x61, 0x62, 0x63, 1, 0, 0, 0] + [UInt8](repeating: 0, count: 8) + [9, 0, 0, 0, 1]),
            (.entryState, RecordBody.entryState(.init(
                key: "abc", status: .done, attempt: 1, generation: 0, fingerprint: IdempotencyKey.noFingerprint,
                intentTimeMilliseconds: 0, completedTimeMilliseconds: 0, receipt: [])).encode() + [0]),
            (.completion, [2, 0, 0xC3, 0x28] + [UInt8](repeating: 0, count: 16)), // invalid UTF-8 key
        ]
        var badScope = good
        badScope[2 + 3 + 32 + 8] = 7 // scope byte
        cases.append((.intent, badScope))
        var badReserved = good
        badReserved[2 + 3 + 32 + 8 + 1] = 1
        cases.append((.intent, badReserved))
        for (index, (kind, body)) in cases.enumerated() {
            var state = LedgerState()
            #expect(throws: LedgerError.self, "case \(index)") { try state.apply(kind: kind, body: body) }
            #expect(state.count == 0, "case \(index)")
        }
        var state = LedgerState()
        #expect(throws: LedgerError.self) { try state.apply(kind: RecordKind(rawValue: 999), body: []) }
    }

    /// The state reads bodies with the one decoder: a mutated body changes the state
    /// exactly when `RecordBody.decode` accepts it, and then as the model says.
    @Test func mutatedBodiesApplyExactlyWhenTheyDecode() throws {
        var random = SeededRandom(seed: 0xB0D7_0001)
        let keys = ["order-000000001", "k", "é", "ключ-1"]
        let iterations = ProcessInfo.processInfo.environment["ONCELEDGER_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 3000
        var state = LedgerState()
        var replayed = LedgerState()
        var model = Model()
        var accepted = 0
        for iteration in 0..<iterations {
            var body = Self.randomBody(&random, keys: keys)
            let kind = body.kind
            var bytes = body.encode()
            if random.int(below: 2) == 0 {
                switch random.int(below: 3) {
                case 0: bytes[random.int(below: bytes.count)] ^= UInt8(1) << UInt8(random.int(below: 8))
                case 1: bytes = Array(bytes.prefix(random.int(below: bytes.count)))
                default: bytes.append(UInt8(truncatingIfNeeded: random.next()))
                }
            }
            let decoded: RecordBody?
            if case .body(let value) = RecordBody.decode(kind: kind, bytes) { decoded = value } else { decoded = nil }
            do {
                try state.apply(kind: kind, body: bytes)
                try bytes.withUnsafeBytes { try replayed.replay(kind: kind, body: $0) }
                #expect(decoded != nil, "iteration \(iteration): applied a body the decoder refuses: \(bytes)")
            } catch {
                #expect(decoded == nil, "iteration \(iteration): refused a body the decoder accepts: \(bytes)")
                #expect((error as? LedgerError)?.code == .malformedBody, "iteration \(iteration)")
            }
            if let decoded {
                body = decoded
                model.apply(body)
                accepted += 1
            }
        }
        replayed.finishReplay()
        try Self.check(state, against: model)
        try Self.check(replayed, against: model)
        #expect(state.retained == replayed.retained)
        #expect(accepted > iterations / 3 && accepted < iterations, "both accepted and refused bodies occur")
    }
}
