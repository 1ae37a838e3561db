import FileStore
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// Collects what the code left in its /mnt/data into the store. Runs only after every process of the execution is
/// dead, so nothing can swap a file for a symlink under it; still, every open is relative to a directory descriptor
/// with O_NOFOLLOW, and only regular files are taken.
///
/// In a session the interpreter outlives the collection; the descriptor-relative, no-follow opens are what keep a
/// file swapped for a symlink by a background thread from being read through the link.
struct FileCollector {
    var limits: Limits
    var store: FileStore
    var sessionId: String?
    var retention: Duration

    struct Outcome {
        var files: [StoredFile] = []
        /// What was left out and why: the first `maxListedSkips`, then how many more (a million files must not
        /// become a million lines of stderr).
        var skipped: [String] = []
        var unlistedSkips = 0
        /// Every regular file found (relative path -> stamp), collected or unchanged.
        var seen: [String: FileStamp] = [:]
        /// Files the store failed to keep (a full disk), with why: not a limit the code chose to exceed.
        var unstored: [String] = []

        mutating func skip(_ reason: String) {
            if skipped.count < FileCollector.maxListedSkips { skipped.append(reason) } else { unlistedSkips += 1 }
        }
    }

    static let maxListedSkips = 20

    /// Collects the regular files under `workdir`, except those whose stamp is in `known` unchanged (inputs
    /// copied in, or files a session's earlier cells already produced).
    func collect(workdir: String, known: [String: FileStamp] = [:]) -> Outcome {
        let root = open(workdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard root >= 0 else { return Outcome() }
        return collect(root: root, known: known)
    }

    /// The same for the directory open as `directory` (left open for the caller).
    func collect(directory: Int32, known: [String: FileStamp] = [:]) -> Outcome {
        let root = fcntl(directory, F_DUPFD_CLOEXEC, 0)
        guard root >= 0 else { return Outcome() }
        return collect(root: root, known: known)
    }

    /// Walks from `root`, which it closes.
    private func collect(root: Int32, known: [String: FileStamp]) -> Outcome {
        var outcome = Outcome()
        var bytes: Int64 = 0
        walk(dirFd: root, relative: "", depth: 0, bytes: &bytes, outcome: &outcome, known: known)
        outcome.files.sort { $0.path < $1.path }
        if outcome.unlistedSkips > 0 { outcome.skipped.append("and \(outcome.unlistedSkips) more") }
        return outcome
    }

    private func walk(dirFd: Int32, relative: String, depth: Int, bytes: inout Int64, outcome: inout Outcome,
                      known: [String: FileStamp]) {
        guard let dir = fdopendir(dirFd) else {
            close(dirFd)
            return
        }
        defer { closedir(dir) }
        for name in directoryEntryNames(dir).sorted() {
            let rel = relative.isEmpty ? name : "\(relative)/\(name)"
            var st = stat()
            guard fstatat(dirFd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                guard depth + 1 < limits.outputDepth else {
                    outcome.skip("\(rel)/ (deeper than \(limits.outputDepth) levels)")
                    continue
                }
                let sub = openat(dirFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if sub >= 0 { walk(dirFd: sub, relative: rel, depth: depth + 1, bytes: &bytes, outcome: &outcome, known: known) }
            case S_IFREG:
                let stamp = FileStamp(st)
                outcome.seen[rel] = stamp
                if known[rel] == stamp { continue }
                guard outcome.files.count + outcome.unstored.count < limits.outputFiles else {
                    outcome.skip("\(rel) (more than \(limits.outputFiles) files)")
                    continue
                }
                guard bytes + Int64(st.st_size) <= limits.outputBytes else {
                    outcome.skip("\(rel) (over the \(limits.outputBytes)-byte output limit)")
                    continue
                }
                let fd = openat(dirFd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
                guard fd >= 0 else { continue }
                defer { close(fd) }
                // A session's interpreter lives on while this runs: what was a regular file a moment ago may now
                // be a FIFO with a silent writer, whose read would wait forever. Only read what is still a file.
                var opened = stat()
                guard fstat(fd, &opened) == 0, opened.st_mode & S_IFMT == S_IFREG else { continue }
                do {
                    let file = try store.store(fd: fd, name: name, path: "/mnt/data/\(rel)", source: "assistant",
                                               sessionId: sessionId, retention: retention, maxBytes: limits.outputBytes - bytes)
                    bytes += file.sizeBytes
                    outcome.files.append(file)
                } catch let error as FileStoreError where error.code == .tooLarge {
                    // It grew past the output limit while being read.
                    outcome.skip("\(rel) (over the \(limits.outputBytes)-byte output limit)")
                } catch {
                    // The store left nothing of it behind; say so rather than return a result without it.
                    outcome.unstored.append("\(rel) (\(error))")
                }
            default:
                // Symlinks, fifos, sockets, devices: never followed, never collected.
                continue
            }
        }
    }
}

/// What tells a changed file from an unchanged one without reading it.
struct FileStamp: Equatable, Sendable {
    var size: Int64
    var modified: Int64
    var inode: UInt64

    init(_ st: stat) {
        size = Int64(st.st_size)
        modified = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        inode = UInt64(st.st_ino)
    }

    /// The stamp of `path` (not following a final symlink), or nil.
    init?(path: String) {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        self.init(st)
    }

    /// The stamp of `name` in the directory open as `dirFd` (not following a symlink), or nil.
    init?(at dirFd: Int32, name: String) {
        var st = stat()
        guard fstatat(dirFd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        self.init(st)
    }
}

/// Removes a directory tree without following symlinks.
func removeTree(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    if fd >= 0 { removeContents(of: fd) }
    rmdir(path)
}

private func removeContents(of dirFd: Int32) {
    guard let dir = fdopendir(dirFd) else { close(dirFd); return }
    defer { closedir(dir) }
    // Raw names: a file whose name is not UTF-8 must go too, or the directory (and a session) could never be removed.
    for name in directoryEntryRawNames(dir) {
        if unlinkat(dirFd, name, 0) == 0 { continue }
        let sub = openat(dirFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if sub >= 0 { removeContents(of: sub) }
        unlinkat(dirFd, name, AT_REMOVEDIR)
    }
}
