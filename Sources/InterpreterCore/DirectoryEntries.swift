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

/// The names in an open directory stream as raw, NUL-terminated bytes, without "." and "..". Use these to act on
/// the entries: a name that is not UTF-8 (code can make one) no longer names its file once decoded into a String.
public func directoryEntryRawNames(_ dir: OpaquePointer) -> [[CChar]] {
    var names: [[CChar]] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
            Array(bytes.prefix { $0 != 0 }.map { CChar(bitPattern: $0) }) + [0]
        }
        if name != [46, 0] && name != [46, 46, 0] { names.append(name) }
    }
    return names
}
