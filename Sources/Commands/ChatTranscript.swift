import Foundation
import Tools

/// `transcript.md` of `codeinterp chat`: the conversation in the order it happened, appended as it goes (a chat
/// that is stopped keeps what it had): every user message, every assistant turn with what the model said, the
/// code of each tool call and what it returned, and the final answer with its links resolved.
final class ChatTranscript: Sendable {
    let path: String?

    init(path: String?) { self.path = path }

    func title(_ conversationId: String) { append("# codeinterp chat \(conversationId)\n\n") }

    func user(_ text: String) { append("## user\n\n\(text)\n\n") }

    func failure(_ error: any Error) { append("_error: \(error)_\n\n") }

    func record(_ event: ChatEvent) {
        switch event {
        case .text:
            break  // the whole text comes with the turn or the answer
        case .turn(let text):
            append("## assistant\n\n" + (text.isEmpty ? "" : "\(text)\n\n"))
        case .toolCall(_, let code):
            append("execute_python:\n\n" + Self.fenced(code ?? "", info: "python"))
        case .toolProblem(_, let message):
            append("_bad tool call: \(message)_\n\n")
        case .toolResult(_, let outcome):
            append("result (\(outcome.result?.status.rawValue ?? "failed")):\n\n" + Self.fenced(outcome.textOnly))
        case .notice(let text):
            append("_\(text)_\n\n")
        case .answer(let resolved):
            append("## assistant\n\n\(resolved.text)\n\n")
        }
    }

    /// A fenced code block that `text` cannot close early: its fence is longer than any run of backticks in it.
    static func fenced(_ text: String, info: String = "") -> String {
        var longest = 0, run = 0
        for c in text {
            run = c == "`" ? run + 1 : 0
            longest = max(longest, run)
        }
        let fence = String(repeating: "`", count: max(3, longest + 1))
        let body = text.hasSuffix("\n") ? text : text + "\n"
        return "\(fence)\(info)\n\(body)\(fence)\n\n"
    }

    private func append(_ text: String) {
        guard let path else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}
