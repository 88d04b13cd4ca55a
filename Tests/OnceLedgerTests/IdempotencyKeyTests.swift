// Proves idempotency keys are stable and canonical: derived keys and tokens equal values pinned
// forever (computed by an independent Python implementation of the encoding table in
// CanonicalEncoder.swift), the encoding ignores dictionary/set order, Unicode normalization form
// and the sign of zero, it distinguishes values that differ, an explicit key takes precedence,
// string literals (interpolated too) are explicit keys, and empty, oversized and non-UTF-8 keys
// are rejected with typed errors.
import Foundation
import OnceLedger
import OnceLedgerFormat
import Testing

private struct Order: Codable, Hashable {
    var id: Int
    var note: String?
    var tags: [String]
    var amount: Double
}

private enum Channel: Codable, Hashable {
    case email(address: String)
    case sms(number: String, retries: Int)
    case push(String)
    case silent
}

private struct Job: Codable {
    var channel: Channel
    var priority: Int8?
    var meta: [String: Double]
    var flags: Set<String>
    var order: Order?
}

private struct Point: Codable, Hashable {
    var x: Int
    var y: Int
}

private func canonical<T: Encodable>(_ value: T) throws -> [UInt8] {
    try CanonicalEncoding.encode(value)
}

private func derived<T: Encodable>(_ name: String, _ params: T) throws -> String {
    try IdempotencyKey(name: name, params: params).rawValue
}

private let pinnedOrder = Order(id: 42, note: "caf\u{E9}", tags: ["a", "b"], amount: 9.5)
private let pinnedOrderKey = "send-receipt#e0fc867195b75b9cf1803a285689efff3a2815b55962c6c0ecbd5cf2a838afc3"

@Suite struct IdempotencyKeyTests {
    // MARK: Pinned values

    /// The derived key of a fixed value is fixed forever: any change to the encoding, the
    /// hash or the domain prefix would silently re-run every effect keyed the old way.
    @Test func derivedKeyIsPinned() throws {
        #expect(try derived("send-receipt", pinnedOrder) == pinnedOrderKey)
        let job = Job(channel: .sms(number: "+15550100", retries: 2), priority: nil, meta: ["b": 2.5, "a": -0.0],
                      flags: ["y", "x"], order: Order(id: 7, note: nil, tags: [], amount: 0))
        #expect(try derived("notify", job) == "notify#64c8b0f863447f9ff1ac5aef95f94f06f142624b6db726df5c0cd4503ec5efcf")
    }

    /// Encoder settings cannot matter: the key is not computed from JSON. Different
    /// `JSONEncoder` settings give different bytes for the same value, yet the key is pinned.
    @Test func encoderSettingsAreIrrelevant() throws {
        let plain = JSONEncoder()
        let fancy = JSONEncoder()
        fancy.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        fancy.keyEncodingStrategy = .convertToSnakeCase
        #expect(try plain.encode(pinnedOrder) != fancy.encode(pinnedOrder))
        #expect(try derived("send-receipt", pinnedOrder) == pinnedOrderKey)
    }

    /// The bytes of a small value, written out from the table in CanonicalEncoder.swift:
    /// keyed container sorted by key bytes, nil optional omitted (Codable's encodeIfPresent),
    /// -0.0 written as +0.0.
    @Test func canonicalBytesFollowTheTable() throws {
        let bytes = try canonical(Order(id: 42, note: nil, tags: ["a"], amount: -0.0))
        #expect(Hex.string(bytes) ==
            "06030000000506000000616d6f756e7404000000000000000005020000006964022a000000000000000504000000746167730701000000050100000061")
        // Scalars.
        #expect(try canonical(Optional<Int>.none) == [0x00])
        #expect(try canonical(true) == [0x01, 0x01])
        #expect(try canonical(Int(-1)) == [0x02] + [UInt8](repeating: 0xff, count: 8))
        #expect(try canonical(UInt64.max) == [0x03] + [UInt8](repeating: 0xff, count: 8))
        #expect(try canonical(UInt8(5)) == canonical(Int64(5)), "an unsigned value that fits Int64 encodes like the signed one")
        #expect(try canonical(Set([1])) == [0x08, 1, 0, 0, 0, 0x02, 1, 0, 0, 0, 0, 0, 0, 0])
    }

    // MARK: Order independence

    @Test func dictionaryInsertionOrderDoesNotMatter() throws {
        let keys = (0..<40).map { "key-\($0)" }
        var forward: [String: Int] = [:]
        for (index, key) in keys.enumerated() { forward[key] = index }
        var orders: [[String]] = [Array(forward.keys)]
        var encodings: [[UInt8]] = [try canonical(forward)]
        for capacity in [64, 300, 2_000] {
            var other = [String: Int](minimumCapacity: capacity)
            for (index, key) in keys.enumerated().reversed() { other[key] = index }
            #expect(other == forward)
            orders.append(Array(other.keys))
            encodings.append(try canonical(other))
            #expect(try derived("d", other) == derived("d", forward))
        }
        #expect(Set(orders.map { $0.joined(separator: ",") }).count > 1,
                "the dictionaries must really iterate in different orders, or this test proves nothing")
        #expect(Set(encodings).count == 1)

        // Int keys (keyed container) and non-String/Int keys (unordered pairs).
        var intsA: [Int: String] = [:]
        var intsB = [Int: String](minimumCapacity: 1_000)
        var pointsA: [Point: Double] = [:]
        var pointsB = [Point: Double](minimumCapacity: 1_000)
        for n in 0..<30 {
            intsA[n] = "v\(n)"
            pointsA[Point(x: n, y: -n)] = Double(n)
        }
        for n in (0..<30).reversed() {
            intsB[n] = "v\(n)"
            pointsB[Point(x: n, y: -n)] = Double(n)
        }
        #expect(try canonical(intsA) == canonical(intsB))
        #expect(try canonical(pointsA) == canonical(pointsB))
        // A value change is still seen.
        pointsB[Point(x: 3, y: -3)] = 99
        #expect(try canonical(pointsA) != canonical(pointsB))
    }

    @Test func setOrderDoesNotMatter() throws {
        let words = (0..<50).map { "w\($0)" }
        let a = Set(words)
        var b = Set<String>(minimumCapacity: 1_000)
        for word in words.reversed() { b.insert(word) }
        #expect(Array(a) != Array(b), "the sets must iterate in different orders, or this test proves nothing")
        #expect(try canonical(a) == canonical(b))
        var ints = Set<Int>(minimumCapacity: 500)
        for n in (0..<50).reversed() { ints.insert(n * 7919) }
        #expect(try canonical(ints) == canonical(Set((0..<50).map { $0 * 7919 })))
        // A set is not an array: same elements, different kind.
        #expect(try canonical(Set(["x"])) != canonical(["x"]))
    }

    /// Arrays are ordered: swapping elements is a different value.
    @Test func arrayOrderMatters() throws {
        #expect(try derived("a", ["x", "y"]) != derived("a", ["y", "x"]))
    }

    // MARK: Normalization

    @Test func nfcAndNfdStringsGiveTheSameKey() throws {
        let composed = "caf\u{E9}"
        let decomposed = "cafe\u{301}"
        #expect(Array(composed.utf8) != Array(decomposed.utf8))
        #expect(try derived("s", composed) == derived("s", decomposed))
        var order = pinnedOrder
        order.note = decomposed
        #expect(try derived("send-receipt", order) == pinnedOrderKey)
    }

    /// Dictionary keys are strings too: "é" composed sorts after "f" (C3 > 66), decomposed
    /// before it (65 < 66). The canonical order must be that of the normalized bytes.
    @Test func nfcAndNfdDictionaryKeysGiveTheSameKey() throws {
        let composed: [String: Int] = ["\u{E9}": 1, "f": 2, "e": 3]
        let decomposed: [String: Int] = ["e\u{301}": 1, "f": 2, "e": 3]
        #expect(try canonical(composed) == canonical(decomposed))
        #expect(try derived("dict", composed) == "dict#ae0abd5748db0cf17d01f5e058590e7979448c418192247ea93b9e50824694f3")
        #expect(try derived("dict", decomposed) == "dict#ae0abd5748db0cf17d01f5e058590e7979448c418192247ea93b9e50824694f3")
    }

    @Test func negativeZeroAndNaNAreCanonical() throws {
        #expect(try canonical(-0.0) == canonical(0.0))
        #expect(try canonical(Float(-0.0)) == canonical(Double(0)))
        #expect(try canonical(Double.nan) == canonical(-Double.nan))
        #expect(try canonical(Double.nan) == canonical(Double(nan: 0x1234, signaling: false)))
        #expect(try canonical(1.0) != canonical(-1.0))
        var order = pinnedOrder
        order.amount = -0.0
        var other = pinnedOrder
        other.amount = 0.0
        #expect(try derived("o", order) == derived("o", other))
    }

    // MARK: Nested values are seen in full

    @Test func nestedStructsEnumsAndOptionalsAreDistinguished() throws {
        let base = Job(channel: .email(address: "a@example.com"), priority: nil, meta: ["k": 1],
                       flags: ["f"], order: pinnedOrder)
        var variants: [Job] = [base]
        var changed = base
        changed.channel = .email(address: "b@example.com"); variants.append(changed)
        changed = base; changed.channel = .sms(number: "a@example.com", retries: 0); variants.append(changed)
        changed = base; changed.channel = .push("a@example.com"); variants.append(changed)
        changed = base; changed.channel = .silent; variants.append(changed)
        changed = base; changed.priority = 0; variants.append(changed)
        changed = base; changed.meta = ["k": 2]; variants.append(changed)
        changed = base; changed.meta = [:]; variants.append(changed)
        changed = base; changed.flags = []; variants.append(changed)
        changed = base; changed.order = nil; variants.append(changed)
        changed = base; changed.order?.note = nil; variants.append(changed)
        changed = base; changed.order?.tags = ["a"]; variants.append(changed)
        changed = base; changed.order?.id = 43; variants.append(changed)
        let keys = try variants.map { try derived("job", $0) }
        #expect(Set(keys).count == variants.count, "every nested change must change the key")
        // And the same nested value, rebuilt, gives the same key.
        let rebuilt = Job(channel: .email(address: "a@example.com"), priority: nil, meta: ["k": 1],
                          flags: ["f"], order: Order(id: 42, note: "cafe\u{301}", tags: ["a", "b"], amount: 9.5))
        #expect(try derived("job", rebuilt) == keys[0])
        // The name is part of the key and of the fingerprint.
        #expect(try derived("job-2", base) != keys[0])
        #expect(try IdempotencyKey.fingerprint(name: "x", params: 1) != IdempotencyKey.fingerprint(name: "y", params: 1))
    }

    // MARK: Explicit, derived and their format

    @Test func explicitKeyTakesPrecedence() throws {
        let explicit = try IdempotencyKey(explicit: "order-42-receipt", name: "send-receipt", params: pinnedOrder)
        #expect(explicit.rawValue == "order-42-receipt")
        #expect(Hex.string(explicit.fingerprint) == "e0fc867195b75b9cf1803a285689efff3a2815b55962c6c0ecbd5cf2a838afc3",
                "the params fingerprint is still stored with an explicit key")
        let fallback = try IdempotencyKey(explicit: nil, name: "send-receipt", params: pinnedOrder)
        #expect(fallback.rawValue == pinnedOrderKey)
        #expect(fallback.fingerprint == explicit.fingerprint)

        let unnamed = try IdempotencyKey("order-42-receipt", params: pinnedOrder)
        #expect(unnamed.rawValue == "order-42-receipt")
        #expect(Hex.string(unnamed.fingerprint) == "15aedf721dec815d3e22d2521af5e348e6cb66a2fe88428015769acfbb645305")

        // The explicit key with a name: the arguments in the order of init(explicit:name:params:).
        let named = try IdempotencyKey("order-42-receipt", name: "send-receipt", params: pinnedOrder)
        #expect(named == explicit)

        let literal: IdempotencyKey = "order-42-receipt"
        #expect(literal.rawValue == "order-42-receipt")
        #expect(literal.fingerprint == IdempotencyKey.noFingerprint)
        // An interpolated string is a key too (`ledger.once("charge-\(order.id)") { … }`).
        let id = 42
        let interpolated: IdempotencyKey = "order-\(id)-receipt"
        #expect(interpolated == literal)
        #expect(IdempotencyKey.noFingerprint == [UInt8](repeating: 0, count: 32))
    }

    /// `IdempotencyKey` values compare and hash by their text (Swift `String`
    /// equality) and fingerprint; the byte-for-byte identity the ledger uses for its
    /// tables (a separate, cached copy of the bytes) does not leak into them.
    @Test func keyValuesCompareByTextAndFingerprint() throws {
        let composed = IdempotencyKey("caf\u{e9}")
        let decomposed = IdempotencyKey("cafe\u{301}")
        #expect(composed == decomposed)
        #expect(Set([composed, decomposed]).count == 1)
        #expect(composed != IdempotencyKey("cafe"))
        #expect(try IdempotencyKey("caf\u{e9}", params: ["a": 1]) != composed, "a fingerprint makes another key")
    }

    @Test func derivedKeyFormatIsNameHashSixtyFourHex() throws {
        let key = try IdempotencyKey(name: "send-receipt", params: ["to": "a@example.com"])
        let parts = key.rawValue.split(separator: "#", omittingEmptySubsequences: false)
        #expect(parts.count == 2)
        #expect(parts[0] == "send-receipt")
        #expect(parts[1].count == 64)
        #expect(parts[1].allSatisfy { "0123456789abcdef".contains($0) })
        #expect(String(parts[1]) == Hex.string(key.fingerprint))
        #expect(key.fingerprint.count == 32)
        #expect(key.description == key.rawValue)
        try key.validate()
    }

    // MARK: Tokens

    @Test func tokenIsStableAndPinned() {
        // v1 (ledgers created before format version 2): key and generation only.
        let v1 = TokenScope.unscoped
        #expect(EffectToken.derive(key: "order-42", generation: 0, scope: v1) == "olt_f38e6c9aaf40bf5a324f88397515abae")
        #expect(EffectToken.derive(key: "order-42", generation: 1, scope: v1) == "olt_3ec4023abb51903de65b398ca79f166c")
        #expect(EffectToken.derive(key: "\u{43A}\u{43B}\u{44E}\u{447}-1", generation: 7, scope: v1) == "olt_febe92ab5425fb261b16d49ebc43e5ed")
        #expect(EffectToken.derive(key: "order-43", generation: 0, scope: v1) != EffectToken.derive(key: "order-42", generation: 0, scope: v1))
        let entry = EntryInfo(key: "order-42", status: .pendingUnknown, attempt: 3, generation: 1,
                              fingerprint: IdempotencyKey.noFingerprint, timeMilliseconds: 5, receipt: [], tokenScope: v1)
        #expect(entry.token == "olt_3ec4023abb51903de65b398ca79f166c", "the token depends on key and generation, not attempt")
        // v2: the ledger id (here 00 01 … 0f) goes in too (values computed independently
        // with Python's hashlib).
        let v2 = TokenScope.ledger(LedgerID(bytes: Array(0..<16))!)
        #expect(EffectToken.derive(key: "order-42", generation: 0, scope: v2) == "olt_3805667c9505d8a759ad6881448175fc")
        #expect(EffectToken.derive(key: "order-42", generation: 1, scope: v2) == "olt_9bf86413907f815880e1202459a3a229")
        #expect(EffectToken.derive(key: "\u{43A}\u{43B}\u{44E}\u{447}-1", generation: 7, scope: v2) == "olt_51a8f745db2f3fc758e026de0e131119")
        let other = TokenScope.ledger(LedgerID(bytes: Array(1...16))!)
        #expect(EffectToken.derive(key: "order-42", generation: 0, scope: other) != EffectToken.derive(key: "order-42", generation: 0, scope: v2),
                "two ledgers give one key different tokens")
    }

    // MARK: Validation

    @Test func emptyKeyIsRejected() {
        #expect { try IdempotencyKey("").validate() } throws: { ($0 as? LedgerError)?.code == .invalidArgument }
    }

    @Test func keyOverTheLimitIsRejected() throws {
        try IdempotencyKey(String(repeating: "k", count: FormatLimits.keyBytesMax)).validate()
        let tooLong = IdempotencyKey(String(repeating: "k", count: FormatLimits.keyBytesMax + 1))
        #expect { try tooLong.validate() } throws: { error in
            let error = error as? LedgerError
            return error?.code == .limitExceeded && error?.limit == "keyBytesMax"
        }
        // The limit counts UTF-8 bytes, not characters: 513 × "é" is 1026 bytes.
        let multibyte = IdempotencyKey(String(repeating: "\u{E9}", count: FormatLimits.keyBytesMax / 2 + 1))
        #expect(multibyte.rawValue.count <= FormatLimits.keyBytesMax)
        #expect { try multibyte.validate() } throws: { ($0 as? LedgerError)?.code == .limitExceeded }
        // A derived key whose name makes it too long is caught the same way.
        let derivedLong = try IdempotencyKey(name: String(repeating: "n", count: FormatLimits.keyBytesMax), params: 1)
        #expect { try derivedLong.validate() } throws: { ($0 as? LedgerError)?.code == .limitExceeded }
    }

    @Test(arguments: [
        [0x6f, 0xff] as [UInt8],         // 0xFF never appears in UTF-8
        [0xc0, 0xaf],                    // overlong "/"
        [0xed, 0xa0, 0x80],              // a UTF-16 surrogate
        [0x61, 0xe2, 0x82],              // truncated sequence
        [0x80],                          // lone continuation byte
    ])
    func nonUTF8KeyBytesAreRejected(bytes: [UInt8]) {
        #expect { _ = try IdempotencyKey(bytes: bytes) } throws: { ($0 as? LedgerError)?.code == .invalidArgument }
    }

    @Test func utf8KeyBytesAreAccepted() throws {
        let key = try IdempotencyKey(bytes: Array("order-42-\u{E9}".utf8))
        #expect(key.rawValue == "order-42-\u{E9}")
        #expect(key.fingerprint == IdempotencyKey.noFingerprint)
    }
}
