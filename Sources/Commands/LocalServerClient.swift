import AsyncHTTPClient
import Foundation
import InterpreterCore
import NIOCore
import Sandbox
import Server

/// `codeinterp run` through a `codeinterp serve` of the same data directory, over its local socket (see
/// `LocalSocket`): the server's warm zygote answers in milliseconds where a fresh engine would first spend seconds
/// importing the scientific stack.
struct LocalServerClient {
    let socketPath: String

    /// The client for the server of `dataDirectory`, when one answers on its socket.
    static func connect(dataDirectory: String) -> LocalServerClient? {
        let path = LocalSocket.path(dataDirectory: dataDirectory)
        return LocalSocket.isLive(path) ? LocalServerClient(socketPath: path) : nil
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `code` (stateless, the server's default profile) and streams its output to `output` as it comes.
    func execute(code: String, timeoutSeconds: Double?,
                 output: @Sendable (OutputStreamKind, String) -> Void) async throws -> ExecutionResult {
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: "/v1/execute") else {
            throw Failure(description: "cannot address the socket \(socketPath)")
        }
        var body: [String: JSONValue] = ["code": .string(code)]
        if let timeoutSeconds { body["timeout_s"] = .double(timeoutSeconds) }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "text/event-stream")
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(JSONValue.object(body))))

        let response = try await HTTPClient.shared.execute(request, timeout: .hours(24))
        guard response.status == .ok else {
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            throw Failure(description: "the server answered \(response.status.code): \(Self.message(inError: text))")
        }
        var parser = ServerSentEvents()
        for try await chunk in response.body {
            for event in parser.feed(chunk.readableBytesView) {
                switch event.event {
                case "stdout", "stderr":
                    let text = (try? JSONDecoder().decode(JSONValue.self, from: Data(event.data.utf8)))?["text"]?.stringValue ?? ""
                    output(event.event == "stdout" ? .stdout : .stderr, text)
                case "result":
                    return try JSONDecoder().decode(ExecutionResult.self, from: Data(event.data.utf8))
                case "error":
                    throw Failure(description: Self.message(inError: event.data))
                default:
                    break
                }
            }
        }
        throw Failure(description: "the server closed the stream before the result (did it stop?)")
    }

    /// The message of an API error body (`{"error": {"message": ...}}`), or the text itself.
    static func message(inError text: String) -> String {
        (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)))?["error"]?["message"]?.stringValue ?? text
    }
}
