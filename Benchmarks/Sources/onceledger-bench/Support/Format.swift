import Foundation

/// Number formatting for human output.
enum Format {
    /// 1234567 -> "1,234,567".
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var result = ""
        for (index, character) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { result.append(",") }
            result.append(character)
        }
        return value < 0 ? "-" + result : result
    }

    static func rate(_ value: Double) -> String { grouped(Int(value.rounded())) }

    static func fixed(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }

    static func ratio(_ value: Double) -> String {
        value >= 100 ? fixed(value, 0) + "×" : value >= 10 ? fixed(value, 1) + "×" : fixed(value, 2) + "×"
    }

    static func seconds(_ value: Double) -> String {
        value < 1 ? fixed(value * 1000, value < 0.01 ? 2 : 1) + " ms" : fixed(value, 2) + " s"
    }

    static func megabytes(_ bytes: UInt64) -> String { fixed(Double(bytes) / 1e6, 0) + " MB" }

    /// 1234567 -> "1.23 M".
    static func millions(_ value: Double) -> String {
        value >= 1e6 ? fixed(value / 1e6, 2) + " M" : value >= 1e3 ? fixed(value / 1e3, 1) + " k" : fixed(value, 0)
    }
}
