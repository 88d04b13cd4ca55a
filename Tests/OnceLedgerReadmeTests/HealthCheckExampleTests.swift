// Proves the README's "Checking a ledger from code" example works as printed: this file holds
// its two functions (the block between the markers below) and runs them on a real ledger in a
// temp directory (healthy: 200 and one pending key; a damaged header: 503 naming the damage);
// a second test checks that every Swift block of that README section appears verbatim here.
import Foundation
import OnceLedger
import Testing

// README example begins
/// GET /health/ledger: 200 while the ledger opens without losing anything acknowledged.
func ledgerHealth(directory: String) throws -> (status: Int, body: String) {
    let report = try LedgerVerifier.verify(directory: directory)
    let lines = report.findings.map { "\($0.code): \($0.message)" }
    return (report.isHealthy ? 200 : 503, ([report.result.rawValue] + lines).joined(separator: "\n"))
}

/// The keys waiting for an operator, read without the writer's lock.
func pendingKeys(directory: String) async throws -> [String] {
    let ledger = try Ledger.openReadOnly(directory: directory)
    defer { try? ledger.close() }
    return try await ledger.pendingEntries().map(\.key)
}
// README example ends

@Suite struct HealthCheckExampleTests {
    @Test func theHealthEndpointReportsAHealthyAndADamagedLedger() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/ol-readme-health-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ledger = try Ledger.open(directory: directory)
        _ = try await ledger.once("mail-1", as: String.self) { _ in "sent" }
        _ = try? await ledger.once("charge-1", as: String.self) { _ in throw CancellationError() }
        try ledger.close()

        let healthy = try ledgerHealth(directory: directory)
        #expect(healthy.status == 200)
        #expect(healthy.body == "clean\npending-entries: 1 pending-unknown entry needs an operator decision")
        #expect(try await pendingKeys(directory: directory) == ["charge-1"])

        let segment = directory + "/" + LedgerFileNames.segment(1)
        var bytes = try #require(FileManager.default.contents(atPath: segment))
        bytes[20] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: segment))
        let damaged = try ledgerHealth(directory: directory)
        #expect(damaged.status == 503)
        #expect(damaged.body.hasPrefix("damaged\ndamage: segment header is invalid"))
        await #expect(throws: LedgerError.self) { try await pendingKeys(directory: directory) }
    }

    @Test func theReadmeSectionIsInThisFile() throws {
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let blocks = try #require(DocumentBlocks.swiftBlocks(in: try DocumentBlocks.text("README.md"),
                                                            section: "### Checking a ledger from code"))
        #expect(blocks.count == 1)
        for block in blocks {
            #expect(source.contains(block), "this README block is not in this file:\n\(block)")
        }
    }
}
