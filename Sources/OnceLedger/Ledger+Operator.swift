import OnceLedgerFormat

extension Ledger {
    /// Resolves a pending-unknown entry — it happened (with a receipt) or it did not —
    /// recording who and why in the log. Throws `.wrongState` for any other state.
    public func resolvePending(_ key: String, as resolution: PendingResolution, reason: String,
                               actor: String = "operator") async throws {
        guard !reason.isEmpty else {
            throw LedgerError(.invalidArgument, "resolving an entry needs a reason; it is recorded in the log", key: key)
        }
        let call = InFlightCall(fingerprint: [])
        let entry: EntryInfo = try inFlight.withLock { running in
            guard running[key] == nil else {
                throw LedgerError(.wrongState, "key \"\(key)\" is running in this process now", key: key)
            }
            guard let entry = self.entry(key), entry.status == .pendingUnknown else {
                throw LedgerError(.wrongState, "key \"\(key)\" is not pending-unknown", key: key, entry: self.entry(key))
            }
            running[key] = call
            return entry
        }
        defer { finish(IdempotencyKey(key), call, .failure(LedgerErrorOrOther(error: LedgerError(.wrongState, "resolved")))) }
        let body: RecordBody
        switch resolution {
        case .done(let receipt):
            try checkReceipt(receipt, key: key)
            body = .resolve(.init(key: key, outcome: .done, attempt: entry.attempt, timeMilliseconds: now(),
                                  receipt: receipt, actor: actor, reason: reason))
        case .absent:
            body = .resolve(.init(key: key, outcome: .absent, attempt: entry.attempt, timeMilliseconds: now(),
                                  receipt: [], actor: actor, reason: reason))
        }
        try await commit([body])
    }

    /// Removes a done entry so the effect may run again — an audited act: the forget
    /// record (who, why, when) stays in the log. The next run gets a new token.
    /// Throws `.wrongState` unless the key is done, `.invalidArgument` without a reason.
    public func forgetDoneEntryAllowingRerun(_ key: String, reason: String, actor: String = "operator") async throws {
        guard !reason.isEmpty else {
            throw LedgerError(.invalidArgument, "forgetting an entry needs a reason; it is recorded in the log", key: key)
        }
        let call = InFlightCall(fingerprint: [])
        try inFlight.withLock { running in
            guard running[key] == nil else {
                throw LedgerError(.wrongState, "key \"\(key)\" is running in this process now", key: key)
            }
            guard let entry = self.entry(key), entry.status == .done else {
                throw LedgerError(.wrongState, "key \"\(key)\" is not done; only done entries can be forgotten",
                                  key: key, entry: self.entry(key))
            }
            running[key] = call
        }
        defer { finish(IdempotencyKey(key), call, .failure(LedgerErrorOrOther(error: LedgerError(.wrongState, "forgotten")))) }
        try await commit([.forget(.init(key: key, timeMilliseconds: now(), actor: actor, reason: reason))])
    }
}
