import ArgumentParser
import Foundation
import InterpreterCore
import Sandbox

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run Python code in a sandbox and show everything it produced.",
        discussion: """
            When a `codeinterp serve` runs for the same data directory, the code runs there (through its local \
            socket, in milliseconds); otherwise, or with --standalone, in an engine of this command's own (which \
            first imports the scientific stack: seconds). --profile, --memory and --network run standalone.

            Exit status: 0 when the code ran without error, 1 when it raised, 3 when a limit stopped it (timeout, \
            memory, output) or it was killed, 2 when the sandbox itself failed.
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
        let result: ExecutionResult
        if !standalone, profile == "default", memory == nil, !network,
           let server = LocalServerClient.connect(dataDirectory: config.dataDirectory) {
            do {
                result = try await server.execute(code: code, timeoutSeconds: timeout) { stream, text in
                    guard streamLive else { return }
                    (stream == .stdout ? FileHandle.standardOutput : FileHandle.standardError).write(Data(text.utf8))
                }
            } catch {
                FileHandle.standardError.write(Data("codeinterp: \(error)\n".utf8))
                throw ExitCode(2)
            }
        } else {
            if let slots = engineOptions.slots { config.slots = slots }
            // One execution: nothing to fork ahead for.
            config.warmChildren = 0
            config.warmSessions = 0
            let engine = try ExecutionEngine(configuration: config, logger: quietLogger())
            defer { engine.shutdown() }
            let request = ExecutionRequest(code: code, profile: profile, timeoutSeconds: timeout,
                                           memoryBytes: memory.flatMap(parseSize), network: network)
            do {
                result = try await engine.execute(request) { stream, bytes in
                    guard streamLive else { return }
                    (stream == .stdout ? FileHandle.standardOutput : FileHandle.standardError).write(Data(bytes))
                }
            } catch let error as EngineError {
                FileHandle.standardError.write(Data("codeinterp: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }

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
        var err = ""
        if result.truncated.stdout { err += "[codeinterp] stdout truncated\n" }
        if result.truncated.stderr { err += "[codeinterp] stderr truncated\n" }
        if let value = result.result?["text/plain"] { print(value) }
        if let e = result.error {
            if e.traceback.isEmpty { err += "\(e.name): \(e.value)\n" } else { err += e.traceback.map { $0.hasSuffix("\n") ? $0 : $0 + "\n" }.joined() }
        }
        if result.status != .ok && result.status != .error { err += "[codeinterp] status: \(result.status.rawValue)\n" }
        FileHandle.standardError.write(Data(err.utf8))
        let shown = result.files
        guard !shown.isEmpty else { return }
        print("\nfiles:")
        for f in shown {
            let where_ = out.map { "\($0)/\(f.name)" } ?? (f.storePath ?? "")
            let label = f.path.isEmpty ? f.name : f.path
            print("  \(label)  \(f.sizeBytes) bytes  \(f.mimeType)  id \(f.id)  \(where_)")
        }
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
