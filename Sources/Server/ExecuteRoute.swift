import FileStore
import Foundation
import HTTPTypes
import Hummingbird
import InterpreterCore
import Logging
import NIOCore
import Sandbox

extension CodeInterpServer {
    struct ExecuteBody {
        var code: String
        var sessionId: String?
        var timeoutSeconds: Double?
        var fileIds: [String]
    }

    func parseExecute(_ data: Data) throws -> ExecuteBody {
        let fields = try RequestFields(body: data, allowed: ["code", "session_id", "timeout_s", "files"])
        let code = try fields.requiredString("code")
        if code.utf8.count > configuration.maxCodeBytes {
            throw APIError.tooLarge("\"code\" is \(code.utf8.count) bytes; the limit is \(configuration.maxCodeBytes)", param: "code")
        }
        let timeout = try fields.number("timeout_s")
        if let timeout, !(timeout > 0) || !timeout.isFinite {
            throw APIError.invalidRequest("\"timeout_s\" must be a positive number of seconds", param: "timeout_s")
        }
        let sessionId = try fields.string("session_id")
        let files = try fields.strings("files") ?? []
        return ExecuteBody(code: code, sessionId: sessionId, timeoutSeconds: timeout, fileIds: files)
    }

    /// `POST /v1/execute`: the result object, or Server-Sent Events when asked for.
    func execute(_ request: Request, _ context: ServerRequestContext) async throws -> Response {
        let body = try parseExecute(try await jsonBody(request))
        let streamParameter = request.uri.queryParameters["stream"].map(String.init)
        guard streamParameter.map({ ["true", "false", "1", "0"].contains($0) }) ?? true else {
            throw APIError.invalidRequest("\"stream\" must be true or false", param: "stream")
        }
        let wantsStream = streamParameter == "true" || streamParameter == "1"
            || (request.headers[.accept]?.lowercased().contains("text/event-stream") ?? false)
        // Checked before the place is taken and before a stream starts: a wrong id is a 404, not an error event.
        let prepared = try prepareExecution(body)
        let ticket = try admitExecution()
        let logger = executions.executionLogger(prepared.request, base: context.logger, entry: "execute")
        logger.info("execution accepted", metadata: ["code_bytes": "\(body.code.utf8.count)", "stream": "\(wantsStream)"])
        if wantsStream {
            return streamingResponse(prepared, ticket: ticket, logger: logger, local: context.local)
        }
        let result = try await executions.run(prepared, ticket: ticket, logger: logger, output: nil)
        return try jsonResponse(publish(result, keepStorePaths: context.local))
    }

    /// A place in the gate, or 429 with Retry-After.
    func admitExecution() throws -> GateTicket {
        do {
            return try executions.admit()
        } catch {
            throw APIError.rateLimited(error.message, retryAfter: 1, code: "queue_full")
        }
    }

    /// The engine's check of the request, its misses named by the body's fields.
    func prepareExecution(_ body: ExecuteBody) throws -> PreparedExecution {
        let request = ExecutionRequest(code: body.code, timeoutSeconds: body.timeoutSeconds, sessionId: body.sessionId,
                                       fileIds: body.fileIds)
        do {
            return try engine.prepare(request)
        } catch {
            switch error.subject {
            case .session(let id)?: throw APIError.notFound("session", id: id, param: "session_id")
            case .file(let index, let id)?: throw APIError.notFound("file", id: id, param: "files[\(index)]")
            case nil: throw error
            }
        }
    }

    /// Streams `stdout`/`stderr` events as the code prints (a line or a short burst per event: OutputCoalescer),
    /// then `display`, `file` and a final `result` event carrying the same object the plain call returns. An
    /// engine failure ends the stream with `event: error`.
    func streamingResponse(_ prepared: PreparedExecution, ticket: GateTicket, logger: Logger, local: Bool) -> Response {
        enum Event: Sendable {
            case output(OutputStreamKind, [UInt8])
            case partialLineDue
            case result(ExecutionResult)
            case failure(APIError)
            case keepAlive
        }
        let body = ResponseBody { [self] writer in
            let (events, continuation) = AsyncStream<Event>.makeStream()
            let task = Task {
                do {
                    let result = try await executions.run(prepared, ticket: ticket, logger: logger) { kind, bytes in
                        continuation.yield(.output(kind, bytes))
                    }
                    continuation.yield(.result(publish(result, keepStorePaths: local)))
                } catch {
                    continuation.yield(.failure(APIError.from(error)))
                }
                continuation.finish()
            }
            // Code that prints nothing writes nothing: a comment every second finds a client that went away (the
            // write fails) while it runs, so that a page's stop button, which drops the stream, stops the code.
            let heartbeat = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    continuation.yield(.keepAlive)
                }
            }
            defer { heartbeat.cancel() }
            var timer: Task<Void, Never>?
            defer { timer?.cancel() }
            // A client that goes away cancels the execution (the engine kills it).
            try await Self.writeEvents(cancelling: task) {
                try await writer.write(ByteBuffer(string: ": execution accepted\n\n"))
                var output = OutputCoalescer()
                for await event in events {
                    switch event {
                    case .output(let kind, let bytes):
                        try await writer.writeIfAny(Self.sse(output.append(kind, bytes, at: .now)))
                    case .partialLineDue:
                        timer = nil
                        try await writer.writeIfAny(Self.sse(output.flushDue(at: .now)))
                    case .result(let result):
                        var buffer = Self.sse(output.finish())
                        for display in result.displays { buffer.writeImmutableBuffer(Self.sse("display", display)) }
                        for file in result.files { buffer.writeImmutableBuffer(Self.sse("file", file)) }
                        buffer.writeImmutableBuffer(Self.sse("result", result))
                        try await writer.write(buffer)
                    case .failure(let error):
                        var buffer = Self.sse(output.finish())
                        buffer.writeString("event: error\ndata: \(String(decoding: error.jsonBody, as: UTF8.self))\n\n")
                        try await writer.write(buffer)
                    case .keepAlive:
                        try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    }
                    if timer == nil, let deadline = output.deadline {
                        timer = Task {
                            try? await Task.sleep(until: deadline, clock: .continuous)
                            continuation.yield(.partialLineDue)
                        }
                    }
                }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: Self.eventStreamHeaders, body: body)
    }
}
