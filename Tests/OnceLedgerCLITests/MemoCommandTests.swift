// Proves that the memo's operator commands `runs`, `memo` and `sweep`, and the memo line of
// `stat`, print exactly what they should and exit with the usual codes, on a real ledger built
// in a fresh temporary directory through the `Ledger` memo API under a manual clock (so every
// byte and printed time is deterministic): whole text outputs are compared, JSON lines are parsed
// back, `sweep --dry-run` is checked to leave every file's bytes unchanged, `memo` of a run asked
// for in a namespace that does not hold it names the namespaces that do, and bad arguments
// must be usage errors (exit 16) as for the other commands.
import Foundation
import OnceLedger
import OnceLedgerFormat
import OnceLedgerTestSupport
import Testing

private enum MemoFixture {
    /// 2023-11-14T22:13:20Z.
    static let start: UInt64 = 1_700_000_000_000

    /// A ledger with: run "r1" (default namespace) generation 1 with two entries in step
    /// "llm" (a Codable string stored with an input, and two raw non-UTF-8 bytes) and one in
    /// step "tool", succeeded at T+3 s; run "r2" in namespace "ns" still running with one
    /// entry; run "r0" that failed at T+1 s and was swept at T+2 s.
    static func ledger() async throws -> String {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("onceledger-memo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        let path = parent.appendingPathComponent("ledger").path
        let clock = ManualClock(start)
        let ledger = try Ledger.open(directory: path, clock: clock.function)
        try await ledger.memo(run: "r0", step: "s").put("old", "stale answer")
        clock.advance(1000)
        try await ledger.finishRun("r0", status: .failed)
        clock.advance(1000)
        try await ledger.sweepMemo(retention: MemoRetention(.seconds(1)))
        let llm = try await ledger.memo(run: "r1", step: "llm")
        try await llm.put("answer", "The capital is Paris.", input: "What is the capital of France?")
        try await llm.put("raw", bytes: [0xff, 0x00])
        try await ledger.memo(run: "r1", step: "tool").put("weather", 21)
        clock.advance(1000)
        try await ledger.finishRun("r1", status: .succeeded)
        try await ledger.memo(run: "r2", step: "fetch", namespace: "ns").put("page", "<html>")
        try ledger.close()
        try FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.lock)
        return path
    }

    static func cleanUp(_ path: String) {
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    static func files(_ path: String) -> [String: Data] {
        var result: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            result[name] = FileManager.default.contents(atPath: path + "/" + name)
        }
        return result
    }
}

private func run(_ arguments: [String], in directory: String) throws -> CLI.Result {
    var result = try CLI.run(arguments.map { $0.replacingOccurrences(of: "$DIR", with: directory) })
    result.stdout = result.stdout.replacingOccurrences(of: directory, with: "$DIR")
    result.stderr = result.stderr.replacingOccurrences(of: directory, with: "$DIR")
    return result
}

private func jsonLines(_ text: String) throws -> [[String: Any]] {
    try text.split(separator: "\n").map { line in
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }
}

@Suite struct MemoCommandTests {
    @Test func runsListsEveryGenerationWithStatusSizesAndSwept() async throws {
        let path = try await MemoFixture.ledger()
        defer { MemoFixture.cleanUp(path) }
        let text = try run(["runs", "$DIR"], in: path)
        #expect(text.exitCode == 0)
        #expect(text.stderr == "")
        #expect(text.stdout == """
            NAMESPACE  RUN  GENERATION  STATUS     ENDED                     ENTRIES  BYTES  SWEPT
            --------------------------------------------------------------------------------------
            ""         r0            1  failed     2023-11-14T22:13:21.000Z        0      0  yes
            ""         r1            2  succeeded  2023-11-14T22:13:23.000Z        3     27  no
            ns         r2            3  running                                    1      8  no

            """)

        let json = try run(["runs", "$DIR", "--json", "--namespace", ""], in: path)
        #expect(json.exitCode == 0)
        let rows = try jsonLines(json.stdout)
        #expect(rows.count == 2)
        #expect(rows.map { $0["run"] as? String } == ["r0", "r1"])
        #expect(rows[0]["swept"] as? Bool == true)
        #expect(rows[0]["status"] as? String == "failed")
        #expect(rows[0]["entries"] as? Int == 0)
        #expect(rows[1]["swept"] as? Bool == false)
        #expect(rows[1]["status"] as? String == "succeeded")
        #expect(rows[1]["endTimeMs"] as? Int == Int(MemoFixture.start) + 3000)
        #expect(rows[1]["entries"] as? Int == 3)
        #expect(rows[1]["valueBytes"] as? Int == 27)
        #expect(rows[1]["sweptTime"] is NSNull)

        let running = try jsonLines(try run(["runs", "$DIR", "--json", "--namespace", "ns"], in: path).stdout)
        #expect(running.count == 1)
        #expect(running.first?["status"] as? String == "running")
        #expect(running.first?["endTime"] is NSNull)
    }

    @Test func memoListsARunsEntriesAndJSONGivesTheValueAsUTF8OrBase64() async throws {
        let path = try await MemoFixture.ledger()
        defer { MemoFixture.cleanUp(path) }
        let text = try run(["memo", "$DIR", "r1", "--step", "llm"], in: path)
        #expect(text.exitCode == 0)
        #expect(text.stdout == """
            GENERATION  STEP  NAME    INPUT              BYTES  VALUE
            -------------------------------------------------------------------------------
            2           llm   answer  c381d8320724c0ec…     23  "\\"The capital is Paris.\\""
            2           llm   raw     -                      2  hex:ff00

            """)

        let rows = try jsonLines(try run(["memo", "$DIR", "r1", "--json"], in: path).stdout)
        #expect(rows.map { "\($0["step"] as? String ?? "")/\($0["name"] as? String ?? "")" } == ["llm/answer", "llm/raw", "tool/weather"])
        #expect(rows[0]["valueEncoding"] as? String == "utf8")
        #expect(rows[0]["value"] as? String == "\"The capital is Paris.\"")
        #expect((rows[0]["inputDigest"] as? String)?.hasPrefix("c381d8320724c0ec") == true)
        #expect((rows[0]["inputDigest"] as? String)?.count == 64)
        #expect(rows[1]["valueEncoding"] as? String == "base64")
        #expect((rows[1]["value"] as? String).flatMap { Data(base64Encoded: $0) } == Data([0xff, 0x00]))
        #expect(rows[1]["inputDigest"] is NSNull)
        #expect(rows[2]["value"] as? String == "21")
        #expect(rows[2]["generation"] as? Int == 2)

        // Another namespace's run of the same name is not shown, only named; a swept run has no entries.
        let other = try run(["memo", "$DIR", "r2"], in: path)
        #expect(other.exitCode == 0)
        #expect(other.stdout == "no memo entries for run r2; run r2 has memo entries in namespace ns (pass --namespace ns)\n")
        #expect(try run(["memo", "$DIR", "r1", "--namespace", "elsewhere"], in: path).stdout
                == "no memo entries for run elsewhere/r1; run r1 has memo entries in namespace \"\" (pass --namespace \"\")\n")
        let namespaced = try jsonLines(try run(["memo", "$DIR", "r2", "--namespace", "ns", "--json"], in: path).stdout)
        #expect(namespaced.first?["value"] as? String == "\"<html>\"")
        #expect(try run(["memo", "$DIR", "r0"], in: path).stdout == "no memo entries for run r0\n")
    }

    @Test func sweepDryRunWritesNothingAndSweepSweepsEndedRunsOnly() async throws {
        let path = try await MemoFixture.ledger()
        defer { MemoFixture.cleanUp(path) }
        let before = MemoFixture.files(path)
        let dry = try run(["sweep", "$DIR", "--retention", "1d", "--dry-run"], in: path)
        #expect(dry.exitCode == 0)
        #expect(dry.stderr == "")
        #expect(dry.stdout == """
            would sweep run "r1" generation 2 (succeeded at 2023-11-14T22:13:23.000Z, 3 memo entries, 27 bytes)
            dry run: would sweep 1 run generation (3 memo entries); nothing was written

            """)
        #expect(MemoFixture.files(path) == before, "sweep --dry-run changed the directory")

        let swept = try run(["sweep", "$DIR", "--retention", "1d"], in: path)
        #expect(swept.exitCode == 0)
        #expect(swept.stdout == """
            swept run "r1" generation 2 (succeeded at 2023-11-14T22:13:23.000Z, 3 memo entries, 27 bytes)
            swept 1 run generation (3 memo entries); `onceledger compact` reclaims their space

            """)
        try? FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.lock)
        let rows = try jsonLines(try run(["runs", "$DIR", "--json"], in: path).stdout)
        #expect(rows.map { $0["swept"] as? Bool } == [true, true, false], "the running run must never be swept")
        #expect(try run(["memo", "$DIR", "r1"], in: path).stdout == "no memo entries for run r1\n")

        // Nothing is left to sweep: the running run stays.
        let again = try run(["sweep", "$DIR", "--retention", "0s"], in: path)
        #expect(again.stdout == "swept 0 run generations (0 memo entries); `onceledger compact` reclaims their space\n")

        // After compaction only the newest sweep record is kept (FORMAT §9.4): r1 is still
        // listed as swept, with no run-end record left its status is "ended", never "running".
        try? FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.lock)
        #expect(try run(["compact", "$DIR"], in: path).exitCode == 0)
        try? FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.lock)
        let compacted = try jsonLines(try run(["runs", "$DIR", "--json"], in: path).stdout)
        #expect(compacted.map { "\($0["run"] as? String ?? "") \($0["status"] as? String ?? "") \($0["swept"] as? Bool ?? false)" }
                    == ["r1 ended true", "r2 running false"])
    }

    @Test func statCountsTheMemo() async throws {
        let path = try await MemoFixture.ledger()
        defer { MemoFixture.cleanUp(path) }
        let text = try run(["stat", "$DIR"], in: path)
        #expect(text.exitCode == 0)
        #expect(text.stdout.contains("\nmemo            2 run generations (1 running, 1 ended), 4 memo entries, 35 value bytes\n"))
        let json = try run(["stat", "$DIR", "--json"], in: path)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let memo = try #require(object["memo"] as? [String: Any])
        #expect(memo["runs"] as? Int == 2)
        #expect(memo["running"] as? Int == 1)
        #expect(memo["entries"] as? Int == 4)
        #expect(memo["valueBytes"] as? Int == 35)
    }

    @Test func dumpNamesTheMemoKinds() async throws {
        let path = try await MemoFixture.ledger()
        defer { MemoFixture.cleanUp(path) }
        let dump = try run(["dump", "$DIR", "--kind", "memo-entry", "--kind", "run-end", "--kind", "memo-sweep"], in: path)
        #expect(dump.exitCode == 0)
        let lines = dump.stdout.split(separator: "\n").filter { $0.hasPrefix("seq=") }
        #expect(lines.count == 8)
        #expect(lines.contains { $0.contains("kind=memo-sweep") && $0.contains("run=\"r0\"") })
        #expect(lines.contains { $0.contains("kind=run-end") && $0.contains("status=succeeded") })
        #expect(lines.contains { $0.contains("kind=memo-entry") && $0.contains("value=hex:ff00") })
    }

    /// A memo entry's input digest (FORMAT §5.16) is 32 zero bytes for "no input": `dump` shows it
    /// as `memo` does, `none` (JSON null) or its hex digits — never as 32 NUL characters, which
    /// are valid UTF-8 and so were printed as text (`input="\u{0}\u{0}…"`, JSON `"\u0000…"`).
    @Test func dumpShowsTheInputDigestAsMemoDoes() async throws {
        let path = try await MemoFixture.ledger()
        defer { MemoFixture.cleanUp(path) }
        let dump = try run(["dump", "$DIR", "--kind", "memo-entry"], in: path)
        #expect(dump.exitCode == 0)
        let lines = dump.stdout.split(separator: "\n").filter { $0.hasPrefix("seq=") }
        let raw = try #require(lines.first { $0.contains("name=\"raw\"") })
        #expect(raw.contains(" input=none "), "\(raw)")
        let memo = try jsonLines(try run(["memo", "$DIR", "r1", "--json"], in: path).stdout)
        let digest = try #require(memo.first { $0["name"] as? String == "answer" }?["inputDigest"] as? String)
        let answer = try #require(lines.first { $0.contains("name=\"answer\"") })
        #expect(answer.contains(" input=\(digest) "), "\(answer)")
        let json = try jsonLines(try run(["dump", "$DIR", "--kind", "memo-entry", "--json"], in: path).stdout)
        let rawJSON = try #require(json.first { $0["name"] as? String == "raw" })
        #expect(rawJSON["input"] is NSNull, "\(rawJSON)")
        #expect(json.first { $0["name"] as? String == "answer" }?["input"] as? String == digest)
    }

    @Test func badArgumentsAreUsageErrors() async throws {
        let path = try await MemoFixture.ledger()
        defer { MemoFixture.cleanUp(path) }
        let before = MemoFixture.files(path)
        for arguments in [
            ["sweep", "$DIR"], ["sweep", "$DIR", "--retention", "5"], ["sweep", "$DIR", "--retention", "5x"],
            ["sweep", "$DIR", "--retention", "-1s"], ["sweep", "$DIR", "--retention", "1d", "--bogus"],
            ["memo", "$DIR"], ["memo", "$DIR", ""], ["memo", "$DIR", "r1", "--step"], ["runs"], ["runs", "$DIR", "extra"],
        ] {
            let result = try run(arguments, in: path)
            #expect(result.exitCode == 16, "\(arguments): exit \(result.exitCode), stderr \(result.stderr)")
            #expect(result.stderr.contains("Usage: onceledger \(arguments[0])"), "\(arguments): \(result.stderr)")
        }
        #expect(MemoFixture.files(path) == before)
        // A number too large for any unit says so.
        let huge = try run(["sweep", "$DIR", "--retention", "99999999999999999999d"], in: path)
        #expect(huge.exitCode == 16 && huge.stderr.contains("is too long"), "\(huge.stderr)")
        let notALedger = try run(["runs", "$DIR/nope"], in: path)
        #expect(notALedger.exitCode == 8)
        let sweepMissing = try run(["sweep", "$DIR/nope", "--retention", "1d"], in: path)
        #expect(sweepMissing.exitCode == 8)
    }
}

/// Run ids, steps and names are byte strings to the ledger: "café" spelled with U+00E9 and with
/// "e" + U+0301 are two runs (and two names) although Swift's `==` calls them equal.
@Suite struct MemoCommandByteStringTests {
    static let composed = "caf\u{e9}"
    static let decomposed = "cafe\u{301}"

    /// Run `composed` (generation 1, succeeded) and run `decomposed` (generation 2, running),
    /// each with two values in step "s": under `composed` and under `decomposed`.
    static func ledger() async throws -> String {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("onceledger-memo-bytes-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        let path = parent.appendingPathComponent("ledger").path
        let ledger = try Ledger.open(directory: path, clock: ManualClock(MemoFixture.start).function)
        // (`==` cannot tell the two apart: the tag says which is which.)
        for (run, tag) in [(composed, "c"), (decomposed, "d")] {
            let memo = try await ledger.memo(run: run, step: "s")
            try await memo.put(composed, bytes: Array("one of \(tag)".utf8))
            try await memo.put(decomposed, bytes: Array("the other value of \(tag)".utf8))
            if tag == "c" { try await ledger.finishRun(run, status: .succeeded) }
        }
        try ledger.close()
        try FileManager.default.removeItem(atPath: path + "/" + LedgerFileNames.lock)
        return path
    }

    @Test func runsCountsEveryNameOfEveryRun() async throws {
        let path = try await Self.ledger()
        defer { MemoFixture.cleanUp(path) }
        let rows = try jsonLines(try run(["runs", "$DIR", "--json"], in: path).stdout)
        #expect(rows.count == 2)
        #expect(rows.map { ($0["run"] as? String).map { Array($0.utf8) } } == [Array(Self.decomposed.utf8), Array(Self.composed.utf8)].sorted { $0.lexicographicallyPrecedes($1) })
        #expect(rows.map { $0["entries"] as? Int } == [2, 2], "two values per run generation")
    }

    @Test func memoListsOnlyTheRunAskedForWithBothItsNames() async throws {
        let path = try await Self.ledger()
        defer { MemoFixture.cleanUp(path) }
        for (runID, generation, tag) in [(Self.composed, 1, "c"), (Self.decomposed, 2, "d")] {
            let rows = try jsonLines(try run(["memo", "$DIR", runID, "--json"], in: path).stdout)
            #expect(rows.map { $0["generation"] as? Int } == [generation, generation], "only run \(tag)'s generation")
            #expect(rows.map { ($0["run"] as? String).map { Array($0.utf8) } } == [Array(runID.utf8), Array(runID.utf8)])
            var values: [[UInt8]: String] = [:]
            for row in rows {
                if let name = row["name"] as? String { values[Array(name.utf8)] = row["value"] as? String }
            }
            #expect(values == [Array(Self.composed.utf8): "one of \(tag)",
                               Array(Self.decomposed.utf8): "the other value of \(tag)"])
        }
    }
}
