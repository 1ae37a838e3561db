import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call, named by what we were doing, with errno.
struct SystemCallError: Error, CustomStringConvertible {
    var operation: String
    var errno: Int32
    var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}

/// The one errno funnel: retries EINTR, turns -1 into a typed error naming the operation.
@discardableResult
func check(_ operation: @autoclosure () -> String, _ call: () -> Int32) throws(SystemCallError) -> Int32 {
    while true {
        let r = call()
        if r != -1 { return r }
        if errno == EINTR { continue }
        throw SystemCallError(operation: operation(), errno: errno)
    }
}

/// Writes a small file (cgroup and /proc knobs). Returns false on failure.
@discardableResult
func writeFile(_ path: String, _ text: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return writeAll(fd, Array(text.utf8))
}

func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}
