import ArgumentParser

/// Placeholder registered so the command list is fixed; being implemented (issue 4).
struct ForgetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "forget", abstract: "(not implemented yet)")
    func run() async throws {
        throw ValidationError("onceledger forget is not implemented yet")
    }
}
