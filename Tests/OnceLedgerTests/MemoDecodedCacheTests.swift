// Proves the memo's decoded-value cache (`MemoDecodedCache`) on both stores: a second `get` of
// the same stored bytes as the same `Sendable` type is answered without decoding again (a type
// that counts its decodes shows it), while every rule still holds — a replaced value is decoded
// anew, a changed input is still a mismatch, a swept value is gone, `remember` answers cached
// values the same way, and a type that is not `Sendable` decodes every time. The cache's bound
// drops older values past its byte and count limits.
import Foundation
@testable import OnceLedger
import OnceLedgerFormat
import Synchronization
import Testing
import OnceLedgerStoreContract

/// Decodes of `Counted` values, by their `tag` (each test uses its own tag, so parallel tests
/// do not count each other's decodes).
private let decodes = Mutex<[String: Int]>([:])

private struct Counted: Codable, Equatable, Sendable {
    var tag: String
    var text: String

    init(tag: String, text: String) {
        self.tag = tag
        self.text = text
    }

    enum CodingKeys: CodingKey { case tag, text }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        tag = try container.decode(String.self, forKey: .tag)
        text = try container.decode(String.self, forKey: .text)
        let tag = tag
        decodes.withLock { $0[tag, default: 0] += 1 }
    }

    static func decodeCount(_ tag: String) -> Int { decodes.withLock { $0[tag] ?? 0 } }
}

/// Not `Sendable` (a class with a mutable field): never shared through the cache.
private final class Shared: Codable {
    var tag: String
    init(tag: String) { self.tag = tag }
    enum CodingKeys: CodingKey { case tag }
    required init(from decoder: any Decoder) throws {
        tag = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .tag)
        let tag = tag
        decodes.withLock { $0[tag, default: 0] += 1 }
    }
}

private struct Prompt: Encodable { var text: String }

@Suite struct MemoDecodedCacheTests {
    @Test(arguments: BackendKind.allCases)
    func aSecondGetOfTheSameBytesDoesNotDecodeAgain(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { withExtendedLifetime(harness) { try? ledger.close() } }
        let tag = "same-\(kind)"
        let memo = try await ledger.memo(run: "r", step: "s")
        try await memo.put("v", Counted(tag: tag, text: "one"))
        #expect(try await memo.get("v", as: Counted.self) == Counted(tag: tag, text: "one"))
        #expect(try await memo.get("v", as: Counted.self) == Counted(tag: tag, text: "one"))
        let other = try await ledger.memo(run: "r", step: "s")
        #expect(try await other.get("v", as: Counted.self)?.text == "one", "memos of one ledger share the cache")
        #expect(Counted.decodeCount(tag) == 1)

        // Replaced: the new bytes are decoded.
        try await memo.put("v", Counted(tag: tag, text: "two"))
        #expect(try await memo.get("v", as: Counted.self)?.text == "two")
        #expect(try await memo.get("v", as: Counted.self)?.text == "two")
        #expect(Counted.decodeCount(tag) == 2)
    }

    @Test(arguments: BackendKind.allCases)
    func theRulesStillHoldForACachedValue(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        defer { withExtendedLifetime(harness) { try? ledger.close() } }
        let tag = "rules-\(kind)"
        let memo = try await ledger.memo(run: "r", step: "s")
        try await memo.put("v", Counted(tag: tag, text: "answer"), input: Prompt(text: "p1"))
        #expect(try await memo.get("v", as: Counted.self, input: Prompt(text: "p1"))?.text == "answer")
        let mismatch = await ledgerError { try await memo.get("v", as: Counted.self, input: Prompt(text: "p2")) }
        #expect(mismatch?.code == .memoInputMismatch)
        let computed = Counter()
        let remembered = try await memo.remember("v", as: Counted.self, input: Prompt(text: "p1")) {
            computed.increment()
            return Counted(tag: tag, text: "recomputed")
        }
        #expect(remembered == .cached(Counted(tag: tag, text: "answer")))
        #expect(computed.count == 0)
        #expect(Counted.decodeCount(tag) == 1, "remember answered from the decoded value")

        try await ledger.finishRun("r", status: .succeeded)
        harness.clock.advance(3_600_000)
        _ = try await ledger.sweepMemo(retention: MemoRetention(.seconds(60)))
        #expect(try await memo.get("v", as: Counted.self, input: Prompt(text: "p1")) == nil, "a swept value is gone")
    }

    @Test func aTypeThatIsNotSendableDecodesEveryTime() async throws {
        let harness = Harness(.memory)
        let ledger = try harness.open()
        defer { withExtendedLifetime(harness) { try? ledger.close() } }
        let memo = try await ledger.memo(run: "r", step: "s")
        try await memo.put("v", bytes: Array(#"{"tag":"shared-class"}"#.utf8))
        #expect(try await memo.get("v", as: Shared.self)?.tag == "shared-class")
        #expect(try await memo.get("v", as: Shared.self)?.tag == "shared-class")
        #expect(Counted.decodeCount("shared-class") == 2)
    }

    @Test func theCacheStaysWithinItsBounds() {
        let run = MemoRun(namespace: "", run: "r")
        func key(_ name: String) -> MemoDecodedCache.Key {
            MemoDecodedCache.Key(key: MemoKey(run: run, generation: 1, step: "s", name: name), type: ObjectIdentifier(Int.self))
        }
        let bytes = [UInt8](repeating: 7, count: 100)
        let byBytes = MemoDecodedCache(bytesMax: 250, countMax: 100)
        for index in 0..<5 { byBytes.remember(key("n\(index)"), bytes: bytes, value: index) }
        #expect(byBytes.usage.count == 2 && byBytes.usage.bytes == 200)
        #expect(byBytes.value(key("n4"), bytes: bytes, as: Int.self) == 4, "the newest value stays")
        #expect(byBytes.value(key("n4"), bytes: [1], as: Int.self) == nil, "other bytes are not a hit")

        let byCount = MemoDecodedCache(bytesMax: 1 << 20, countMax: 3)
        for index in 0..<10 { byCount.remember(key("n\(index)"), bytes: bytes, value: index) }
        #expect(byCount.usage.count == 3)
        let tooLarge = MemoDecodedCache(bytesMax: 50, countMax: 3)
        tooLarge.remember(key("big"), bytes: bytes, value: 1)
        #expect(tooLarge.usage.count == 0, "a value larger than the whole cache is not kept")
    }
}
