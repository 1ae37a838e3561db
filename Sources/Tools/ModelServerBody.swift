import AsyncHTTPClient
import InterpreterCore

/// Reading a model server's answer, for the chat providers here and the Responses upstreams.
public enum ModelServerBody {
    /// The body's bytes; reading stops once more than `limit` have come.
    public static func collect(_ body: HTTPClientResponse.Body, limit: Int) async throws -> [UInt8] {
        var out: [UInt8] = []
        for try await buffer in body {
            out.append(contentsOf: buffer.readableBytesView)
            if out.count > limit { break }
        }
        return out
    }

    /// Calls `onEvent` with each Server-Sent Event of `body` in order (the project's parser: multi-line `data:`,
    /// LF, CRLF or CR line ends, comments) until it returns false or the body ends; an event the server left
    /// without its closing blank line still counts (`ServerSentEvents.finish`).
    public static func forEachEvent(in body: HTTPClientResponse.Body,
                                    _ onEvent: (ServerSentEvents.Event) async throws -> Bool) async throws {
        var parser = ServerSentEvents()
        for try await buffer in body {
            for event in parser.feed(buffer.readableBytesView) {
                guard try await onEvent(event) else { return }
            }
        }
        for event in parser.finish() {
            guard try await onEvent(event) else { return }
        }
    }
}
