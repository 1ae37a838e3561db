import CSeccomp
import Crypto
import InterpreterCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A seccomp BPF program ready to load with `seccomp(SECCOMP_SET_MODE_FILTER)` (after `PR_SET_NO_NEW_PRIVS`).
public struct CompiledFilter: Sendable, Equatable {
    /// SHA-256 of `bpf`, hex: the same profile always compiles to the same key.
    public var key: String
    /// `struct sock_filter` array (8 bytes per instruction, host byte order), as `seccomp_export_bpf` writes it.
    public var bpf: [UInt8]
    public var instructionCount: Int

    public init(bpf: [UInt8]) {
        self.bpf = bpf
        self.key = SHA256.hash(data: bpf).lowercaseHex
        self.instructionCount = bpf.count / 8
    }

    /// What the worker registers (`FrameKind.loadFilter`).
    public var filterLoad: FilterLoad { FilterLoad(key: key, bpf: bpf) }
}

/// Compiles a `SandboxProfile` to a seccomp program with libseccomp.
///
/// What the compiler adds to or changes in a profile (sandbox-profiles/README.md says the same for operators):
/// - Kill actions (`SCMP_ACT_KILL`, `_KILL_PROCESS`, `_KILL_THREAD`) become `SCMP_ACT_TRAP`. The worker's child
///   installs a SIGSYS handler before loading the filter; it records the blocked call and kills the whole process,
///   so the result names the call. A call from a foreign architecture (32-bit `int 0x80`) kills outright.
/// - `rt_sigaction` belongs to the compiler: installing a SIGSYS handler returns EPERM (user code cannot replace the
///   reporting handler), everything else about signals is allowed; a profile's own `rt_sigaction` rules are ignored.
/// - `network: true` allows `socket(AF_INET)` and `socket(AF_INET6)`. `network: false` makes them return EPERM, and
///   a profile whose rules would allow them anyway is rejected.
/// - For one system call: rules with `args` apply where their conditions hold; a rule without `args` applies to
///   every call, and libseccomp cannot combine "this action for these arguments, that one for the rest", so such a
///   mix is an error unless the actions agree. Among rules with the same conditions (or none), the last one wins:
///   an extending profile's rule replaces its base's.
/// - Rules whose action equals the default action are left out (libseccomp refuses them; they change nothing).
public enum SeccompCompiler {
    public static let sigsys: UInt64 = 31
    public static let afUnix: UInt64 = 1
    public static let afInet: UInt64 = 2
    public static let afInet6: UInt64 = 10
    /// The kernel's limit on a classic BPF program.
    public static let maxInstructions = 4096

    public static func compile(_ profile: SandboxProfile) throws(ProfileError) -> CompiledFilter {
        let ctx = try build(profile)
        defer { seccomp_release(ctx) }
        let bpf = try export(ctx, source: profile.source)
        let filter = CompiledFilter(bpf: bpf)
        if filter.instructionCount > maxInstructions {
            throw ProfileError(source: profile.source, line: 0, column: 0,
                               message: "the compiled filter has \(filter.instructionCount) instructions; the kernel "
                                   + "accepts at most \(maxInstructions)")
        }
        return filter
    }

    /// libseccomp's pseudo filter code for the profile: a readable view of what `compile` produces.
    public static func pseudoFilterCode(_ profile: SandboxProfile) throws(ProfileError) -> String {
        let ctx = try build(profile)
        defer { seccomp_release(ctx) }
        return String(decoding: try exportWith(ctx, source: profile.source) { seccomp_export_pfc($0, $1) },
                      as: UTF8.self)
    }

    /// Checks what only libseccomp knows (system call names on this architecture, rule conflicts) without keeping
    /// the program.
    public static func validate(_ profile: SandboxProfile) throws(ProfileError) {
        _ = try compile(profile)
    }

    // MARK: - Actions

    static func actionValue(_ action: SeccompAction, errnoRet: Int?) -> UInt32 {
        switch action {
        case .allow: SCMP_ACT_ALLOW
        case .errno: ci_scmp_act_errno(UInt16(clamping: errnoRet ?? Int(EPERM)))
        case .kill, .killProcess, .killThread, .trap: SCMP_ACT_TRAP
        case .log: SCMP_ACT_LOG
        case .trace: 0x7ff0_0000 | UInt32(UInt16(clamping: errnoRet ?? 0))
        }
    }

    /// The call reaches the kernel under this action.
    static func letsRun(_ value: UInt32) -> Bool {
        value == SCMP_ACT_ALLOW || value == SCMP_ACT_LOG || value & 0xffff_0000 == 0x7ff0_0000
    }

    static func describe(_ value: UInt32) -> String {
        switch value {
        case SCMP_ACT_ALLOW: return "ALLOW"
        case SCMP_ACT_TRAP: return "KILL (trap)"
        case SCMP_ACT_LOG: return "LOG"
        default:
            if value & 0xffff_0000 == 0x0005_0000 { return "ERRNO(\(value & 0xffff))" }
            if value & 0xffff_0000 == 0x7ff0_0000 { return "TRACE(\(value & 0xffff))" }
            return String(value, radix: 16)
        }
    }

    // MARK: - Rules per system call

    struct Entry {
        var name: String
        var args: [SeccompArg]  // sorted by index
        var action: UInt32
        /// "default.json:12:5", or what the compiler added the entry for.
        var origin: String
        var location: SourceLocation?
    }

    static func archToken(_ name: String) -> UInt32? {
        guard name.hasPrefix("SCMP_ARCH_") else { return nil }
        let token = seccomp_arch_resolve_name(String(name.dropFirst(10)).lowercased())
        return token == 0 ? nil : token
    }

    static func build(_ profile: SandboxProfile) throws(ProfileError) -> scmp_filter_ctx {
        let policy = profile.seccomp
        let defaultValue = actionValue(policy.defaultAction, errnoRet: policy.defaultErrnoRet)
        guard let ctx = seccomp_init(defaultValue) else {
            throw ProfileError(policy.location, "libseccomp refused the default action \(describe(defaultValue))")
        }
        var ok = false
        defer { if !ok { seccomp_release(ctx) } }

        var rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)
        if rc < 0 { throw libseccompError(profile, "setting the bad-architecture action", rc) }
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)  // binary tree: fewer instructions run per call
        if rc < 0 { throw libseccompError(profile, "setting the optimization level", rc) }

        var arches: [(name: String, token: UInt32)] = [(SandboxProfile.nativeArchitecture, seccomp_arch_native())]
        for a in policy.architectures where a != SandboxProfile.nativeArchitecture {
            guard let token = archToken(a) else {
                throw ProfileError(policy.location, "libseccomp does not know the architecture \(a)")
            }
            let r = seccomp_arch_add(ctx, token)
            if r < 0 && r != -EEXIST { throw libseccompError(profile, "adding architecture \(a)", r) }
            arches.append((a, token))
        }

        // Resolve names and group the profile's rules per system call, in order.
        var order: [Int32] = []
        var groups: [Int32: [Entry]] = [:]
        func add(_ nr: Int32, _ e: Entry) {
            if groups[nr] == nil { order.append(nr) }
            groups[nr, default: []].append(e)
        }
        let rtSigaction = seccomp_syscall_resolve_name("rt_sigaction")
        let socketNr = seccomp_syscall_resolve_name("socket")
        for rule in policy.syscalls {
            let value = actionValue(rule.action, errnoRet: rule.errnoRet)
            let args = rule.args.sorted { $0.index < $1.index }
            for (i, name) in rule.names.enumerated() {
                let nr = try resolve(name, at: rule.location(ofName: i), arches: arches)
                if nr == rtSigaction { continue }  // managed below
                add(nr, Entry(name: name, args: args, action: value, origin: rule.location(ofName: i).description,
                              location: rule.location(ofName: i)))
            }
        }

        // rt_sigaction: everything but installing a SIGSYS handler.
        let sigsysOrigin = "codeinterp's rule protecting its SIGSYS handler"
        add(rtSigaction, Entry(name: "rt_sigaction", args: [SeccompArg(index: 0, value: sigsys, op: .notEqual)],
                               action: SCMP_ACT_ALLOW, origin: sigsysOrigin))
        add(rtSigaction, Entry(name: "rt_sigaction",
                               args: [SeccompArg(index: 0, value: sigsys, op: .equal),
                                      SeccompArg(index: 1, value: 0, op: .equal)],
                               action: SCMP_ACT_ALLOW, origin: sigsysOrigin))
        add(rtSigaction, Entry(name: "rt_sigaction",
                               args: [SeccompArg(index: 0, value: sigsys, op: .equal),
                                      SeccompArg(index: 1, value: 0, op: .notEqual)],
                               action: ci_scmp_act_errno(UInt16(EPERM)), origin: sigsysOrigin))

        // Network switch.
        let socketEntries = dedupe(groups[socketNr] ?? [])
        let unconditionalSocket = socketEntries.first { $0.args.isEmpty }
        if profile.network {
            if let u = unconditionalSocket {
                if !letsRun(u.action) {
                    throw ProfileError(u.location ?? policy.location, "\"network\" is true, but this rule gives "
                                       + "every socket() \(describe(u.action)); give it args (index 0 is the "
                                       + "address family) or remove it")
                }
            } else {
                for family in [afInet, afInet6] {
                    add(socketNr, Entry(name: "socket", args: [SeccompArg(index: 0, value: family, op: .equal)],
                                        action: SCMP_ACT_ALLOW, origin: "\"network\": true"))
                }
            }
        } else {
            if let u = unconditionalSocket, letsRun(u.action) {
                throw ProfileError(u.location ?? policy.location, "\"network\" is false, but this rule allows "
                                   + "socket() for every address family; give it args (for example index 0 "
                                   + "SCMP_CMP_EQ 1 for AF_UNIX), or set \"network\": true")
            }
            for e in socketEntries where letsRun(e.action) {
                let family = e.args.first { $0.index == 0 }
                if family == nil || family!.matches(afInet) || family!.matches(afInet6) {
                    throw ProfileError(e.location ?? policy.location, "\"network\" is false, but this rule allows "
                                       + "AF_INET or AF_INET6 sockets; set \"network\": true instead")
                }
            }
            if unconditionalSocket == nil && letsRun(defaultValue) {
                for family in [afInet, afInet6] {
                    add(socketNr, Entry(name: "socket", args: [SeccompArg(index: 0, value: family, op: .equal)],
                                        action: ci_scmp_act_errno(UInt16(EPERM)), origin: "\"network\": false"))
                }
            }
        }

        for nr in order {
            for e in try effectiveEntries(groups[nr]!, defaultValue: defaultValue, policy: policy) {
                var conditions = e.args.map {
                    ci_scmp_arg(UInt32($0.index), compareOp($0.op), $0.value, $0.op == .maskedEqual ? $0.valueTwo : 0)
                }
                let r = conditions.withUnsafeMutableBufferPointer { buf in
                    seccomp_rule_add_array(ctx, e.action, nr, UInt32(buf.count), buf.baseAddress)
                }
                if r < 0 {
                    throw ProfileError(e.location ?? policy.location,
                                       "libseccomp rejected the rule for \"\(e.name)\" (\(e.origin)): "
                                           + errnoText(-r))
                }
            }
        }
        ok = true
        return ctx
    }

    /// Among entries with the same conditions, the last one.
    static func dedupe(_ entries: [Entry]) -> [Entry] {
        var out: [Entry] = []
        for e in entries {
            if let i = out.firstIndex(where: { $0.args == e.args }) { out.remove(at: i) }
            out.append(e)
        }
        return out
    }

    /// The entries to hand libseccomp for one system call (see the type's documentation for the rules).
    static func effectiveEntries(_ all: [Entry], defaultValue: UInt32, policy: SeccompPolicy) throws(ProfileError)
        -> [Entry]
    {
        let entries = dedupe(all)
        let unconditional = entries.first { $0.args.isEmpty }
        let conditional = entries.filter { !$0.args.isEmpty }
        guard let u = unconditional, u.action != defaultValue else {
            return conditional.filter { $0.action != defaultValue }
        }
        for c in conditional where c.action != u.action {
            let later = (c.location?.line ?? 0) >= (u.location?.line ?? 0) || u.location == nil ? c : u
            let other = later.origin == c.origin ? u : c
            throw ProfileError(
                later.location ?? other.location ?? policy.location,
                "conflicting rules for \"\(u.name)\": \(u.origin) gives every call \(describe(u.action)), and "
                    + "\(c.origin) gives calls with certain arguments \(describe(c.action)); libseccomp cannot "
                    + "express \"one action for these arguments, another for the rest\": give the first rule args "
                    + "too, or remove one of them")
        }
        return [u]
    }

    static func compareOp(_ op: SeccompOperator) -> scmp_compare {
        switch op {
        case .notEqual: SCMP_CMP_NE
        case .lessThan: SCMP_CMP_LT
        case .lessOrEqual: SCMP_CMP_LE
        case .equal: SCMP_CMP_EQ
        case .greaterOrEqual: SCMP_CMP_GE
        case .greaterThan: SCMP_CMP_GT
        case .maskedEqual: SCMP_CMP_MASKED_EQ
        }
    }

    // MARK: - Names

    /// The number libseccomp uses for `name` (a negative pseudo number for a call of another listed architecture).
    static func resolve(_ name: String, at location: SourceLocation, arches: [(name: String, token: UInt32)])
        throws(ProfileError) -> Int32
    {
        let nr = seccomp_syscall_resolve_name(name)
        if nr >= 0 { return nr }
        let archNames = arches.map { archDisplayName($0.name) }.joined(separator: ", ")
        if nr == __NR_SCMP_ERROR {
            throw ProfileError(location, "unknown system call \"\(name)\" on \(archNames)"
                               + Suggestion.didYouMean(name, among: knownSyscallNames()))
        }
        for a in arches.dropFirst() where seccomp_syscall_resolve_name_arch(a.token, name) >= 0 {
            return nr
        }
        throw ProfileError(location, "system call \"\(name)\" does not exist on \(archNames) (it belongs to other "
                           + "architectures: remove it, or add its architecture to \"architectures\")"
                           + Suggestion.didYouMean(name, among: knownSyscallNames()))
    }

    static func archDisplayName(_ scmp: String) -> String {
        scmp.hasPrefix("SCMP_ARCH_") ? String(scmp.dropFirst(10)).lowercased() : scmp
    }

    /// Every system call name of the native architecture that libseccomp knows.
    public static func knownSyscallNames() -> [String] {
        var names: [String] = []
        for n in Int32(0)..<1024 {
            if let s = syscallName(number: n) { names.append(s) }
        }
        return names
    }

    // MARK: - Export

    static func export(_ ctx: scmp_filter_ctx, source: String) throws(ProfileError) -> [UInt8] {
        try exportWith(ctx, source: source) { seccomp_export_bpf($0, $1) }
    }

    /// Runs an export function into an anonymous temporary file and returns what it wrote.
    static func exportWith(_ ctx: scmp_filter_ctx, source: String, _ body: (scmp_filter_ctx, Int32) -> Int32)
        throws(ProfileError) -> [UInt8]
    {
        guard let file = tmpfile() else {
            throw ProfileError(source: source, line: 0, column: 0,
                               message: "cannot create a temporary file for the filter: " + errnoText(errno))
        }
        defer { fclose(file) }
        let fd = fileno(file)
        let rc = body(ctx, fd)
        if rc < 0 {
            throw ProfileError(source: source, line: 0, column: 0,
                               message: "libseccomp could not export the filter: " + errnoText(-rc))
        }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var offset: off_t = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ProfileError(source: source, line: 0, column: 0,
                                   message: "cannot read the exported filter: " + errnoText(errno))
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            offset += off_t(n)
        }
        return out
    }

    static func libseccompError(_ profile: SandboxProfile, _ what: String, _ rc: Int32) -> ProfileError {
        ProfileError(profile.seccomp.location, "libseccomp failed \(what): " + errnoText(-rc))
    }

    static func errnoText(_ e: Int32) -> String {
        guard let s = strerror(e) else { return "error \(e)" }
        return String(cString: s)
    }
}

/// The native architecture's name for a system call number (`0` is "read" on x86_64), as libseccomp knows it.
public func syscallName(number: Int32) -> String? {
    guard number >= 0, let p = seccomp_syscall_resolve_num_arch(UInt32(SCMP_ARCH_NATIVE), number) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

/// The native architecture's number for a system call name, or nil when it has no such call.
public func syscallNumber(name: String) -> Int32? {
    let nr = seccomp_syscall_resolve_name(name)
    return nr >= 0 ? nr : nil
}
