import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the CLI writes for a person: standard output and standard error, each coloured only when it is a
/// terminal, `NO_COLOR` is unset or empty (no-color.org) and `TERM` is not `dumb`. Piped or redirected
/// output stays plain text.
enum Terminal {
    static let out = Stream(fd: STDOUT_FILENO)
    static let err = Stream(fd: STDERR_FILENO)

    /// What a piece of text is, which decides its colour.
    enum Style: String {
        /// codeinterp's own failures, and the code's exception.
        case error = "1;31"
        /// What the code wrote to its standard error.
        case stderr = "31"
        /// Something to notice that is not a failure: a limit, a retry, a weaker isolation layer.
        case warning = "33"
        /// A layer or a check that is in place.
        case good = "32"
        /// Who speaks in a chat.
        case prompt = "1;36"
        /// Secondary detail: tool calls and their results, ids, paths.
        case dim = "2"
    }

    struct Stream: Sendable {
        let fd: Int32
        let colours: Bool

        init(fd: Int32, environment: [String: String] = ProcessInfo.processInfo.environment) {
            self.fd = fd
            colours = isatty(fd) == 1 && (environment["NO_COLOR"] ?? "").isEmpty && environment["TERM"] != "dumb"
        }

        /// `text` in `style`, when this stream shows colours. Each line is closed on its own, so a colour never
        /// runs past a newline into what another stream writes next.
        func paint(_ text: String, _ style: Style?) -> String {
            guard colours, let style, !text.isEmpty else { return text }
            return text.split(separator: "\n", omittingEmptySubsequences: false)
                .map { $0.isEmpty ? "" : "\u{1B}[\(style.rawValue)m\($0)\u{1B}[0m" }
                .joined(separator: "\n")
        }

        func write(_ text: String, _ style: Style? = nil) {
            write(Data(paint(text, style).utf8))
        }

        func write(_ data: Data) {
            data.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { return }
                    offset += n
                }
            }
        }
    }
}
