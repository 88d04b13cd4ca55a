/// Aligned `label  value` lines for the text summaries of `verify` and `stat`.
struct SummaryText {
    private(set) var lines: [String] = []
    let labelWidth: Int

    init(labelWidth: Int = 12) { self.labelWidth = labelWidth }

    mutating func add(_ label: String, _ value: String) {
        let pad = String(repeating: " ", count: max(1, labelWidth - label.count))
        lines.append(label + pad + value)
    }

    /// A continuation line under the previous value.
    mutating func detail(_ text: String) {
        lines.append("  " + text)
    }

    var text: String { lines.joined(separator: "\n") }
}
