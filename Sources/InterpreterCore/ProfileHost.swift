#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Facts about this host that Docker-format profiles test in `includes`/`excludes`.
enum ProfileHost {
    /// Docker's (Go) architecture names for the native architecture, plus the libseccomp one.
    static var dockerArchNames: [String] {
        #if arch(x86_64)
        ["amd64", "x86_64", "SCMP_ARCH_X86_64"]
        #elseif arch(arm64)
        ["arm64", "aarch64", "SCMP_ARCH_AARCH64"]
        #else
        [SandboxProfile.nativeArchitecture]
        #endif
    }

    /// The running kernel's version as (major, minor).
    static var kernelVersion: (Int, Int) {
        var u = utsname()
        guard uname(&u) == 0 else { return (0, 0) }
        let release = withUnsafeBytes(of: u.release) {
            String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return parseVersion(release) ?? (0, 0)
    }

    static func parseVersion(_ s: String) -> (Int, Int)? {
        let parts = s.split(whereSeparator: { !$0.isNumber }).prefix(2)
        guard let major = parts.first.flatMap({ Int($0) }) else { return nil }
        let minor = parts.count > 1 ? Int(parts[parts.index(after: parts.startIndex)]) ?? 0 : 0
        return (major, minor)
    }
}
