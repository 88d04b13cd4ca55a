import ArgumentParser
import Foundation
import OnceLedgerFormat

/// Arguments `resolve` and `forget` share: who and why, recorded in the log.
enum AuditArguments {
    static func validate(key: String, reason: String, actor: String?) throws {
        let keyBytes = key.utf8.count
        guard keyBytes >= 1, keyBytes <= FormatLimits.keyBytesMax else {
            throw ValidationError("the key must be 1 to \(FormatLimits.keyBytesMax) bytes of UTF-8 (it is \(keyBytes))")
        }
        guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ValidationError("--reason must say why; it is recorded in the log as the audit trail")
        }
        guard reason.utf8.count <= FormatLimits.reasonBytesMax else {
            throw ValidationError("--reason is \(reason.utf8.count) bytes; the limit is \(FormatLimits.reasonBytesMax)")
        }
        if let actor, actor.isEmpty || actor.utf8.count > FormatLimits.reasonBytesMax {
            throw ValidationError("--actor must be 1 to \(FormatLimits.reasonBytesMax) bytes")
        }
    }

    /// An idempotency key given on the command line (`--key` of `dump`): 1 to 1024 bytes of UTF-8,
    /// as the ledger accepts (`Spec/FORMAT.md` §1.3).
    static func validateKey(_ key: String, option: String) throws {
        let keyBytes = key.utf8.count
        guard keyBytes >= 1, keyBytes <= FormatLimits.keyBytesMax else {
            throw ValidationError("\(option) must be 1 to \(FormatLimits.keyBytesMax) bytes of UTF-8 (it is \(keyBytes)), as every idempotency key is")
        }
    }
}
