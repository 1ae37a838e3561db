#if canImport(Glibc)
import Glibc
#endif

/// The names in an open directory stream, without "." and "..". The caller owns (and closes) the stream.
public func directoryEntryNames(_ dir: OpaquePointer) -> [String] {
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// The names in the directory at `path`, or nil when it cannot be opened.
public func directoryEntryNames(atPath path: String) -> [String]? {
    guard let dir = opendir(path) else { return nil }
    defer { closedir(dir) }
    return directoryEntryNames(dir)
}
