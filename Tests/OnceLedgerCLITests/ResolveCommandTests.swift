// Proves that `onceledger resolve` stores receipts an app can read and lets an operator fix a
// wrong one without a double charge: `--receipt` must be JSON (what `once(key, as:)` stores), so a
// bare charge id is refused (exit 16, nothing written) with the quoting hint; `--receipt-raw`
// stores text as is; `--correct` replaces a done entry's receipt with an audited resolve record
// that keeps the token, after which the app's typed `once` returns the corrected receipt without
// running the effect. Runs the built executable on a ledger the library leaves a key pending in.
import Foundation
import OnceLedger
import Testing

private struct ChargeReceipt: Codable, Sendable, Equatable {
    var chargeID: String
}

private struct GatewayTimeout: Error {}

@Suite struct ResolveCommandTests {
    /// A fresh ledger directory whose key "charge-7" is pending-unknown (its effect threw).
    private func ledgerWithPendingCharge() async throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("onceledger-resolve-\(UUID().uuidString)").path
        let ledger = try Ledger.open(directory: path, configuration: LogConfiguration(segmentBytes: 16 << 10))
        await #expect(throws: LedgerError.self) {
            try await ledger.once("charge-7", as: ChargeReceipt.self) { _ in throw GatewayTimeout() }
        }
        try ledger.close()
        return path
    }

    private func files(_ path: String) throws -> [String: Data] {
        var result: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: path) where name != LedgerFileNames.lock {
            result[name] = FileManager.default.contents(atPath: path + "/" + name)
        }
        return result
    }

    @Test func aReceiptThatIsNotJSONIsRefusedAndNothingIsWritten() async throws {
        let path = try await ledgerWithPendingCharge()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let before = try files(path)
        let refused = try CLI.run(["resolve", path, "charge-7", "--done", "--receipt", "ch_7", "--reason", "seen"])
        #expect(refused.exitCode == 16)
        #expect(refused.stdout == "")
        #expect(refused.stderr.hasPrefix(
            "Error: --receipt must be JSON, as once(key, as:) stores receipts (quote a string receipt: --receipt '\"ch_7\"'); to store other text as is, use --receipt-raw\n"))
        #expect(try files(path) == before)
        for arguments in [["--correct", "--reason", "r"], ["--done", "--receipt", "{}", "--receipt-raw", "x", "--reason", "r"],
                          ["--absent", "--receipt-raw", "x", "--reason", "r"], ["--done", "--correct", "--reason", "r"]] {
            let usage = try CLI.run(["resolve", path, "charge-7"] + arguments)
            #expect(usage.exitCode == 16, "\(arguments)")
        }
        #expect(try files(path) == before)
    }

    @Test func correctReplacesAWrongReceiptAndKeepsTheToken() async throws {
        let path = try await ledgerWithPendingCharge()
        defer { try? FileManager.default.removeItem(atPath: path) }
        // The mistake the JSON check now prevents, made on purpose with --receipt-raw.
        let raw = try CLI.run(["resolve", path, "charge-7", "--done", "--receipt-raw", "ch_7", "--reason", "charged once"])
        #expect(raw.exitCode == 0, "\(raw.stderr)")
        var ledger = try Ledger.open(directory: path, createIfMissing: false)
        let before = try #require(try ledger.entry("charge-7"))
        await #expect(throws: LedgerError.self) {
            try await ledger.once("charge-7", as: ChargeReceipt.self) { _ in ChargeReceipt(chargeID: "twice") }
        }
        try ledger.close()

        let corrected = try CLI.run(["resolve", path, "charge-7", "--correct", "--receipt", #"{"chargeID":"ch_7"}"#,
                                     "--reason", "the receipt was a bare id", "--actor", "alice"])
        #expect(corrected.exitCode == 0, "\(corrected.stderr)")
        #expect(corrected.stdout.hasPrefix(
            "corrected charge-7: done → done (attempt 1, receipt \"ch_7\" → \"{\\\"chargeID\\\":\\\"ch_7\\\"}\"); the token stays \(before.token), and the effect does not run again\n"),
            "\(corrected.stdout)")
        #expect(corrected.stdout.contains(#"by "alice": "the receipt was a bare id""#))

        ledger = try Ledger.open(directory: path, createIfMissing: false)
        defer { try? ledger.close() }
        let runs = Counter()
        let outcome = try await ledger.once("charge-7", as: ChargeReceipt.self) { _ in
            runs.increment()
            return ChargeReceipt(chargeID: "twice")
        }
        #expect(runs.value == 0)
        #expect(outcome.receipt == ChargeReceipt(chargeID: "ch_7"))
        #expect(try ledger.entry("charge-7")?.token == before.token)
        #expect(try ledger.entry("charge-7")?.generation == before.generation)
        try ledger.close()

        // --correct is for done entries only; resolve (not --correct) refuses a done one.
        let again = try CLI.run(["resolve", path, "charge-7", "--done", "--receipt", "{}", "--reason", "r"])
        #expect(again.exitCode == 8)
        #expect(again.stderr.contains("To replace a done entry's receipt, use --correct."))
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
