// Proves `onceledger salvage` of a damaged ledger holding memo records keeps what is intact: memo
// values in the snapshot (of an ended run, one stored with an input) and in the segments after it
// (of a running run) read back from the new ledger, byte for byte, with their run's generation and
// end; a run swept before the damage stays swept (its values gone, its id given a new generation);
// the one memo value whose record was damaged is lost and reported, nothing else. How: a ledger
// written with the library (puts, run ends, a compaction, a sweep, more puts), one byte flipped
// inside the damaged value's record (found by its marker bytes in the segment files), salvaged
// with the CLI; the new ledger is opened with the library and `verify` calls it clean.
import Foundation
import OnceLedger
import OnceLedgerFormat
import Testing

@Suite struct SalvageMemoTests {
    static func value(_ seed: UInt8, _ count: Int = 500) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13) &+ seed } }
    /// The damaged value: bytes no other record holds, so its record can be found on disk.
    static let marker = [UInt8](repeating: 0xa5, count: 2_000)

    @Test func salvageKeepsIntactMemoValuesRunEndsAndSweeps() async throws {
        let source = try KillTestDirectory("salvage-memo")
        defer { source.remove() }
        let ledger = try Ledger.open(directory: source.path)
        let ended = try await ledger.memo(run: "ended", step: "llm")
        try await ended.put("e1", bytes: Self.value(1), input: "prompt-1")
        try await ended.put("e2", bytes: Self.value(2))
        try await ledger.finishRun("ended", status: .succeeded)
        let swept = try await ledger.memo(run: "swept", step: "llm")
        try await swept.put("s1", bytes: Self.value(3))
        try await ledger.finishRun("swept", status: .failed)
        try await ledger.compact()
        let sweep = try await ledger.sweepMemo(now: .max, retention: MemoRetention(succeeded: nil, failed: .zero, cancelled: nil))
        #expect(sweep.generationCount == 1)
        let damaged = try await ledger.memo(run: "damaged", step: "llm")
        try await damaged.put("d1", bytes: Self.marker)
        let running = try await ledger.memo(run: "running", step: "llm")
        try await running.put("r1", bytes: Self.value(4))
        try await running.put("r2", bytes: Self.value(5), input: ["temperature": 0])
        try ledger.close()

        // Flip one byte inside the damaged value's record.
        var flipped = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) where LedgerFileNames.parseSegment(name) != nil {
            let path = source.path + "/" + name
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            guard let start = Self.find(Self.marker, in: bytes) else { continue }
            bytes[start + 1_000] ^= 0xff
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            flipped += 1
        }
        try #require(flipped == 1, "the damaged value's record is in one segment")

        let target = try KillTestDirectory("salvage-memo-new")
        defer { target.remove() }
        let result = try CLI.run(["salvage", source.path, "--to", target.path])
        #expect(result.exitCode == 4, "one record lost: \(result.stdout) \(result.stderr)")
        let verify = try CLI.run(["verify", target.path])
        #expect(verify.exitCode == 0, "verify of the salvaged ledger: \(verify.stdout)")

        let store = try FileStore(directory: target.path)
        defer { try? store.close() }
        let runs = try await store.runs(RunQuery())
        #expect(runs.map(\.run.run) == ["ended", "running"], "\(runs)")
        let endedRun = try #require(runs.first { $0.run.run == "ended" })
        #expect(endedRun.generation == ended.generation && endedRun.status == .succeeded && endedRun.entryCount == 2)
        func stored(_ memo: Memo, _ name: String) async throws -> MemoValue? {
            try await store.memoGet(MemoKey(run: memo.run, generation: memo.generation, step: memo.step, name: name))
        }
        #expect(try await stored(ended, "e1")?.bytes == Self.value(1))
        #expect(try await stored(ended, "e1")?.inputDigest != nil)
        #expect(try await stored(ended, "e2")?.bytes == Self.value(2))
        #expect(try await stored(swept, "s1") == nil, "a swept run stays swept")
        #expect(try await stored(damaged, "d1") == nil, "the damaged value is lost, not wrong")
        try store.close()

        // Through the ledger: the running run goes on in its generation; a swept id starts anew.
        let reopened = try Ledger.open(directory: target.path)
        defer { try? reopened.close() }
        let again = try await reopened.memo(run: "running", step: "llm")
        #expect(again.generation == running.generation)
        #expect(try await again.bytes("r1") == Self.value(4))
        #expect(try await again.bytes("r2", input: ["temperature": 0]) == Self.value(5))
        let sweptAgain = try await reopened.memo(run: "swept", step: "llm")
        #expect(sweptAgain.generation > running.generation, "a generation number is never used twice")
        #expect(try await sweptAgain.bytes("s1") == nil)
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var index = 0
        while index <= haystack.count - needle.count {
            if haystack[index] == needle[0], haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}
