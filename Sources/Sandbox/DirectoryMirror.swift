import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// Makes one directory hold what another holds: how a session's files go between its interpreter's /mnt/data (a
/// tmpfs of the byte budget, alive as long as the interpreter) and its directory on disk (what a later interpreter,
/// or the engine after a restart, starts from).
///
/// Regular files whose size and modification time already match are left alone; the others are copied through a
/// temporary name and renamed over, with the source's modification time (so the next pass finds them unchanged).
/// Directories are mirrored to `maxDepth` levels, symbolic links recreated (never followed); FIFOs, sockets and
/// devices are left out; what the target holds and the source does not is removed. Every open is relative to a
/// directory descriptor with O_NOFOLLOW, and a file is read only while it is still a regular file: the source may
/// belong to a live interpreter.
struct DirectoryMirror {
    /// Owner of what is created in the target (a slot's uid), or nil for the caller's.
    var owner: uid_t?
    var maxDepth = 32

    struct Failure: Error, CustomStringConvertible {
        /// The path (relative to the mirrored directory) that could not be written, and the errno.
        var path: String
        var errno: Int32
        var description: String { "\(path.isEmpty ? "." : path): \(String(cString: strerror(errno)))" }
    }

    /// Mirrors `source` into `target` (both directory descriptors, left open). Throws at the first write that
    /// fails (ENOSPC: the target's file system is full); what was done until then stays.
    func mirror(from source: Int32, to target: Int32) throws(Failure) {
        try mirror(from: source, to: target, relative: "", depth: 0)
    }

    private func mirror(from source: Int32, to target: Int32, relative: String, depth: Int) throws(Failure) {
        let wanted = entries(of: source)
        // Removed first: what the source no longer has, or has as another kind, frees the space it takes.
        for (name, st) in entries(of: target) {
            if let kept = wanted[name], kind(kept) == kind(st), kind(st) != S_IFLNK { continue }
            remove(name, in: target, isDirectory: kind(st) == S_IFDIR)
        }
        let present = entries(of: target)
        for (name, st) in wanted.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            let readable = String(decoding: name.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let rel = relative.isEmpty ? readable : relative + "/" + readable
            switch kind(st) {
            case S_IFREG:
                if let there = present[name], there.st_size == st.st_size, there.st_mtim.tv_sec == st.st_mtim.tv_sec,
                   there.st_mtim.tv_nsec == st.st_mtim.tv_nsec {
                    continue
                }
                try copy(name, from: source, to: target, relative: rel)
            case S_IFDIR:
                guard depth + 1 < maxDepth else { continue }
                if present[name] == nil {
                    guard mkdirat(target, name, st.st_mode & 0o777) == 0 || errno == EEXIST else { throw Failure(path: rel, errno: errno) }
                    if let owner { fchownat(target, name, owner, owner, AT_SYMLINK_NOFOLLOW) }
                }
                let from = openat(source, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard from >= 0 else { continue }
                defer { close(from) }
                let to = openat(target, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard to >= 0 else { throw Failure(path: rel, errno: errno) }
                defer { close(to) }
                try mirror(from: from, to: to, relative: rel, depth: depth + 1)
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = readlinkat(source, name, &buffer, buffer.count - 1)
                guard n >= 0 else { continue }
                buffer[n] = 0
                guard symlinkat(buffer, target, name) == 0 else { throw Failure(path: rel, errno: errno) }
                if let owner { fchownat(target, name, owner, owner, AT_SYMLINK_NOFOLLOW) }
            default:
                continue
            }
        }
    }

    private func copy(_ name: [CChar], from source: Int32, to target: Int32, relative: String) throws(Failure) {
        let input = openat(source, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard input >= 0 else { return }
        defer { close(input) }
        // A regular file a moment ago may be a FIFO with a silent writer now: only read what is still a file.
        var st = stat()
        guard fstat(input, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return }
        let temp = ".mirror-" + UUID().uuidString.lowercased()
        let output = openat(target, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(st.st_mode & 0o777))
        guard output >= 0 else { throw Failure(path: relative, errno: errno) }
        var failed = copyContents(of: input, to: output)
        if failed == 0 {
            if let owner { fchown(output, owner, owner) }
            let times = [st.st_atim, st.st_mtim]
            futimens(output, times)
        }
        close(output)
        if failed == 0, renameat(target, temp, target, name) != 0 { failed = errno }
        if failed != 0 {
            unlinkat(target, temp, 0)
            throw Failure(path: relative, errno: failed)
        }
    }

    private func kind(_ st: stat) -> mode_t { st.st_mode & S_IFMT }

    /// Raw name (NUL-terminated: a name that is not UTF-8 is a file all the same) -> lstat of every entry.
    private func entries(of dirFd: Int32) -> [[CChar]: stat] {
        let copy = fcntl(dirFd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0, let dir = fdopendir(copy) else { return [:] }
        defer { closedir(dir) }
        // A duplicate shares the original's position: start from the first entry whatever was read before.
        rewinddir(dir)
        var result: [[CChar]: stat] = [:]
        let temporary = Array(".mirror-".utf8CString.dropLast())
        for name in directoryEntryRawNames(dir) where !name.starts(with: temporary) {
            var st = stat()
            if fstatat(dirFd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { result[name] = st }
        }
        return result
    }

    private func remove(_ name: [CChar], in dirFd: Int32, isDirectory: Bool) {
        if !isDirectory {
            unlinkat(dirFd, name, 0)
            return
        }
        let sub = openat(dirFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if sub >= 0 {
            for (child, st) in entries(of: sub) { remove(child, in: sub, isDirectory: kind(st) == S_IFDIR) }
            close(sub)
        }
        unlinkat(dirFd, name, AT_REMOVEDIR)
    }
}
