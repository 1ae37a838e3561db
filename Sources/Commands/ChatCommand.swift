import ArgumentParser
import FileStore
import Foundation
import Logging
import Sandbox
import Synchronization
import Tools

struct ChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with a model that runs Python through codeinterp (the whole tool loop, in the terminal).",
        discussion: """
            The model is any OpenAI-compatible Chat Completions endpoint (--base-url, --model, the key from \
            $OPENAI_API_KEY or --api-key-env NAME), or a script that replays a recorded conversation (--script FILE: \
            no network, no key). --message TEXT (repeatable) runs those user turns and exits; otherwise each line \
            of standard input is a user turn. Files the code makes are saved in --out DIR with transcript.md; \
            the conversation is stored, and --resume ID continues it (same session, same files). When a \
            `codeinterp serve` runs for the same data directory, the code runs there (through its local socket); \
            otherwise, with --standalone or another --profile, in an engine of this command's own.
            """)

    @Option(help: "Replay the assistant turns of this JSON script instead of calling a model.")
    var script: String?

    @Option(name: .customLong("base-url"), help: "OpenAI-compatible API base URL (default: $OPENAI_BASE_URL or https://api.openai.com/v1).")
    var baseURL: String?

    @Option(help: "Model name (default: $OPENAI_MODEL or gpt-4.1-mini).")
    var model: String?

    @Option(name: .customLong("api-key-env"), help: "Environment variable holding the API key.")
    var apiKeyEnv = "OPENAI_API_KEY"

    @Option(name: .customLong("message"), help: "A user message to send (repeatable); the command exits after the last.")
    var messages: [String] = []

    @Option(help: "Continue the stored conversation with this id.")
    var resume: String?

    @Option(help: "Directory for the transcript and the files the code produced.")
    var out: String?

    @Option(name: .customLong("max-rounds"), help: "Model calls allowed per user message before giving up.")
    var maxRounds = 8

    @Option(help: "Sandbox profile the code runs under.")
    var profile = "default"

    @Flag(help: "Start an engine of this command's own even when a server runs for the data directory.")
    var standalone = false

    @OptionGroup var engineOptions: EngineOptions

    func validate() throws {
        if maxRounds < 1 { throw ValidationError("--max-rounds must be at least 1") }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let provider: any ChatProvider
        if let script {
            do { provider = try ScriptedProvider(contentsOf: script) } catch {
                fail("\(error)")
            }
        } else {
            guard let key = environment[apiKeyEnv], !key.isEmpty else {
                fail("no API key: set $\(apiKeyEnv) (or name another variable with --api-key-env), or replay a script with --script FILE")
            }
            provider = OpenAIChatProvider(baseURL: baseURL ?? environment["OPENAI_BASE_URL"] ?? "https://api.openai.com/v1",
                                          model: model ?? environment["OPENAI_MODEL"] ?? "gpt-4.1-mini", apiKey: key)
        }

        var config = EngineConfiguration.defaults(dataDirectory: engineOptions.dataDirectory)
        if let slots = engineOptions.slots { config.slots = slots }
        let executor = try CommandExecutor.make(configuration: config, standalone: standalone, profile: profile,
                                                logger: quietLogger(), notice: { Terminal.err.write("\n[codeinterp] \($0)\n", .warning) })
        defer { executor.shutdown() }

        let outDirectory = out.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        if let outDirectory { try FileManager.default.createDirectory(atPath: outDirectory, withIntermediateDirectories: true) }
        let urls: any FileURLProvider = outDirectory.map { OutDirectoryURLs(directory: $0, store: executor.store) }
            ?? LocalFileURLs(store: executor.store)
        let tool: PythonTool
        do { tool = try PythonTool(executor: executor.executor, urls: urls, profile: profile) } catch { fail("\(error)") }

        let conversationId: String
        if let resume {
            guard try tool.sessions.tables.conversationExists(resume) else { fail("no stored conversation \(resume)") }
            conversationId = resume
        } else {
            conversationId = "chat_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        }
        let loop = ChatLoop(conversationId: conversationId, provider: provider, tool: tool, maxRounds: maxRounds)
        let transcript = ChatTranscript(path: outDirectory.map { $0 + "/transcript.md" })
        if resume != nil {
            let count = (try? loop.history().count) ?? 0
            Terminal.err.write("resuming conversation \(conversationId) (\(count) stored messages)\n", .dim)
        } else {
            transcript.title(conversationId)
        }

        var failed = false
        let interactive = messages.isEmpty
        var pending = messages
        while true {
            let text: String
            if interactive {
                if isatty(0) == 1 { Terminal.out.write("you> ", .prompt) }
                guard let line = readLine() else { break }
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                text = line
            } else {
                guard !pending.isEmpty else { break }
                text = pending.removeFirst()
                Terminal.out.write(Terminal.out.paint("you> ", .prompt) + "\(text)\n")
            }
            transcript.user(text)
            Terminal.out.write("assistant> ", .prompt)
            do {
                try await loop.send(text) { event in
                    Self.show(event)
                    transcript.record(event)
                }
            } catch {
                Terminal.out.write("\n")
                Terminal.err.write("codeinterp chat: \(error)\n", .error)
                transcript.failure(error)
                failed = true
                if !interactive { break }
            }
        }
        Terminal.err.write("conversation \(conversationId) (continue it with --resume \(conversationId))\n", .dim)
        if failed { throw ExitCode(1) }
    }

    private func fail(_ message: String) -> Never {
        Terminal.err.write("codeinterp chat: \(message)\n", .error)
        Foundation.exit(2)
    }

    /// What the terminal shows of the conversation as it goes.
    static func show(_ event: ChatEvent) {
        let out = Terminal.out
        switch event {
        case .text(let delta):
            out.write(delta)
        case .turn:
            break  // its text was streamed; its calls follow
        case .toolCall(_, let code):
            out.write("\n" + out.paint("  [execute_python]", .dim) + "\n" + out.paint(indent(code ?? "", "  | "), .dim) + "\n")
        case .toolProblem(_, let message):
            out.write("\n" + out.paint("  [execute_python] bad call: \(message)", .warning) + "\n")
        case .toolResult(_, let outcome):
            let status = outcome.result?.status.rawValue ?? "failed"
            var lines = [out.paint("  [result: \(status)]", outcome.isError ? .warning : .dim)]
            if let r = outcome.result {
                if !r.stdout.isEmpty { lines.append(indent(clip(r.stdout), "  > ")) }
                if !r.stderr.isEmpty { lines.append(out.paint(indent(clip(r.stderr), "  2> "), .stderr)) }
                if let value = r.result?["text/plain"] { lines.append(indent(clip(value), "  = ")) }
                if let e = r.error { lines.append(out.paint("  ! \(e.name): \(e.value)", .error)) }
            } else {
                lines.append(out.paint(indent(outcome.text, "  ! "), .error))
            }
            for image in outcome.images { lines.append(out.paint("  figure: \(image.file.name)", .dim)) }
            for (file, url) in outcome.files { lines.append(out.paint("  file: \(file.relativePath) -> \(url)", .dim)) }
            out.write(lines.joined(separator: "\n") + "\n" + out.paint("assistant> ", .prompt))
        case .notice(let text):
            Terminal.err.write("\n[codeinterp] \(text)\n", .warning)
        case .answer(let resolved):
            out.write("\n")
            for citation in resolved.citations { out.write("  link: \(citation.filename) -> \(citation.url)\n", .dim) }
            for name in resolved.unresolved {
                out.write("  link not found: sandbox:\(name) (no such file in the session)\n", .warning)
            }
        }
    }

    static func indent(_ text: String, _ prefix: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { prefix + $0 }.joined(separator: "\n")
    }

    static func clip(_ text: String) -> String {
        let trimmed = text.hasSuffix("\n") ? String(text.dropLast()) : text
        let lines = trimmed.split(separator: "\n", omittingEmptySubsequences: false)
        return lines.count > 12 ? lines.prefix(12).joined(separator: "\n") + "\n... (\(lines.count - 12) more lines)" : trimmed
    }
}

/// URLs of files copied into the chat's output directory (copied when a URL is first made for them), so every
/// link the user sees points at a file next to the transcript.
struct OutDirectoryURLs: FileURLProvider {
    let directory: String
    let store: FileStore

    func url(for file: FileReference) -> String {
        let target = URL(fileURLWithPath: directory).appendingPathComponent(file.relativePath)
        let fm = FileManager.default
        if let source = store.blobPath(id: file.id) {
            try? fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? fm.removeItem(at: target)
            try? fm.copyItem(atPath: source, toPath: target.path)
        }
        return target.absoluteString
    }
}
