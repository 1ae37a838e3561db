import FileStore
import Foundation
import InterpreterCore
import Sandbox

/// An image a tool result carries inline (a figure).
public struct ToolImage: Sendable, Equatable {
    public var mimeType: String
    public var base64: String
    public var file: FileReference
}

/// What one `execute_python` call produced, before it is shaped for an API.
public struct ToolOutcome: Sendable {
    /// The text for APIs whose tool results carry images (figures are attached, not linked).
    public var text: String
    /// The text for APIs whose tool results are text only (Chat Completions): figures are linked.
    public var textOnly: String
    public var images: [ToolImage]
    /// Files the code wrote to /mnt/data, with their URLs.
    public var files: [(file: FileReference, url: String)]
    /// The call failed: bad arguments, the code raised, a limit stopped it, or the sandbox failed.
    public var isError: Bool
    public var result: ExecutionResult?
    public var sessionId: String?

    /// The tool-result message in the shape of `shape`, answering call `callId`.
    public func message(for shape: ToolCallShape, callId: String) -> JSONValue {
        switch shape {
        case .openAIChat:
            return ["role": "tool", "tool_call_id": .string(callId), "content": .string(textOnly)]
        case .openAIResponses:
            var output: [JSONValue] = [["type": "input_text", "text": .string(text)]]
            for image in images {
                output.append(["type": "input_image", "image_url": .string("data:\(image.mimeType);base64,\(image.base64)")])
            }
            return ["type": "function_call_output", "call_id": .string(callId), "output": .array(output)]
        case .anthropic:
            var content: [JSONValue] = [["type": "text", "text": .string(text)]]
            for image in images {
                content.append(["type": "image", "source": ["type": "base64", "media_type": .string(image.mimeType),
                                                            "data": .string(image.base64)]])
            }
            return ["type": "tool_result", "tool_use_id": .string(callId), "content": .array(content), "is_error": .bool(isError)]
        }
    }
}

/// `execute_python` itself: runs a call's code in the right session and describes the result for a model.
/// The HTTP server, the MCP server and `codeinterp chat` all go through this type.
public final class PythonTool: Sendable {
    /// Where the code runs: this process's engine, or a server of the same data directory.
    public let executor: any CodeExecutor
    public let sessions: ConversationSessions
    public let urls: any FileURLProvider
    public let definition: ToolDefinition
    public let limits: Limits
    /// Caps on what goes back to the model.
    public static let maxStreamCharacters = 20_000
    public static let maxImages = 8
    public static let maxImageBytes: Int64 = 5 << 20

    public init(executor: any CodeExecutor, urls: any FileURLProvider, profile: String = "default", strict: Bool = true) throws {
        self.executor = executor
        self.urls = urls
        let sandboxProfile = try executor.sandboxProfile(profile)
        limits = sandboxProfile.limits
        definition = ToolDefinition(limits: sandboxProfile.limits, network: sandboxProfile.network, strict: strict)
        sessions = try ConversationSessions(executor: executor, profile: profile)
    }

    public convenience init(engine: ExecutionEngine, urls: any FileURLProvider, profile: String = "default",
                            strict: Bool = true) throws {
        try self.init(executor: engine, urls: urls, profile: profile, strict: strict)
    }

    /// The engine of this process, for what only it can do (uploads into sessions, deleting them: the server's
    /// routes and the Responses API, which always run on their own engine).
    public var engine: ExecutionEngine {
        guard let engine = executor.localEngine else {
            preconditionFailure("this PythonTool runs its code through a server: it has no engine of its own")
        }
        return engine
    }

    /// Answers a model's tool call (any supported shape) with the tool-result message of the same shape.
    /// Bad arguments become a result that tells the model what to fix; only an unrecognisable call throws.
    public func respond(to call: JSONValue, conversationId: String?) async throws(ToolCallError) -> JSONValue {
        let parsed = try ToolCall.parse(call)
        let outcome = await run(parsed, conversationId: conversationId)
        return outcome.message(for: parsed.shape, callId: parsed.callId)
    }

    public func run(_ call: ToolCall, conversationId: String?) async -> ToolOutcome {
        switch call.arguments {
        case .failure(let problem):
            let text = "The call was not run: \(problem.message)"
            return ToolOutcome(text: text, textOnly: text, images: [], files: [], isError: true, result: nil, sessionId: nil)
        case .success(let arguments):
            return await run(arguments, conversationId: conversationId)
        }
    }

    /// Runs the code in the conversation's session (created on first use); without a conversation, in the
    /// session the arguments name, or a new one.
    public func run(_ arguments: ExecutePythonArguments, conversationId: String?) async -> ToolOutcome {
        let binding: SessionBinding
        do {
            if let conversationId {
                binding = try await sessions.session(conversation: conversationId)
            } else {
                binding = try await sessions.session(named: arguments.sessionId)
            }
        } catch {
            return failure("The sandbox could not open a session: \(error)")
        }
        let result: ExecutionResult
        do {
            result = try await executor.run(ExecutionRequest(code: arguments.code, timeoutSeconds: arguments.timeoutSeconds,
                                                             sessionId: binding.sessionId))
        } catch let error as EngineError where error.code == .notFound {
            // The session vanished between lookup and run (expired right then): one more try in a fresh one.
            do {
                let fresh: SessionBinding
                if let conversationId {
                    fresh = try await sessions.session(conversation: conversationId)
                } else {
                    fresh = try await sessions.session(named: nil)
                }
                result = try await executor.run(ExecutionRequest(code: arguments.code, timeoutSeconds: arguments.timeoutSeconds,
                                                                 sessionId: fresh.sessionId))
                return describe(result, sessionId: fresh.sessionId, notice: fresh.notice)
            } catch {
                return failure("The sandbox failed to run the code: \(error)")
            }
        } catch let error as EngineError where error.code == .busy {
            return failure("The sandbox is busy: \(error). Nothing ran; call the tool again in a moment.")
        } catch let error as EngineError where error.code == .workerDied {
            return failure("The sandbox stopped while the code ran: \(error). It may have run in part; its variables "
                + "are gone. Check what it should have written before running it again.")
        } catch {
            return failure("The sandbox failed to run the code: \(error). Nothing ran; try again later.")
        }
        return describe(result, sessionId: binding.sessionId, notice: binding.notice)
    }

    func failure(_ text: String) -> ToolOutcome {
        ToolOutcome(text: text, textOnly: text, images: [], files: [], isError: true, result: nil, sessionId: nil)
    }

    /// Turns an execution result into what the model reads.
    public func describe(_ result: ExecutionResult, sessionId: String?, notice: String?) -> ToolOutcome {
        var head: [String] = []
        if let notice { head.append(notice) }
        if !result.stdout.isEmpty { head.append("stdout:\n" + Self.cap(result.stdout, truncated: result.truncated.stdout)) }
        if !result.stderr.isEmpty { head.append("stderr:\n" + Self.cap(result.stderr, truncated: result.truncated.stderr)) }
        if let value = result.result?["text/plain"] { head.append("value:\n" + Self.cap(value, truncated: false)) }
        if let error = result.error {
            var text = "error: \(error.name): \(error.value)"
            if !error.traceback.isEmpty { text += "\n" + error.traceback.joined(separator: "\n") }
            head.append(text)
        }
        if let stopped = statusText(result) { head.append(stopped) }

        var images: [ToolImage] = []
        var figureLinks: [String] = []
        var skipped = 0
        for display in result.displays {
            guard let stored = try? executor.store.file(id: display.fileId) else { continue }
            let file = FileReference(stored)
            let url = urls.url(for: file)
            figureLinks.append("- [\(file.name)](\(url))")
            guard display.mimeType.hasPrefix("image/"), images.count < Self.maxImages, file.sizeBytes <= Self.maxImageBytes,
                  let data = FileManager.default.contents(atPath: executor.store.blobPath(for: stored)) else {
                skipped += 1
                continue
            }
            images.append(ToolImage(mimeType: display.mimeType, base64: data.base64EncodedString(), file: file))
        }
        var files: [(file: FileReference, url: String)] = []
        var fileLines: [String] = []
        // Figures are also stored files; they are reported above, not as files of /mnt/data.
        let figureIds = Set(result.displays.map(\.fileId))
        for ref in result.files where !figureIds.contains(ref.id) && ref.path.hasPrefix("/mnt/data/") {
            let file = FileReference(ref, sessionId: sessionId)
            let url = urls.url(for: file)
            files.append((file, url))
            fileLines.append("- [\(file.relativePath)](\(url)) (\(file.mimeType), \(formatBytes(file.sizeBytes))); "
                + "link it for the user as sandbox:\(file.path)")
        }
        var tail: [String] = []
        if !fileLines.isEmpty { tail.append("files written to /mnt/data:\n" + fileLines.joined(separator: "\n")) }
        if head.isEmpty && result.displays.isEmpty && fileLines.isEmpty {
            head.append("(no output: the code printed nothing and its last line is not an expression)")
        }

        var withImages = head
        if !result.displays.isEmpty {
            var line = images.count == 1 ? "1 figure, attached as an image." : "\(images.count) figures, attached as images."
            if skipped > 0 { line += " \(skipped) more could not be attached:\n" + figureLinks.suffix(skipped).joined(separator: "\n") }
            withImages.append(line)
        }
        var textOnly = head
        if !figureLinks.isEmpty { textOnly.append("figures:\n" + figureLinks.joined(separator: "\n")) }
        return ToolOutcome(text: (withImages + tail).joined(separator: "\n\n"),
                           textOnly: (textOnly + tail).joined(separator: "\n\n"),
                           images: images, files: files, isError: result.status != .ok, result: result,
                           sessionId: sessionId)
    }

    func statusText(_ result: ExecutionResult) -> String? {
        let seconds = limits.wallSeconds.rounded() == limits.wallSeconds ? String(Int(limits.wallSeconds)) : String(limits.wallSeconds)
        switch result.status {
        case .ok, .error: return nil
        case .timeout: return "stopped: the code ran longer than the \(seconds) s limit and was killed."
        case .memoryLimit: return "stopped: the code used more than the \(formatBytes(limits.memoryBytes)) memory limit and was killed."
        case .outputLimit: return "stopped: the code wrote more output than the sandbox keeps."
        case .killed: return "stopped: the code was killed."
        case .blockedSyscall:
            return "stopped: the code made a system call the sandbox forbids (\(result.blockedSyscall ?? "unknown")) and was killed."
        }
    }

    static func cap(_ text: String, truncated: Bool) -> String {
        var out = text
        if out.count > maxStreamCharacters {
            let keep = maxStreamCharacters / 2
            out = String(out.prefix(keep)) + "\n... [\(out.count - 2 * keep) characters omitted] ...\n" + String(out.suffix(keep))
        }
        if out.hasSuffix("\n") { out.removeLast() }
        if truncated { out += "\n[output truncated by the sandbox]" }
        return out
    }

    // MARK: Links

    /// Rewrites `sandbox:/mnt/data/NAME` links in an answer of `conversationId` into URLs of its session's files.
    public func resolveLinks(in text: String, conversationId: String) async -> ResolvedText {
        guard let sessionId = try? await sessions.existingSession(conversation: conversationId) else {
            return LinkResolver.resolve(text, files: [], containerId: "", urls: urls)
        }
        return resolveLinks(in: text, sessionId: sessionId)
    }

    public func resolveLinks(in text: String, sessionId: String) -> ResolvedText {
        let files = ((try? executor.sessionFiles(sessionId: sessionId)) ?? []).map(FileReference.init)
        return LinkResolver.resolve(text, files: files, containerId: sessionId, urls: urls)
    }
}

