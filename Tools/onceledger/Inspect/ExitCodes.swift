import OnceLedgerFormat

/// Exit codes of every `onceledger` subcommand, as fsck(8)'s (README "Operating a ledger"):
///
/// | code | meaning |
/// |---|---|
/// | 0 | success; for `verify`: no corruption (a torn tail left in place is reported, not counted: it is an ordinary crash state that the next open cuts) |
/// | 1 | problems repaired (`verify --repair` cut a torn tail or removed leftover temporary files) |
/// | 4 | problems left: the ledger is damaged (a refusing recovery row, a malformed record body); nothing was changed |
/// | 8 | operational error: not a ledger, cannot read, locked by another process, an unsupported format version, or the key is not in the state the action needs (nothing was written) |
/// | 16 | usage error: bad or missing arguments (ArgumentParser's own validation errors are mapped here too) |
enum ExitCodes {
    static let success: Int32 = 0
    static let repaired: Int32 = 1
    static let problemsLeft: Int32 = 4
    static let operational: Int32 = 8
    static let usage: Int32 = 16

    /// The help text paragraph every inspection command shows.
    static let helpText = "Exit codes (as fsck(8)): 0 success, 1 problems repaired (verify --repair), "
        + "4 the ledger is damaged, 8 operational error (not a ledger, cannot read, locked, unsupported "
        + "version, wrong entry state), 16 usage error."

    /// The exit code for an error thrown by the library.
    static func code(for error: LedgerError) -> Int32 {
        if error.isCorruption { return problemsLeft }
        switch error.code {
        case .invalidArgument, .limitExceeded: return usage
        default: return operational
        }
    }
}
