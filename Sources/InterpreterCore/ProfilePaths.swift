#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Paths and files of profiles, with POSIX calls: `realpath` keys the cycle check of `extends`, and a file that
/// cannot be read is reported in `strerror`'s words.
enum ProfilePaths {
    static func isPath(_ s: String) -> Bool { s.contains("/") || s.hasSuffix(".json") }

    static func join(_ a: String, _ b: String) -> String {
        if b.hasPrefix("/") || a.isEmpty { return b }
        return a.hasSuffix("/") ? a + b : a + "/" + b
    }

    static func dirname(_ p: String) -> String {
        guard let slash = p.lastIndex(of: "/") else { return "." }
        if slash == p.startIndex { return "/" }
        return String(p[..<slash])
    }

    static func basename(_ p: String) -> String {
        guard let slash = p.lastIndex(of: "/") else { return p }
        return String(p[p.index(after: slash)...])
    }

    static func stem(_ p: String) -> String {
        let b = basename(p)
        return b.hasSuffix(".json") ? String(b.dropLast(5)) : b
    }

    static func currentDirectory() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buf, buf.count) != nil else { return "." }
        return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func absolute(_ p: String) -> String {
        p.hasPrefix("/") ? p : join(currentDirectory(), p)
    }

    /// Removes "." and ".." lexically (no symlinks followed).
    static func normalize(_ p: String) -> String {
        let absolute = p.hasPrefix("/")
        var parts: [Substring] = []
        for c in p.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." {
                if let last = parts.last, last != ".." { parts.removeLast() } else if !absolute { parts.append(c) }
                continue
            }
            parts.append(c)
        }
        let joined = parts.joined(separator: "/")
        return absolute ? "/" + joined : (joined.isEmpty ? "." : joined)
    }

    /// A bare name is `directory/NAME.json`; a path is relative to `pathBase` (the extending file's directory) or to
    /// the current directory when nil.
    static func resolve(_ nameOrPath: String, directory: String, pathBase: String?) -> String {
        if isPath(nameOrPath) {
            if nameOrPath.hasPrefix("/") { return nameOrPath }
            if let base = pathBase { return join(base, nameOrPath) }
            return nameOrPath
        }
        return join(directory, nameOrPath + ".json")
    }

    /// A key for cycle detection: the real path when the file exists.
    static func canonical(_ p: String) -> String {
        if let r = realpath(p, nil) {
            defer { free(r) }
            return String(cString: r)
        }
        return normalize(absolute(p))
    }

    static func isFile(_ p: String) -> Bool {
        var st = stat()
        return stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    static func errnoMessage(_ e: Int32) -> String {
        guard let s = strerror(e) else { return "error \(e)" }
        return String(cString: s)
    }

    /// The whole file, or the reason it cannot be read.
    static func readFile(_ path: String) -> Result<[UInt8], ReadFailure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return .failure(ReadFailure(message: errnoMessage(errno))) }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(ReadFailure(message: errnoMessage(errno)))
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > 16 << 20 { return .failure(ReadFailure(message: "file larger than 16 MiB")) }
        }
        return .success(out)
    }

    struct ReadFailure: Error { var message: String }

    /// Names of the `*.json` files in a directory (for "did you mean").
    static func profileNames(in directory: String) -> [String] {
        (directoryEntryNames(atPath: directory) ?? []).filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }
}
