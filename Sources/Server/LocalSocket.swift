import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The server's Unix socket in its data directory (`codeinterp.sock`, mode 0600 in a 0700 directory): the CLI
/// of the same user sends `codeinterp run` there instead of starting an engine of its own. Who can open the socket
/// is already trusted with everything in the data directory, so requests on it need no API key.
public enum LocalSocket {
    public static let fileName = "codeinterp.sock"

    public static func path(dataDirectory: String) -> String { dataDirectory + "/" + fileName }

    /// Whether `path` can be a socket address: NIO's rule, which the bind (Hummingbird's `.unixDomainSocket`)
    /// applies, at most 103 bytes (what fits `sun_path` on every platform NIO supports).
    public static func fits(_ path: String) -> Bool { (try? SocketAddress(unixDomainSocketPath: path)) != nil }

    /// Whether a server accepts connections on `path` now. A blocking `connect(2)` to NIO's address: the CLI asks
    /// this once, synchronously, before it starts anything, where a NIO client would first need an event loop.
    public static func isLive(_ path: String) -> Bool {
        guard let address = try? SocketAddress(unixDomainSocketPath: path) else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return address.withSockAddr { connect(fd, $0, socklen_t($1)) } == 0
    }
}

/// Runs a service the server can do without: when it fails (another server took the socket between the check and
/// the bind), that is logged and the server goes on serving TCP until it is told to stop.
struct DispensableService: Service {
    let base: any Service
    let what: String
    let logger: Logger

    func run() async throws {
        do { try await base.run() } catch {
            logger.warning("\(what) stopped; the server goes on without it", metadata: ["error": "\(error)"])
        }
        // Returning would end the whole group.
        try? await gracefulShutdown()
    }
}

/// The socket file this server made, so that it removes its own and never a later server's.
final class LocalSocketFile: Sendable {
    let path: String
    private let inode = Mutex<UInt64?>(nil)

    init(path: String) { self.path = path }

    func bound() {
        var st = stat()
        if stat(path, &st) == 0 { inode.withLock { $0 = UInt64(st.st_ino) } }
    }

    func remove() {
        var st = stat()
        guard let mine = inode.withLock({ $0 }), stat(path, &st) == 0, UInt64(st.st_ino) == mine else { return }
        unlink(path)
    }
}

extension CodeInterpServer {
    /// The application on the local socket (same routes; the auth middleware lets its requests through), or nil
    /// when another server already answers there or the path is too long for a socket.
    func makeLocalApplication(_ file: LocalSocketFile) -> (any Service)? {
        let path = file.path
        guard LocalSocket.fits(path) else {
            logger.warning("no local socket: the data directory's path is too long for one", metadata: ["path": "\(path)"])
            return nil
        }
        if LocalSocket.isLive(path) {
            logger.warning("no local socket: another server answers on it", metadata: ["path": "\(path)"])
            return nil
        }
        unlink(path)  // left by a server that did not stop cleanly
        let logger = logger
        let app = Application(
            router: buildRouter(),
            configuration: .init(address: .unixDomainSocket(path: path), serverName: "codeinterp"),
            onServerRunning: { _ in
                chmod(path, 0o600)
                file.bound()
                logger.info("listening on the local socket", metadata: ["path": "\(path)"])
            },
            logger: logger)
        return DispensableService(base: app, what: "the local socket", logger: logger)
    }
}
