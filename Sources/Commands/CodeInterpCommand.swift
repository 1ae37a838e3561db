import ArgumentParser
import Logging
import Server

public struct CodeInterpCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "codeinterp",
        abstract: "A self-hosted code interpreter: model-written Python in forked, seccomp-restricted sandboxes.",
        discussion: ExitStatus.help,
        version: CodeInterpServer.version,
        subcommands: [RunCommand.self, ServeCommand.self, McpCommand.self, ChatCommand.self, DoctorCommand.self,
                      ProfileCommand.self, PackagesCommand.self, BenchCommand.self])

    public init() {}
}

/// What the exit status of a command means (in `--help` and the README).
enum ExitStatus {
    /// Lines short enough that `--help` does not wrap them.
    static let help = """
        Exit status:
          0   success (run: the code ran without raising)
          1   run: the code raised an exception; other commands: the command failed
              (the message says why)
          2   the sandbox could not run the code (run, mcp), or chat lacks what it
              needs (an API key, a readable script)
          3   run: a limit stopped the code (timeout, memory, output) or it was killed
          64  usage error: an unknown option, a missing or invalid argument
        """
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
