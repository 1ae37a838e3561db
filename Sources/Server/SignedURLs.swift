@preconcurrency import Crypto
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// HMAC-SHA256 signatures for file download URLs, so a browser can fetch `<img src>` without an API key.
/// The secret is 32 random bytes kept in `<data dir>/url-signing-secret` (mode 0600); restarts keep old URLs valid.
public struct URLSigner: Sendable {
    let key: SymmetricKey
    public let ttlSeconds: Int

    public init(secret: [UInt8], ttlSeconds: Int) {
        key = SymmetricKey(data: secret)
        self.ttlSeconds = ttlSeconds
    }

    /// Reads the secret file, creating it on first use.
    public static func loadOrCreateSecret(dataDirectory: String) throws -> [UInt8] {
        let path = dataDirectory + "/url-signing-secret"
        if let data = FileManager.default.contents(atPath: path), data.count >= 32 { return Array(data) }
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        try writePrivateFile(path: path, bytes: bytes)
        return bytes
    }

    public func signature(fileId: String, expires: Int) -> String {
        HMAC<SHA256>.authenticationCode(for: Self.signed(fileId: fileId, expires: expires), using: key).lowercaseHex
    }

    private static func signed(fileId: String, expires: Int) -> [UInt8] {
        Array("\(fileId.lowercased())\n\(expires)".utf8)
    }

    /// `?expires=...&sig=...` for a file, valid for `ttlSeconds` from `now`.
    public func query(fileId: String, now: Date = Date()) -> String {
        let expires = Int(now.timeIntervalSince1970) + ttlSeconds
        return "expires=\(expires)&sig=\(signature(fileId: fileId, expires: expires))"
    }

    public enum Verdict: Equatable, Sendable { case valid, expired, invalid }

    public func verify(fileId: String, expires: String?, sig: String?, now: Date = Date()) -> Verdict {
        guard let expires, let e = Int(expires), let sig, let mac = [UInt8](hex: sig),
              HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Self.signed(fileId: fileId, expires: e),
                                                     using: key)  // constant time
        else { return .invalid }
        return e >= Int(now.timeIntervalSince1970) ? .valid : .expired
    }
}

/// Writes a file only the service's user can read (created 0600, fsynced, renamed into place).
func writePrivateFile(path: String, bytes: [UInt8]) throws {
    let temp = path + ".tmp-\(getpid())"
    let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
    guard fd >= 0 else { throw ConfigurationError("cannot create \(temp): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            unlink(temp)
            throw ConfigurationError("cannot write \(temp): \(String(cString: strerror(errno)))")
        }
        offset += n
    }
    fchmod(fd, 0o600)
    fsync(fd)
    guard rename(temp, path) == 0 else {
        unlink(temp)
        throw ConfigurationError("cannot rename \(temp) to \(path): \(String(cString: strerror(errno)))")
    }
}
