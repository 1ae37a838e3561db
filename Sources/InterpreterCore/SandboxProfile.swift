#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where something was written: a profile file (or "<inline>"), 1-based line and column.
public struct SourceLocation: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var source: String
    public var line: Int
    public var column: Int

    public init(source: String, line: Int, column: Int) {
        self.source = source
        self.line = line
        self.column = column
    }

    public var description: String { "\(source):\(line):\(column)" }
}

/// A problem in a profile, located: `default.json:12:5: unknown key "netwrok" (did you mean "network"?)`.
/// `line` and `column` are 0 when the problem has no place in a file (for example a file that cannot be read).
public struct ProfileError: Error, CustomStringConvertible, Equatable, Sendable {
    public var source: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(source: String, line: Int, column: Int, message: String) {
        self.source = source
        self.line = line
        self.column = column
        self.message = message
    }

    public init(_ location: SourceLocation, _ message: String) {
        self.init(source: location.source, line: location.line, column: location.column, message: message)
    }

    public var description: String {
        line > 0 ? "\(source):\(line):\(column): \(message)" : "\(source): \(message)"
    }
}

/// A seccomp action as the OCI / Docker profile format spells it.
///
/// The kill actions (`kill`, `killProcess`, `killThread`) and `trap` are all compiled to `SCMP_ACT_TRAP`: the worker's
/// child installs a SIGSYS handler that records the blocked call and then kills the whole process, so the result can
/// say which call was blocked.
public enum SeccompAction: String, Sendable, Equatable, CaseIterable {
    case allow = "SCMP_ACT_ALLOW"
    case errno = "SCMP_ACT_ERRNO"
    case kill = "SCMP_ACT_KILL"
    case killProcess = "SCMP_ACT_KILL_PROCESS"
    case killThread = "SCMP_ACT_KILL_THREAD"
    case trap = "SCMP_ACT_TRAP"
    case log = "SCMP_ACT_LOG"
    case trace = "SCMP_ACT_TRACE"

    /// The process dies (through the SIGSYS handler) when a call hits this action.
    public var kills: Bool {
        switch self {
        case .kill, .killProcess, .killThread, .trap: true
        default: false
        }
    }

    /// The call runs in the kernel (ALLOW and LOG; TRACE too when a tracer is attached).
    public var letsCallRun: Bool {
        switch self {
        case .allow, .log, .trace: true
        default: false
        }
    }

    /// `errnoRet` means something for this action (the errno, or the tracer's message for TRACE).
    public var takesErrnoRet: Bool { self == .errno || self == .trace }
}

/// An argument comparison operator, OCI spelling.
public enum SeccompOperator: String, Sendable, Equatable, CaseIterable {
    case notEqual = "SCMP_CMP_NE"
    case lessThan = "SCMP_CMP_LT"
    case lessOrEqual = "SCMP_CMP_LE"
    case equal = "SCMP_CMP_EQ"
    case greaterOrEqual = "SCMP_CMP_GE"
    case greaterThan = "SCMP_CMP_GT"
    /// `(arg & value) == valueTwo`.
    case maskedEqual = "SCMP_CMP_MASKED_EQ"
}

/// One argument condition of a rule: `args[index] op value` (for MASKED_EQ: `args[index] & value == valueTwo`).
/// Comparisons are on the full 64-bit register, as libseccomp does them.
public struct SeccompArg: Sendable, Equatable, Hashable {
    public var index: Int
    public var value: UInt64
    public var valueTwo: UInt64
    public var op: SeccompOperator

    public init(index: Int, value: UInt64, valueTwo: UInt64 = 0, op: SeccompOperator) {
        self.index = index
        self.value = value
        self.valueTwo = valueTwo
        self.op = op
    }

    /// Whether an argument with this value satisfies the comparison.
    public func matches(_ argument: UInt64) -> Bool {
        switch op {
        case .notEqual: argument != value
        case .lessThan: argument < value
        case .lessOrEqual: argument <= value
        case .equal: argument == value
        case .greaterOrEqual: argument >= value
        case .greaterThan: argument > value
        case .maskedEqual: argument & value == valueTwo
        }
    }
}

/// One entry of `syscalls`: the same action for every name, when all `args` conditions hold.
public struct SeccompRule: Sendable, Equatable {
    public var names: [String]
    public var action: SeccompAction
    public var args: [SeccompArg]
    public var errnoRet: Int?
    public var comment: String?
    /// Where the rule object starts.
    public var location: SourceLocation
    /// Where each name is written (parallel to `names`), for errors about one name.
    public var nameLocations: [SourceLocation]

    public init(names: [String], action: SeccompAction, args: [SeccompArg] = [], errnoRet: Int? = nil,
                comment: String? = nil, location: SourceLocation = SourceLocation(source: "<inline>", line: 0, column: 0),
                nameLocations: [SourceLocation]? = nil) {
        self.names = names
        self.action = action
        self.args = args
        self.errnoRet = errnoRet
        self.comment = comment
        self.location = location
        self.nameLocations = nameLocations ?? Array(repeating: location, count: names.count)
    }

    /// The location of `names[i]`.
    public func location(ofName i: Int) -> SourceLocation {
        i < nameLocations.count ? nameLocations[i] : location
    }
}

/// The seccomp part of a profile (OCI runtime-spec / Docker `seccomp` object).
public struct SeccompPolicy: Sendable, Equatable {
    public var defaultAction: SeccompAction
    /// errno of the default action when it is SCMP_ACT_ERRNO; nil means EPERM (1).
    public var defaultErrnoRet: Int?
    /// libseccomp architecture names (`SCMP_ARCH_X86_64`). The native architecture is always in the filter.
    public var architectures: [String]
    /// Base profiles' rules first, then the extending profile's.
    public var syscalls: [SeccompRule]
    /// Where `defaultAction` is written.
    public var location: SourceLocation

    public init(defaultAction: SeccompAction, defaultErrnoRet: Int? = nil, architectures: [String] = [],
                syscalls: [SeccompRule] = [],
                location: SourceLocation = SourceLocation(source: "<inline>", line: 0, column: 0)) {
        self.defaultAction = defaultAction
        self.defaultErrnoRet = defaultErrnoRet
        self.architectures = architectures
        self.syscalls = syscalls
        self.location = location
    }
}

/// A sandbox profile: limits, network switch and seccomp policy, as read from `sandbox-profiles/NAME.json`
/// (see sandbox-profiles/README.md for the format).
public struct SandboxProfile: Sendable, Equatable {
    public var name: String
    public var description: String
    public var network: Bool
    public var limits: Limits
    public var seccomp: SeccompPolicy
    /// Path of the file, or "<inline>".
    public var source: String
    /// Sources of the profiles this one extends, nearest first (empty for a profile without `extends`).
    public var bases: [String]
    /// Extra modules the zygote imports once, so that executions start with them loaded (its base's first).
    public var preload: [String]

    public init(name: String, description: String = "", network: Bool = false, limits: Limits = Limits(),
                seccomp: SeccompPolicy, source: String = "<inline>", bases: [String] = [], preload: [String] = []) {
        self.name = name
        self.description = description
        self.network = network
        self.limits = limits
        self.seccomp = seccomp
        self.source = source
        self.bases = bases
        self.preload = preload
    }
}

// MARK: - Loading

extension SandboxProfile {
    /// The keys a profile object may have.
    public static let topLevelKeys = ["name", "description", "extends", "network", "limits", "seccomp", "preload", "comment"]
    public static let seccompKeys = ["defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls",
                                     "comment"]
    public static let ruleKeys = ["names", "action", "args", "errnoRet", "comment", "includes", "excludes"]
    public static let argKeys = ["index", "value", "valueTwo", "op"]
    /// libseccomp architecture tokens accepted in `architectures`.
    public static let knownArchitectures = [
        "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
    ]

    /// The libseccomp name of the architecture this code runs on.
    public static var nativeArchitecture: String {
        #if arch(x86_64)
        "SCMP_ARCH_X86_64"
        #elseif arch(arm64)
        "SCMP_ARCH_AARCH64"
        #elseif arch(i386)
        "SCMP_ARCH_X86"
        #elseif arch(arm)
        "SCMP_ARCH_ARM"
        #elseif arch(powerpc64le)
        "SCMP_ARCH_PPC64LE"
        #elseif arch(s390x)
        "SCMP_ARCH_S390X"
        #elseif arch(riscv64)
        "SCMP_ARCH_RISCV64"
        #else
        "SCMP_ARCH_NATIVE"
        #endif
    }

    /// Parses a profile. `directory` is where `extends` names are looked up (and relative `extends` paths are
    /// resolved); with nil, a profile that extends another is an error.
    public static func parse(_ text: String, source: String, directory: String?) throws(ProfileError) -> SandboxProfile {
        try ProfileParser.parse(text: text, source: source, directory: directory, chain: [])
    }

    /// Loads `directory/NAME.json` for a bare name ("default"), or the file itself for a path (anything containing
    /// "/" or ending in ".json"; relative paths are relative to the current directory).
    public static func load(_ nameOrPath: String, directory: String) throws(ProfileError) -> SandboxProfile {
        let path = ProfilePaths.resolve(nameOrPath, directory: directory, pathBase: nil)
        return try ProfileParser.loadFile(path: path, chain: [], referencedAt: nil, reference: nameOrPath)
    }

    /// Loads a profile by name from the first of `directories` that has it (a path is loaded as it is).
    public static func load(_ nameOrPath: String, searching directories: [String]) throws(ProfileError)
        -> SandboxProfile
    {
        if ProfilePaths.isPath(nameOrPath) || directories.isEmpty {
            return try load(nameOrPath, directory: directories.first ?? ".")
        }
        for dir in directories where ProfilePaths.isFile(ProfilePaths.join(dir, nameOrPath + ".json")) {
            return try load(nameOrPath, directory: dir)
        }
        throw ProfileError(source: nameOrPath, line: 0, column: 0,
                           message: "no profile named \"\(nameOrPath)\" in " + directories.joined(separator: ", "))
    }

    /// The names of the profiles in `directories` (a name found in two, once), sorted.
    public static func available(searching directories: [String]) -> [String] {
        Array(Set(directories.flatMap { ProfilePaths.profileNames(in: $0) })).sorted()
    }

    /// Where profiles are looked for, in order: `$CODEINTERP_PROFILES_DIR`; `<exe dir>/../../sandbox-profiles`
    /// (the repository's `.build/<config>/` layout, plus `../../../` for the resolved `.build/<triple>/<config>/`);
    /// `<exe dir>/../share/codeinterp/sandbox-profiles` (an installed prefix); `/etc/codeinterp/sandbox-profiles`.
    /// Candidates only: directories are not checked for existence.
    public static func searchDirectories(executablePath: String, environment: [String: String]) -> [String] {
        var dirs: [String] = []
        if let env = environment["CODEINTERP_PROFILES_DIR"], !env.isEmpty { dirs.append(env) }
        let exeDir = ProfilePaths.dirname(ProfilePaths.absolute(executablePath))
        dirs.append(ProfilePaths.normalize(ProfilePaths.join(exeDir, "../../sandbox-profiles")))
        dirs.append(ProfilePaths.normalize(ProfilePaths.join(exeDir, "../../../sandbox-profiles")))
        dirs.append(ProfilePaths.normalize(ProfilePaths.join(exeDir, "../share/codeinterp/sandbox-profiles")))
        dirs.append("/etc/codeinterp/sandbox-profiles")
        var seen = Set<String>()
        return dirs.filter { seen.insert($0).inserted }
    }
}

// MARK: - Suggestions

public enum ProfileSuggestion {
    /// The candidate closest to `word` (case, "_" and "-" ignored first, then edit distance with transpositions),
    /// or nil when nothing is close enough to be a plausible typo.
    public static func closest(to word: String, among candidates: [String]) -> String? {
        func normalized(_ s: String) -> String { s.lowercased().filter { $0 != "_" && $0 != "-" } }
        let n = normalized(word)
        if let exact = candidates.first(where: { normalized($0) == n }) { return exact }
        let w = Array(word.lowercased())
        var best: (String, Int)?
        for c in candidates {
            let d = distance(w, Array(c.lowercased()))
            if best == nil || d < best!.1 { best = (c, d) }
        }
        guard let (candidate, d) = best else { return nil }
        let threshold = max(1, min(3, (w.count + 1) / 3))
        return d <= threshold ? candidate : nil
    }

    /// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }

    /// " (did you mean \"x\"?)" or "".
    public static func didYouMean(_ word: String, among candidates: [String]) -> String {
        if let s = closest(to: word, among: candidates) { return " (did you mean \"\(s)\"?)" }
        return ""
    }
}

// MARK: - Paths and files (no Foundation: the worker links this module)

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

// MARK: - Environment facts used by Docker's includes/excludes

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
