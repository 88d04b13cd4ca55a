// `import OnceLedger` is the one import an app needs: the types its API hands out and
// takes in live in the lower modules (`LedgerError`, `EntryInfo`, `FormatLimits` in
// OnceLedgerFormat; `LogConfiguration`, `Storage`, `PosixStorage` in OnceLedgerLog), so
// they are re-exported here rather than making every catch block import two more modules.
@_exported import OnceLedgerFormat
@_exported import OnceLedgerLog
