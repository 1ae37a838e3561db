import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// What the streamed routes (`/v1/execute` with SSE, `/v1/responses` with `stream: true`) share: the response
/// headers, the event framing, and the rule that a stream that stops being written stops the work behind it.
extension CodeInterpServer {
    /// `text/event-stream`, not cached, not buffered by a proxy in front (nginx's `X-Accel-Buffering`).
    static let eventStreamHeaders: HTTPFields = {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream; charset=utf-8"
        headers[.cacheControl] = "no-cache"
        headers[.init("X-Accel-Buffering")!] = "no"
        return headers
    }()

    /// Runs `write` (the body's writing); `task`, the work that feeds it, is cancelled when a write fails or the
    /// client goes away.
    static func writeEvents<Success: Sendable, Failure: Error>(cancelling task: Task<Success, Failure>,
                                              _ write: () async throws -> Void) async throws {
        try await withTaskCancellationHandler {
            do {
                try await write()
            } catch {
                task.cancel()
                throw error
            }
        } onCancel: {
            task.cancel()
        }
    }

    /// `stdout`/`stderr` events for the chunks, in one buffer (empty for none).
    static func sse(_ chunks: [OutputCoalescer.Chunk]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for chunk in chunks {
            buffer.writeImmutableBuffer(sse(chunk.kind == .stdout ? "stdout" : "stderr", TextEvent(text: chunk.text)))
        }
        return buffer
    }

    struct TextEvent: Encodable { var text: String }

    static func sse<T: Encodable>(_ event: String, _ value: T) -> ByteBuffer {
        let data = (try? JSONCoding.encoder.encode(value)) ?? Data("null".utf8)
        // JSON has no raw newlines, so one data line carries the whole object.
        var buffer = ByteBuffer(string: "event: \(event)\ndata: ")
        buffer.writeBytes(data)
        buffer.writeString("\n\n")
        return buffer
    }
}

extension ResponseBodyWriter {
    /// Writes the buffer unless it is empty (an empty chunk would end a chunked body).
    mutating func writeIfAny(_ buffer: ByteBuffer) async throws {
        if buffer.readableBytes > 0 { try await write(buffer) }
    }
}
