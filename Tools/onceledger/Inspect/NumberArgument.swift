import ArgumentParser

/// Numeric options. They are declared with `parsing: .unconditional`, so that `--effects -1`
/// reaches the command as the value -1 (ArgumentParser would otherwise take `-1` for an
/// option and report "Missing value for '--effects <effects>'"); a negative value is then
/// refused as what it is: by `validate()` for `Int` options, by `unsigned` for `UInt64` ones.
enum NumberArgument {
    /// The message for a value that is not a whole number of zero or more.
    static let nonNegativeMessage = "it must be a non-negative integer (0, 1, 2, …)"

    /// A `UInt64` option's value: decimal digits only.
    static func unsigned(_ text: String) throws -> UInt64 {
        guard let value = UInt64(text), !text.hasPrefix("+") else { throw ValidationError(nonNegativeMessage) }
        return value
    }
}
