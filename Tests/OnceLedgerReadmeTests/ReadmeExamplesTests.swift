// Proves that `import OnceLedger` alone is enough for what the README and the DocC catalog show:
// this target depends only on OnceLedger and OnceLedgerTestSupport and imports only OnceLedger
// (and Testing), and compiles and runs the README's examples against an in-memory ledger with
// fake downstreams: the quick start, an interpolated key with a discarded result (the best
// practices' charge example), the error-handling catch block as the README prints it (every
// clause), the admin endpoint of "Resolving keys while the app runs", and reading a receipt by
// `IdempotencyKey`. Were a type the examples use (LedgerError, EntryInfo, FormatLimits,
// LogConfiguration) not re-exported, this file would not compile.
import OnceLedger
import Testing

struct MailReceipt: Codable, Sendable, Equatable { var messageID: String }
struct ChargeReceipt: Codable, Sendable, Equatable { var chargeID: String }
struct Order: Codable, Sendable { var id: Int; var total: Int }

/// Sends "mail" and keeps the idempotency key of every send.
actor FakeMailer {
    private(set) var sends: [String] = []
    func send(receiptFor order: Order, idempotencyKey: String) async throws -> String {
        sends.append(idempotencyKey)
        return "msg-\(order.id)"
    }
}

/// Charges "cards"; fails on demand, as a gateway that timed out after charging would.
actor FakePayments {
    private(set) var charges: [String] = []
    var failNext = false
    func failNextCharge() { failNext = true }
    func charge(_ amount: Int, idempotencyKey: String) async throws -> String {
        charges.append(idempotencyKey)
        if failNext {
            failNext = false
            throw GatewayTimeout()
        }
        return "ch_\(charges.count)"
    }
}

struct GatewayTimeout: Error {}

struct ResolveRequest: Codable, Sendable {
    var key: String
    var happened: Bool
    var chargeID: String
    var reason: String
}

@Suite struct ReadmeExamplesTests {
    @Test func quickStartRunsTheEffectOnceAndReturnsTheStoredReceiptAfter() async throws {
        let ledger = Ledger.inMemory()
        defer { try? ledger.close() }
        let mailer = FakeMailer()
        let order = Order(id: 42, total: 1_999)
        var lines: [String] = []
        for _ in 0..<2 {
            let outcome = try await ledger.once("order-42-receipt", as: MailReceipt.self) { effect in
                let id = try await mailer.send(receiptFor: order, idempotencyKey: effect.token)
                return MailReceipt(messageID: id)          // stored as the "minimal acknowledgment"
            }
            switch outcome {
            case .performed(let receipt, _):
                lines.append("sent \(receipt.messageID)")
            case .alreadyDone(let receipt, let entry):
                lines.append("already sent \(receipt.messageID) at \(entry.timeMilliseconds) ms")   // skipped
            }
        }
        #expect(await mailer.sends.count == 1)
        #expect(lines.first == "sent msg-42")
        #expect(lines.last?.hasPrefix("already sent msg-42 at ") == true)
        let request = (idempotencyKey: String?.none, body: order)
        let key = try IdempotencyKey(explicit: request.idempotencyKey, name: "send-receipt", params: order)
        #expect(key.rawValue.hasPrefix("send-receipt#"))
    }

    @Test func anInterpolatedKeyAndADiscardedResultCompileAndRun() async throws {
        let ledger = Ledger.inMemory()
        defer { try? ledger.close() }
        let payments = FakePayments()
        let order = Order(id: 7, total: 500)
        for _ in 0..<2 {
            try await ledger.once("charge-\(order.id)", whenPending: .retry) { effect in
                try await payments.charge(order.total, idempotencyKey: effect.token)
            }
        }
        #expect(await payments.charges.count == 1)
        #expect(try ledger.entry("charge-7")?.status == .done)
    }

    /// The README's catch block as printed, with bodies that record which clause caught.
    @Test func theErrorHandlingCatchBlockCompilesAndCatchesAPendingKey() async throws {
        let ledger = Ledger.inMemory()
        defer { try? ledger.close() }
        let mailer = FakeMailer()
        let order = Order(id: 43, total: 100)
        let key: IdempotencyKey = "order-43-receipt"
        var caught: [String] = []
        for round in 0..<2 {
            do {
                let outcome = try await ledger.once(key, as: MailReceipt.self) { effect in
                    _ = try await mailer.send(receiptFor: order, idempotencyKey: effect.token)
                    throw GatewayTimeout()    // sent, then the connection dropped
                }
                caught.append("returned \(outcome.receipt)")
            } catch let error as LedgerError where error.code == .pendingUnknown {
                caught.append("pending-unknown attempt \(error.entry?.attempt ?? 0)")
            } catch let error as LedgerError where error.code == .fingerprintMismatch {
                caught.append("\(error.code) \(String(describing: error.entry))")
            } catch let error as LedgerError where error.code == .effectFailed {
                caught.append("effect-failed \(error.underlyingError is GatewayTimeout)")
            } catch let error as LedgerError where error.code == .released {
                caught.append("\(error.code) \(String(describing: error.underlyingError as? EffectDidNotHappen))")
            } catch let error as LedgerError where error.code == .reconcileFailed {
                caught.append("\(error.code)")
            } catch let error as LedgerError where error.code == .limitExceeded {
                caught.append("\(error.code) \(error.limit ?? "")")
            } catch let error as LedgerError where error.code == .receiptDecodingFailed {
                caught.append("\(error.code)")
            } catch let error as LedgerError where error.code == .poisoned || error.code == .io {
                caught.append("\(error.code)")
            } catch let error as LedgerError where error.code == .closed || error.code == .invalidArgument {
                caught.append("\(error.code)")
            } catch is CancellationError {
                caught.append("cancelled in round \(round)")
            }
        }
        #expect(caught == ["effect-failed true", "pending-unknown attempt 1"])
        #expect(await mailer.sends.count == 1)
        let configuration = LogConfiguration()
        #expect(configuration.segmentBytes > 0)
        #expect(FormatLimits.receiptBytesMax == 64 << 10)
    }

    /// The admin endpoint of "Resolving keys while the app runs", called for a pending charge;
    /// the app's next typed `once` returns the operator's receipt without charging again.
    @Test func theAdminEndpointResolvesAPendingKeyWithATypedReceipt() async throws {
        let ledger = Ledger.inMemory()
        defer { try? ledger.close() }
        let payments = FakePayments()
        await payments.failNextCharge()
        let charge: @Sendable (EffectContext) async throws -> ChargeReceipt = { effect in
            ChargeReceipt(chargeID: try await payments.charge(4_200, idempotencyKey: effect.token))
        }
        await #expect(throws: LedgerError.self) { try await ledger.once("charge-42", as: ChargeReceipt.self, charge) }
        #expect(try ledger.pendingEntries().map(\.key) == ["charge-42"])

        func resolveCharge(_ request: ResolveRequest, admin: String) async throws {
            let key = IdempotencyKey(request.key)
            if request.happened {
                try await ledger.resolvePending(key, as: try .done(ChargeReceipt(chargeID: request.chargeID)),
                                                reason: request.reason, actor: admin)
            } else {
                try await ledger.resolvePending(key, as: .absent, reason: request.reason, actor: admin)
            }
        }
        try await resolveCharge(ResolveRequest(key: "charge-42", happened: true, chargeID: "ch_1",
                                               reason: "the gateway's dashboard shows the charge"), admin: "alice")
        let outcome = try await ledger.once("charge-42", as: ChargeReceipt.self, charge)
        #expect(!outcome.wasPerformed)
        #expect(outcome.receipt == ChargeReceipt(chargeID: "ch_1"))
        #expect(await payments.charges.count == 1)
        let entry: EntryInfo? = try ledger.entry(IdempotencyKey("charge-42"))
        #expect(try entry?.receipt(as: ChargeReceipt.self) == ChargeReceipt(chargeID: "ch_1"))
    }
}
