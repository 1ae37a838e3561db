import ArgumentParser
import Foundation
import InterpreterCore
import Sandbox
import Server
import Synchronization

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run Python code in a sandbox and show everything it produced.",
        discussion: """
            When a `codeinterp serve` runs for the same data directory, the code runs there (through its local \
            socket, in milliseconds); otherwise, or with --standalone, in an engine of this command's own (which \
            first imports the scientific stack: seconds). --profile, --memory and --network run standalone.

            Exit status: 0 when the code ran without error, 1 when it raised, 3 when a limit stopped it (timeout, \
            memory, output) or it was killed, 2 when the sandbox itself failed, 64 for a usage error (an unknown \
            option, a missing or invalid argument).
            """)

    @Argument(help: "A Python file to run, or - to read the code from standard input.")
    var file: String?

    @Option(name: .short, help: "Code to run (instead of a file).")
    var c: String?

    @Flag(help: "Print the full result object as JSON instead of the human-readable output.")
    var json = false

    @Option(help: "Copy the files the code produced into this directory.")
    var out: String?

    @Option(help: "Wall-clock limit in seconds (can only tighten the profile's).")
    var timeout: Double?

    @Option(help: "Memory limit, e.g. 512m or 2g (can only tighten the profile's).")
    var memory: String?

    @Option(help: "Sandbox profile: a name from sandbox-profiles/ or a path to a profile file.")
    var profile = "default"

    @Flag(help: "Allow network access (only if the profile allows it).")
    var network = false

    @Flag(help: "Start an engine of this command's own even when a server runs for the data directory.")
    var standalone = false

    @OptionGroup var engineOptions: EngineOptions

    func validate() throws {
        if (c == nil) == (file == nil) { throw ValidationError("give a file, - for standard input, or -c CODE") }
        if let memory, parseSize(memory) == nil { throw ValidationError("--memory: expected a size such as 512m or 2g, got \"\(memory)\"") }
    }

    func run() async throws {
        let code: String
        if let c {
            code = c
        } else if file == "-" {
            code = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let data = FileManager.default.contents(atPath: file!) else { throw ValidationError("cannot read \(file!)") }
            code = String(decoding: data, as: UTF8.self)
        }

        var config = EngineConfiguration.defaults(dataDirectory: engineOptions.dataDirectory)
        let streamLive = !json
        // On a terminal the code's stderr is coloured, a whole character at a time.
        let stderrText = Mutex(UTF8Chunker())
        let result: ExecutionResult
        // Output as it comes; on a terminal the code's stderr is coloured, a whole character at a time.
        let show: @Sendable (OutputStreamKind, [UInt8]) -> Void = { stream, bytes in
            guard streamLive else { return }
            if stream == .stderr && Terminal.err.colours {
                Terminal.err.write(stderrText.withLock { $0.append(bytes) }, .stderr)
            } else {
                (stream == .stdout ? Terminal.out : Terminal.err).write(Data(bytes))
            }
        }
        if !standalone, profile == "default", memory == nil, !network,
           let server = LocalServerClient.connect(dataDirectory: config.dataDirectory) {
            do {
                result = try await server.execute(code: code, timeoutSeconds: timeout) { stream, text in show(stream, Array(text.utf8)) }
            } catch {
                Terminal.err.write("codeinterp: \(error)\n", .error)
                throw ExitCode(2)
            }
        } else {
            if let slots = engineOptions.slots { config.slots = slots }
            // One execution: nothing to fork ahead for.
            config.warmChildren = 0
            config.warmSessions = 0
            let request = ExecutionRequest(code: code, profile: profile, timeoutSeconds: timeout,
                                           memoryBytes: memory.flatMap(parseSize), network: network)
            do {
                let engine = try ExecutionEngine(configuration: config, logger: quietLogger())
                defer { engine.shutdown() }
                result = try await engine.execute(request, output: show)
            } catch {
                Terminal.err.write("codeinterp: \(error)\n", .error)
                throw ExitCode(2)
            }
        }
        Terminal.err.write(stderrText.withLock { $0.flush() }, .stderr)

        if let out { try copyFiles(result.files, to: out) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            FileHandle.standardOutput.write(try encoder.encode(result) + Data("\n".utf8))
        } else {
            printHuman(result)
        }
        switch result.status {
        case .ok: return
        case .error: throw ExitCode(1)
        default: throw ExitCode(3)
        }
    }

    private func printHuman(_ result: ExecutionResult) {
        let err = Terminal.err
        if result.truncated.stdout { err.write("[codeinterp] stdout truncated\n", .warning) }
        if result.truncated.stderr { err.write("[codeinterp] stderr truncated\n", .warning) }
        if let value = result.result?["text/plain"] { Terminal.out.write(value + "\n") }
        if let e = result.error {
            let text = e.traceback.isEmpty ? "\(e.name): \(e.value)\n" : e.traceback.map { $0.hasSuffix("\n") ? $0 : $0 + "\n" }.joined()
            err.write(text, .error)
        }
        if result.status != .ok && result.status != .error { err.write("[codeinterp] status: \(result.status.rawValue)\n", .warning) }
        guard !result.files.isEmpty else { return }
        var listing = "\nfiles:\n"
        for f in result.files {
            let label = f.path.isEmpty ? f.name : f.path
            let copy = out.map { "\($0)/\(f.name)" } ?? (f.storePath ?? "")
            listing += "  \(label)  \(f.sizeBytes) bytes  \(f.mimeType)  " + Terminal.out.paint("id \(f.id)  \(copy)", .dim) + "\n"
        }
        Terminal.out.write(listing)
    }

    private func copyFiles(_ files: [StoredFileRef], to directory: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for f in files {
            guard let source = f.storePath else { continue }
            // Keep the path under /mnt/data (sub/dir/x.csv stays sub/dir/x.csv); figures use their own names.
            let relative = f.path.hasPrefix("/mnt/data/") ? String(f.path.dropFirst("/mnt/data/".count)) : f.name
            let target = URL(fileURLWithPath: directory).appendingPathComponent(relative)
            try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? fm.removeItem(at: target)
            try fm.copyItem(atPath: source, toPath: target.path)
        }
    }
}

/// "512m", "2g", "1048576", "64k" -> bytes.
func parseSize(_ text: String) -> Int64? {
    let t = text.lowercased().trimmingCharacters(in: .whitespaces)
    let units: [(String, Int64)] = [("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10), ("gb", 1 << 30), ("mb", 1 << 20),
                                    ("kb", 1 << 10), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10), ("b", 1)]
    for (suffix, scale) in units where t.hasSuffix(suffix) {
        guard let n = Double(t.dropLast(suffix.count)), n > 0 else { return nil }
        return Int64(n * Double(scale))
    }
    guard let n = Int64(t), n > 0 else { return nil }
    return n
}
