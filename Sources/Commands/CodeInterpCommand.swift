import ArgumentParser
import Logging
import Server

public struct CodeInterpCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "codeinterp",
        abstract: "A self-hosted code interpreter: model-written Python in forked, seccomp-restricted sandboxes.",
        version: CodeInterpServer.version,
        subcommands: [RunCommand.self, ServeCommand.self, McpCommand.self, ChatCommand.self, DoctorCommand.self,
                      ProfileCommand.self, PackagesCommand.self, BenchCommand.self])

    public init() {}
}

/// Options every command that starts the engine shares.
struct EngineOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Where files and metadata are stored (default: $CODEINTERP_DATA_DIR, /var/lib/codeinterp as root, else ~/.local/share/codeinterp).")
    var dataDirectory: String?

    @Option(name: .customLong("slots"), help: "Executions that may run at once.")
    var slots: Int?
}

/// The executable's entry point (kept out of the `@main`-less executable target so it stays one line).
public enum CodeInterpEntry {
    public static func run() async {
        await CodeInterpCommand.main(nil)
    }
}

/// The CLI's own output is the result; the engine only speaks up for warnings.
func quietLogger() -> Logger {
    var logger = Logger(label: "codeinterp")
    logger.logLevel = .warning
    return logger
}
