import Foundation
import Logging

/// Python packages the operator adds for every sandbox (`codeinterp packages`), beside the Debian ones: installed
/// with pip (from PyPI, or only from a folder of wheels) into `DATA/packages/site`, which the zygote puts on
/// sys.path (after the system's paths: an added package cannot replace numpy) and every sandbox sees read-only at
/// the same path. What was asked for and what got installed, with versions, is kept in `DATA/packages/packages.json`.
/// Each change installs the whole set again into a new directory and swaps it in, so a failed install changes
/// nothing. A worker started afterwards (a new `codeinterp run`) imports them; a running server replaces its worker
/// when the record changes (`restartWorkerWhenPackagesChange`).
public struct PythonPackages: Sendable {
    public struct Manifest: Codable, Sendable, Equatable {
        /// Requirements, pinned to the version installed (`name==1.2.3`).
        public var requested: [String] = []
        /// `--find-links` folders the set was installed from (then with `--no-index`: no network).
        public var findLinks: [String] = []
        /// Every distribution in the directory (dependencies too) and its version.
        public var installed: [String: String] = [:]

        enum CodingKeys: String, CodingKey {
            case requested, installed
            case findLinks = "find_links"
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let directory: String
    public var site: String { directory + "/site" }
    var manifestPath: String { directory + "/packages.json" }
    let python: String

    public init(dataDirectory: String, python: String = "/usr/bin/python3") {
        directory = dataDirectory + "/packages"
        self.python = python
    }

    public func manifest() -> Manifest {
        guard let data = FileManager.default.contents(atPath: manifestPath),
              let manifest = try? JSONDecoder().decode(Manifest.self, from: data) else { return Manifest() }
        return manifest
    }

    /// pip's normal form of a distribution name (PEP 503), from a requirement such as `Foo_Bar>=2`.
    static func normalizedName(_ requirement: String) -> String {
        let name = requirement.prefix { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }
        return name.lowercased().replacingOccurrences(of: "_", with: "-").replacingOccurrences(of: ".", with: "-")
    }

    /// Adds `requirements` to the set (a name already there is replaced) and installs the set.
    public func install(_ requirements: [String], findLinks: [String]) throws -> Manifest {
        var current = manifest()
        let names = Set(requirements.map(Self.normalizedName))
        let kept = current.requested.filter { !names.contains(Self.normalizedName($0)) }
        current.findLinks = Array(Set(current.findLinks + findLinks.map { URL(fileURLWithPath: $0).standardizedFileURL.path })).sorted()
        return try installSet(kept + requirements, findLinks: current.findLinks)
    }

    /// Takes `names` out of the set and installs what is left.
    public func remove(_ names: [String]) throws -> Manifest {
        let current = manifest()
        let drop = Set(names.map(Self.normalizedName))
        let unknown = drop.subtracting(current.requested.map(Self.normalizedName))
        guard unknown.isEmpty else { throw Failure(description: "not installed: \(unknown.sorted().joined(separator: ", "))") }
        return try installSet(current.requested.filter { !drop.contains(Self.normalizedName($0)) }, findLinks: current.findLinks)
    }

    private func installSet(_ requirements: [String], findLinks: [String]) throws -> Manifest {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fresh = directory + "/site.new-\(UUID().uuidString.prefix(8))"
        defer { try? fm.removeItem(atPath: fresh) }
        try fm.createDirectory(atPath: fresh, withIntermediateDirectories: true)
        if !requirements.isEmpty {
            var arguments = ["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-warn-script-location",
                             "--target", fresh]
            if !findLinks.isEmpty { arguments += ["--no-index"] + findLinks.flatMap { ["--find-links", $0] } }
            try run(python, arguments + requirements)
        }
        let installed = Self.distributions(in: fresh)
        var manifest = Manifest(requested: [], findLinks: findLinks, installed: installed)
        manifest.requested = requirements.map { requirement in
            let name = Self.normalizedName(requirement)
            guard let version = installed.first(where: { Self.normalizedName($0.key) == name })?.value else { return requirement }
            return "\(name)==\(version)"
        }
        // Readable by the sandboxes' uids, whatever the umask was.
        _ = try? run("/bin/chmod", ["-R", "a+rX", fresh])
        let old = directory + "/site.old"
        try? fm.removeItem(atPath: old)
        if fm.fileExists(atPath: site) { try fm.moveItem(atPath: site, toPath: old) }
        try fm.moveItem(atPath: fresh, toPath: site)
        try? fm.removeItem(atPath: old)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(manifest).write(to: URL(fileURLWithPath: manifestPath), options: .atomic)
        return manifest
    }

    /// Name → version of every `*.dist-info` in `directory`.
    static func distributions(in directory: String) -> [String: String] {
        var found: [String: String] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where entry.hasSuffix(".dist-info") {
            guard let text = try? String(contentsOfFile: "\(directory)/\(entry)/METADATA", encoding: .utf8) else { continue }
            var name: String?, version: String?
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.isEmpty { break }
                if line.hasPrefix("Name: ") { name = String(line.dropFirst(6)) }
                if line.hasPrefix("Version: ") { version = String(line.dropFirst(9)) }
            }
            if let name, let version { found[name] = version }
        }
        return found
    }

    private func run(_ executable: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.standardError
        try process.run()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: message, as: UTF8.self).split(separator: "\n").filter { !$0.contains("WARNING: Running pip as") }
            throw Failure(description: "\(URL(fileURLWithPath: executable).lastPathComponent) \(arguments.prefix(3).joined(separator: " ")) failed:\n"
                + text.suffix(15).joined(separator: "\n"))
        }
    }
}

extension ExecutionEngine {
    /// Replaces the worker (gracefully: `restartWorker`) each time the set of added packages changes, or the
    /// modules the profiles preload, until cancelled. Every `codeinterp packages install|remove` replaces the
    /// record (packages.json) once the new set is in place, whoever runs it and however it reaches the data
    /// directory, so its stamp is what is watched; a profile file that changes is read again for its `preload`.
    public func restartWorkerWhenPackagesChange(every interval: Duration = .seconds(1), logger: Logger) async {
        let record = PythonPackages(dataDirectory: configuration.dataDirectory).manifestPath
        var seen = FileStamp(path: record)
        var profiles = profileStamps()
        var modules = preloadModules(logger: logger)
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            var reason: String?
            let now = FileStamp(path: record)
            if now != seen {
                reason = "the added Python packages changed"
                seen = now
            }
            let nowProfiles = profileStamps()
            if nowProfiles != profiles {
                profiles = nowProfiles
                let wanted = preloadModules(logger: logger)
                if wanted != modules { reason = reason ?? "the modules the profiles preload changed" }
                modules = wanted
            }
            guard let reason else { continue }
            logger.info("\(reason): replacing the worker", metadata: ["record": "\(record)"])
            do { try await restartWorker(logger: logger) } catch {
                logger.error("cannot start a new worker; the old one goes on serving", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The profile files of the profile directories, by path.
    private func profileStamps() -> [String: FileStamp] {
        var stamps: [String: FileStamp] = [:]
        for directory in configuration.profileDirectories {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasSuffix(".json") {
                let path = directory + "/" + name
                if let stamp = FileStamp(path: path) { stamps[path] = stamp }
            }
        }
        return stamps
    }
}
