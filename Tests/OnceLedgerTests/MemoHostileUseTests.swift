// Proves that the memo answers a value or an input that cannot be encoded with a typed error
// (`LedgerError` `.invalidArgument`, the encoder's error underneath) and writes nothing, on both
// stores: before, `put` and `remember` of a `Double.nan` threw Foundation's `EncodingError`
// (untyped for a caller switching on `LedgerError.code`), and so did an input whose `encode(to:)`
// throws.
import Foundation
@testable import OnceLedger
import Testing
import OnceLedgerStoreContract

private struct Unencodable: Encodable {
    struct Refused: Error {}
    func encode(to encoder: any Encoder) throws { throw Refused() }
}

@Suite struct MemoHostileUseTests {
    @Test(arguments: BackendKind.allCases)
    func valuesAndInputsThatDoNotEncodeAreTypedErrorsAndWriteNothing(kind: BackendKind) async throws {
        let harness = Harness(kind)
        let ledger = try harness.open()
        let memo = try await ledger.memo(run: "r", step: "s")
        try await memo.put("kept", bytes: [1])
        let before = try harness.logRecords().count

        let nan = await ledgerError { try await memo.put("a", Double.nan) }
        #expect(nan?.code == .invalidArgument)
        #expect(nan?.underlyingError is EncodingError)
        let infinity = await ledgerError { try await memo.put("a", [Double.infinity]) }
        #expect(infinity?.code == .invalidArgument)
        let computed = Counter()
        let remembered = await ledgerError {
            try await memo.remember("b", as: Double.self) {
                computed.increment()
                return Double.nan
            }
        }
        #expect(remembered?.code == .invalidArgument)
        #expect(computed.count == 1)
        let input = await ledgerError { try await memo.put("c", bytes: [1], input: Unencodable()) }
        #expect(input?.code == .invalidArgument)
        #expect(input?.underlyingError is Unencodable.Refused)
        let read = await ledgerError { try await memo.bytes("kept", input: Unencodable()) }
        #expect(read?.code == .invalidArgument)

        #expect(try harness.logRecords().count == before, "nothing was written")
        #expect(try await memo.bytes("a") == nil)
        #expect(try await memo.bytes("kept") == [1])
        try ledger.close()
    }
}
