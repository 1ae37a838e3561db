import Foundation

extension Subprocess {
    public struct TerminalOutput: Sendable {
        public var status: Int32
        /// Everything the program wrote to the terminal, stdout and stderr interleaved as a person sees them
        /// (the terminal turns each "\n" into "\r\n").
        public var text: String
    }

    /// Runs `argv` on a new pseudo-terminal (its stdin, stdout and stderr), as in a person's terminal window, and
    /// returns what it wrote there. Python's `os.forkpty` makes the terminal: Glibc's pty functions are not
    /// visible from Swift.
    public static func runOnTerminal(_ argv: [String], environment: [String: String]) throws -> TerminalOutput {
        let r = try run(["/usr/bin/python3", "-c", onTerminal] + argv, environment: environment)
        return TerminalOutput(status: r.status, text: r.stdout)
    }

    private static let onTerminal = """
        import os, sys
        pid, terminal = os.forkpty()
        if pid == 0:
            os.execv(sys.argv[1], sys.argv[1:])
        seen = bytearray()
        while True:
            try:
                data = os.read(terminal, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            seen += data
        _, status = os.waitpid(pid, 0)
        sys.stdout.buffer.write(seen)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
}
