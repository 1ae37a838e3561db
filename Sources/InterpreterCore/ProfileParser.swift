/// Reads sandbox profile JSON into `SandboxProfile`, with located errors, and resolves `extends`.
enum ProfileParser {
    static func loadFile(path: String, chain: [String], referencedAt: SourceLocation?, reference: String)
        throws(ProfileError) -> SandboxProfile
    {
        let bytes: [UInt8]
        switch ProfilePaths.readFile(path) {
        case .success(let b): bytes = b
        case .failure(let failure):
            if let at = referencedAt {
                var message = "base profile \"\(reference)\" cannot be read: \(path): \(failure.message)"
                if !ProfilePaths.isPath(reference) {
                    let dir = ProfilePaths.dirname(path)
                    let names = ProfilePaths.profileNames(in: dir)
                    message += Suggestion.didYouMean(reference, among: names)
                    if !names.isEmpty { message += "; profiles there: " + names.joined(separator: ", ") }
                }
                throw ProfileError(at, message)
            }
            throw ProfileError(source: path, line: 0, column: 0, message: "cannot read profile: \(failure.message)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ProfileError(source: path, line: 0, column: 0, message: "the file is not valid UTF-8")
        }
        return try parse(text: text, source: path, directory: ProfilePaths.dirname(path), chain: chain)
    }

    static func parse(text: String, source: String, directory: String?, chain: [String]) throws(ProfileError)
        -> SandboxProfile
    {
        let root: JSONNode
        do {
            root = try JSONWithPositions.parse(text)
        } catch {
            throw ProfileError(source: source, line: error.position.line, column: error.position.column,
                               message: error.message)
        }
        let r = Reader(source: source)
        let members = try r.object(root, "the profile")
        try r.checkKeys(members, allowed: SandboxProfile.topLevelKeys, in: "a profile")

        var name = source == "<inline>" ? "inline" : ProfilePaths.stem(source)
        var description: String?
        var extendsRef: (String, JSONPosition)?
        var network: Bool?
        var limitsNode: JSONNode?
        var seccompNode: JSONNode?
        var preload: [String] = []
        for m in members {
            switch m.key {
            case "name":
                name = try r.string(m.value, "\"name\"")
                let ok = !name.isEmpty && name.unicodeScalars.allSatisfy {
                    ($0 >= "0" && $0 <= "9") || ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z")
                        || $0 == "_" || $0 == "-" || $0 == "."
                }
                if !ok {
                    throw r.error(m.value.position, "\"name\" must be letters, digits, '.', '_' or '-'")
                }
            case "description": description = try r.string(m.value, "\"description\"")
            case "extends":
                if case .null = m.value.value { continue }
                let s = try r.string(m.value, "\"extends\" (a profile name, a path, or null)")
                if s.isEmpty { throw r.error(m.value.position, "\"extends\" must not be empty (use null)") }
                extendsRef = (s, m.value.position)
            case "network": network = try r.bool(m.value, "\"network\"")
            case "limits": limitsNode = m.value
            case "seccomp": seccompNode = m.value
            case "preload": preload = try r.moduleNames(m.value)
            case "comment": _ = try r.string(m.value, "\"comment\"")
            default: break
            }
        }

        let selfKey = source == "<inline>" ? source : ProfilePaths.canonical(source)
        var base: SandboxProfile?
        if let (ref, position) = extendsRef {
            guard let directory else {
                throw r.error(position, "\"extends\": \"\(ref)\" needs a profile directory to look in")
            }
            let pathBase = source == "<inline>" ? directory : ProfilePaths.dirname(source)
            let path = ProfilePaths.resolve(ref, directory: directory, pathBase: pathBase)
            let key = ProfilePaths.canonical(path)
            let newChain = chain + [selfKey]
            if let i = newChain.firstIndex(of: key) {
                let cycle = (newChain[i...] + [key]).map { ProfilePaths.basename($0) }.joined(separator: " -> ")
                throw r.error(position, "\"extends\" makes a cycle: \(cycle)")
            }
            base = try loadFile(path: path, chain: newChain, referencedAt: r.location(position), reference: ref)
        }

        var limits = base?.limits ?? Limits()
        if let limitsNode { try r.applyLimits(limitsNode, to: &limits) }

        var seccomp: SeccompPolicy
        if let base {
            seccomp = base.seccomp
            if let seccompNode {
                let baseRef = extendsRef?.0 ?? base.name
                let added = try r.extendingSeccomp(seccompNode, baseName: baseRef)
                try checkNoLoosening(added: added, base: base, baseRef: baseRef)
                seccomp.syscalls += added
            }
        } else {
            guard let seccompNode else {
                throw r.error(root.position, "missing \"seccomp\": a profile without \"extends\" must define its "
                              + "seccomp policy (or extend another profile, e.g. \"extends\": \"default\")")
            }
            seccomp = try r.seccompPolicy(seccompNode)
        }

        return SandboxProfile(
            name: name, description: description ?? base?.description ?? "", network: network ?? base?.network ?? false,
            limits: limits, seccomp: seccomp, source: source,
            bases: base.map { [$0.source] + $0.bases } ?? [],
            preload: (base?.preload ?? []) + preload.filter { !(base?.preload ?? []).contains($0) })
    }

    /// A profile that extends another may not let run a call that its base kills: the point of `extends` is to add
    /// to a profile without weakening it by accident. (Replacing a kill by ERRNO is fine: the call still does not
    /// run.) Copy the base profile to loosen it on purpose.
    static func checkNoLoosening(added: [SeccompRule], base: SandboxProfile, baseRef: String)
        throws(ProfileError)
    {
        var kills: [String: [SeccompRule]] = [:]
        for rule in base.seccomp.syscalls where rule.action.kills {
            for n in rule.names { kills[n, default: []].append(rule) }
        }
        if kills.isEmpty { return }
        for rule in added where rule.action.letsCallRun {
            for (i, n) in rule.names.enumerated() {
                for k in kills[n] ?? [] where k.args.isEmpty || rule.args.isEmpty || Set(k.args) == Set(rule.args) {
                    let what = k.args.isEmpty ? "kills it" : "kills it for these arguments"
                    throw ProfileError(
                        rule.location(ofName: i),
                        "\(rule.action.rawValue) for \"\(n)\": the base profile \"\(baseRef)\" \(what) (\(k.location)); "
                            + "a profile that extends another cannot allow what the base kills "
                            + "(copy the base profile and edit the copy to do that)")
                }
            }
        }
    }
}

/// Typed access to JSON nodes with located errors.
struct Reader {
    var source: String

    func location(_ p: JSONPosition) -> SourceLocation {
        SourceLocation(source: source, line: p.line, column: p.column)
    }

    func error(_ p: JSONPosition, _ message: String) -> ProfileError {
        ProfileError(location(p), message)
    }

    func describe(_ node: JSONNode) -> String {
        switch node.value {
        case .string(let s): "a string (\"\(s.count > 40 ? String(s.prefix(40)) + "..." : s)\")"
        case .number(let n): "a number (\(n.text))"
        case .bool(let b): "\(b)"
        case .null: "null"
        case .array: "an array"
        case .object: "an object"
        }
    }

    func wrongType(_ node: JSONNode, _ what: String, _ expected: String) -> ProfileError {
        error(node.position, "\(what) must be \(expected), found \(describe(node))")
    }

    func object(_ node: JSONNode, _ what: String) throws(ProfileError) -> [JSONMember] {
        guard case .object(let m) = node.value else { throw wrongType(node, what, "an object") }
        return m
    }

    func array(_ node: JSONNode, _ what: String) throws(ProfileError) -> [JSONNode] {
        guard case .array(let a) = node.value else { throw wrongType(node, what, "an array") }
        return a
    }

    func string(_ node: JSONNode, _ what: String) throws(ProfileError) -> String {
        guard case .string(let s) = node.value else { throw wrongType(node, what, "a string") }
        return s
    }

    /// `preload`: an array of Python module names (`numpy`, `scipy.stats`), each once.
    func moduleNames(_ node: JSONNode) throws(ProfileError) -> [String] {
        var names: [String] = []
        for item in try array(node, "\"preload\" (a list of module names)") {
            let name = try string(item, "an entry of \"preload\" (a module name)")
            let parts = name.split(separator: ".", omittingEmptySubsequences: false)
            let valid = !parts.isEmpty && parts.allSatisfy { part in
                guard let first = part.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
                return part.unicodeScalars.allSatisfy { ($0.properties.isAlphabetic || $0 == "_" || ("0"..."9").contains($0)) && $0.isASCII }
            }
            if !valid { throw error(item.position, "\"preload\": \"\(name)\" is not a Python module name (such as \"scipy.stats\")") }
            if names.contains(name) { throw error(item.position, "\"preload\": \"\(name)\" is listed twice") }
            names.append(name)
        }
        return names
    }

    func bool(_ node: JSONNode, _ what: String) throws(ProfileError) -> Bool {
        guard case .bool(let b) = node.value else { throw wrongType(node, what, "true or false") }
        return b
    }

    func integer(_ node: JSONNode, _ what: String, _ range: ClosedRange<Int64>) throws(ProfileError) -> Int64 {
        guard case .number(let n) = node.value else { throw wrongType(node, what, "an integer") }
        guard let i = n.integralValue else {
            if n.double.isFinite && n.double.rounded(.towardZero) != n.double {
                throw error(node.position, "\(what) must be a whole number, found \(n.text)")
            }
            throw error(node.position, "\(what) is out of range: \(n.text)")
        }
        guard range.contains(i) else {
            if i < 0 && range.lowerBound >= 0 {
                throw error(node.position, "\(what) must not be negative, found \(n.text)")
            }
            throw error(node.position, "\(what) must be between \(range.lowerBound) and \(range.upperBound), "
                        + "found \(n.text)")
        }
        return i
    }

    func uint64(_ node: JSONNode, _ what: String) throws(ProfileError) -> UInt64 {
        guard case .number(let n) = node.value else { throw wrongType(node, what, "an integer") }
        if let u = n.uint64 { return u }
        if n.text.hasPrefix("-") {
            throw error(node.position, "\(what) must not be negative (comparisons are on unsigned 64-bit values), "
                        + "found \(n.text)")
        }
        if let i = n.integralValue, i >= 0 { return UInt64(i) }
        throw error(node.position, "\(what) must be a whole number from 0 to 18446744073709551615, found \(n.text)")
    }

    func isNull(_ node: JSONNode) -> Bool {
        if case .null = node.value { return true }
        return false
    }

    func checkKeys(_ members: [JSONMember], allowed: [String], in context: String) throws(ProfileError) {
        for m in members where !allowed.contains(m.key) {
            throw error(m.keyPosition, "unknown key \"\(m.key)\" in \(context)"
                        + Suggestion.didYouMean(m.key, among: allowed)
                        + "; allowed: " + allowed.joined(separator: ", "))
        }
    }

    // MARK: limits

    /// The `limits` keys: `Limits`' coding keys (a test keeps the two in step).
    static let limitKeys = [
        "wall_seconds", "cpu_seconds", "memory_bytes", "processes", "file_size_bytes", "open_files", "stdout_bytes",
        "stderr_bytes", "output_files", "output_bytes", "output_depth", "tmp_bytes", "max_memory_bytes", "data_bytes",
    ]

    func applyLimits(_ node: JSONNode, to limits: inout Limits) throws(ProfileError) {
        let members = try object(node, "\"limits\"")
        try checkKeys(members, allowed: Reader.limitKeys, in: "\"limits\"")
        for m in members {
            let what = "\"limits.\(m.key)\""
            switch m.key {
            case "wall_seconds":
                guard case .number(let n) = m.value.value else { throw wrongType(m.value, what, "a number") }
                let d = n.double
                guard d.isFinite, d > 0 else {
                    throw error(m.value.position, "\(what) must be a positive number of seconds, found \(n.text)")
                }
                limits.wallSeconds = d
            case "cpu_seconds": limits.cpuSeconds = Int(try integer(m.value, what, 1...Int64(Int32.max)))
            case "memory_bytes": limits.memoryBytes = try integer(m.value, what, 1...Int64.max)
            case "processes": limits.processes = Int(try integer(m.value, what, 1...Int64(Int32.max)))
            case "file_size_bytes": limits.fileSizeBytes = try integer(m.value, what, 0...Int64.max)
            case "open_files": limits.openFiles = Int(try integer(m.value, what, 1...Int64(Int32.max)))
            case "stdout_bytes": limits.stdoutBytes = Int(try integer(m.value, what, 0...Int64(Int.max)))
            case "stderr_bytes": limits.stderrBytes = Int(try integer(m.value, what, 0...Int64(Int.max)))
            case "output_files": limits.outputFiles = Int(try integer(m.value, what, 0...Int64(Int32.max)))
            case "output_bytes": limits.outputBytes = try integer(m.value, what, 0...Int64.max)
            case "output_depth": limits.outputDepth = Int(try integer(m.value, what, 0...1024))
            case "tmp_bytes": limits.tmpBytes = try integer(m.value, what, 0...Int64.max)
            case "max_memory_bytes": limits.maxMemoryBytes = try integer(m.value, what, 1...Int64.max)
            // The size of a tmpfs, where 0 would mean no limit at all.
            case "data_bytes": limits.dataBytes = try integer(m.value, what, 1...Int64.max)
            default: break
            }
        }
    }

    // MARK: seccomp

    func action(_ node: JSONNode, _ what: String) throws(ProfileError) -> SeccompAction {
        let s = try string(node, what)
        if let a = SeccompAction(rawValue: s) { return a }
        if s == "SCMP_ACT_NOTIFY" {
            throw error(node.position, "SCMP_ACT_NOTIFY is not supported: codeinterp runs no seccomp agent "
                        + "(use SCMP_ACT_ERRNO or SCMP_ACT_KILL_PROCESS)")
        }
        let all = SeccompAction.allCases.map(\.rawValue)
        throw error(node.position, "unknown action \"\(s)\"" + Suggestion.didYouMean(s, among: all)
                    + "; actions: " + all.joined(separator: ", "))
    }

    func errnoRet(_ node: JSONNode, _ what: String, for action: SeccompAction, actionKey: String)
        throws(ProfileError) -> Int?
    {
        if isNull(node) { return nil }
        guard action.takesErrnoRet else {
            throw error(node.position, "\(what) only applies to SCMP_ACT_ERRNO (and SCMP_ACT_TRACE), but "
                        + "\"\(actionKey)\" is \(action.rawValue)")
        }
        let maxValue: Int64 = action == .trace ? 65535 : 4095
        return Int(try integer(node, what, 0...maxValue))
    }

    func seccompPolicy(_ node: JSONNode) throws(ProfileError) -> SeccompPolicy {
        let members = try object(node, "\"seccomp\"")
        try checkKeys(members, allowed: SandboxProfile.seccompKeys + ["flags", "listenerPath", "listenerMetadata"],
                      in: "\"seccomp\"")
        guard let defaultMember = members.first(where: { $0.key == "defaultAction" }) else {
            throw error(node.position, "\"seccomp\" needs \"defaultAction\" (SCMP_ACT_ERRNO for an allowlist)")
        }
        let defaultAction = try action(defaultMember.value, "\"defaultAction\"")
        var policy = SeccompPolicy(defaultAction: defaultAction, location: location(defaultMember.keyPosition))
        for m in members {
            switch m.key {
            case "defaultErrnoRet":
                policy.defaultErrnoRet = try errnoRet(m.value, "\"defaultErrnoRet\"", for: defaultAction,
                                                      actionKey: "defaultAction")
            case "architectures":
                if isNull(m.value) { continue }
                for a in try array(m.value, "\"architectures\"") {
                    let s = try string(a, "an architecture")
                    guard SandboxProfile.knownArchitectures.contains(s) else {
                        throw error(a.position, "unknown architecture \"\(s)\""
                                    + Suggestion.didYouMean(s, among: SandboxProfile.knownArchitectures)
                                    + "; this machine is \(SandboxProfile.nativeArchitecture)")
                    }
                    if !policy.architectures.contains(s) { policy.architectures.append(s) }
                }
            case "archMap":
                if isNull(m.value) { continue }
                if members.contains(where: { $0.key == "architectures" }) {
                    throw error(m.keyPosition, "give \"architectures\" or Docker's \"archMap\", not both")
                }
                policy.architectures = try archMap(m.value)
            case "syscalls":
                if isNull(m.value) { continue }
                policy.syscalls = try rules(m.value)
            case "comment": _ = try string(m.value, "\"comment\"")
            case "flags", "listenerPath", "listenerMetadata":
                if isNull(m.value) { continue }
                if case .array(let a) = m.value.value, a.isEmpty { continue }
                if case .string(let s) = m.value.value, s.isEmpty { continue }
                throw error(m.keyPosition, "\"\(m.key)\" is not supported: codeinterp loads the compiled program "
                            + "itself, with no flags and no seccomp agent")
            default: break
            }
        }
        return policy
    }

    /// Docker's `archMap`: the entry of the native architecture, with its sub-architectures.
    func archMap(_ node: JSONNode) throws(ProfileError) -> [String] {
        var result: [String] = []
        for entry in try array(node, "\"archMap\"") {
            let members = try object(entry, "an \"archMap\" entry")
            try checkKeys(members, allowed: ["architecture", "subArchitectures"], in: "an \"archMap\" entry")
            var arch: String?
            var subs: [String] = []
            for m in members {
                if m.key == "architecture" {
                    let s = try string(m.value, "\"architecture\"")
                    guard SandboxProfile.knownArchitectures.contains(s) else {
                        throw error(m.value.position, "unknown architecture \"\(s)\""
                                    + Suggestion.didYouMean(s, among: SandboxProfile.knownArchitectures))
                    }
                    arch = s
                } else if !isNull(m.value) {
                    for a in try array(m.value, "\"subArchitectures\"") {
                        let s = try string(a, "an architecture")
                        guard SandboxProfile.knownArchitectures.contains(s) else {
                            throw error(a.position, "unknown architecture \"\(s)\""
                                        + Suggestion.didYouMean(s, among: SandboxProfile.knownArchitectures))
                        }
                        subs.append(s)
                    }
                }
            }
            guard let arch else { throw error(entry.position, "an \"archMap\" entry needs \"architecture\"") }
            if arch == SandboxProfile.nativeArchitecture { result = [arch] + subs }
        }
        return result
    }

    /// The `seccomp` object of a profile that extends another: only rules can be added.
    func extendingSeccomp(_ node: JSONNode, baseName: String) throws(ProfileError) -> [SeccompRule] {
        let members = try object(node, "\"seccomp\"")
        for m in members {
            switch m.key {
            case "syscalls":
                if isNull(m.value) { continue }
                return try rules(m.value)
            case "comment": _ = try string(m.value, "\"comment\"")
            case _ where SandboxProfile.seccompKeys.contains(m.key):
                throw error(m.keyPosition, "\"\(m.key)\" cannot be changed by a profile that extends "
                            + "\"\(baseName)\": an extending profile only adds \"syscalls\" rules "
                            + "(copy the base profile to change its \"\(m.key)\")")
            default:
                try checkKeys([m], allowed: ["syscalls", "comment"], in: "\"seccomp\" of an extending profile")
            }
        }
        return []
    }

    func rules(_ node: JSONNode) throws(ProfileError) -> [SeccompRule] {
        var out: [SeccompRule] = []
        for ruleNode in try array(node, "\"syscalls\"") {
            if let rule = try rule(ruleNode) { out.append(rule) }
        }
        return out
    }

    /// One rule, or nil when Docker's `includes`/`excludes` say it does not apply here.
    func rule(_ node: JSONNode) throws(ProfileError) -> SeccompRule? {
        let members = try object(node, "a \"syscalls\" rule")
        try checkKeys(members, allowed: SandboxProfile.ruleKeys, in: "a \"syscalls\" rule")
        guard let actionMember = members.first(where: { $0.key == "action" }) else {
            throw error(node.position, "the rule needs \"action\" (for example \"SCMP_ACT_ALLOW\")")
        }
        let act = try action(actionMember.value, "\"action\"")
        guard let namesMember = members.first(where: { $0.key == "names" }) else {
            throw error(node.position, "the rule needs \"names\", a list of system call names")
        }
        var names: [String] = []
        var nameLocations: [SourceLocation] = []
        let nameNodes = try array(namesMember.value, "\"names\"")
        if nameNodes.isEmpty { throw error(namesMember.value.position, "\"names\" must not be empty") }
        for n in nameNodes {
            let s = try string(n, "a system call name")
            let valid = !s.isEmpty && s.unicodeScalars.allSatisfy {
                ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_"
            }
            if !valid {
                let lower = s.lowercased()
                let hint = lower != s && !lower.isEmpty ? " (did you mean \"\(lower)\"?)" : ""
                throw error(n.position, "\"\(s)\" is not a system call name: names are lowercase letters, digits "
                            + "and '_'" + hint)
            }
            if let first = names.firstIndex(of: s) {
                throw error(n.position, "\"\(s)\" is listed twice in this rule (first at \(nameLocations[first]))")
            }
            names.append(s)
            nameLocations.append(location(n.position))
        }
        var rule = SeccompRule(names: names, action: act, location: location(node.position),
                               nameLocations: nameLocations)
        var applies = true
        for m in members {
            switch m.key {
            case "args":
                if isNull(m.value) { continue }
                rule.args = try args(m.value)
            case "errnoRet":
                rule.errnoRet = try errnoRet(m.value, "\"errnoRet\"", for: act, actionKey: "action")
            case "comment":
                if isNull(m.value) { continue }
                let c = try string(m.value, "\"comment\"")
                rule.comment = c.isEmpty ? nil : c
            case "includes", "excludes":
                if isNull(m.value) { continue }
                if try !condition(m.value, include: m.key == "includes") { applies = false }
            default: break
            }
        }
        return applies ? rule : nil
    }

    func args(_ node: JSONNode) throws(ProfileError) -> [SeccompArg] {
        var out: [SeccompArg] = []
        for argNode in try array(node, "\"args\"") {
            let members = try object(argNode, "an \"args\" entry")
            try checkKeys(members, allowed: SandboxProfile.argKeys, in: "an \"args\" entry")
            var index: Int?
            var value: UInt64?
            var valueTwo: UInt64 = 0
            var op: SeccompOperator?
            for m in members {
                switch m.key {
                case "index":
                    guard case .number(let n) = m.value.value, let i = n.integralValue else {
                        throw wrongType(m.value, "\"index\"", "an argument number from 0 to 5")
                    }
                    guard (0...5).contains(i) else {
                        throw error(m.value.position, "\"index\" must be from 0 to 5 (system calls have at most six "
                                    + "arguments), found \(n.text)")
                    }
                    index = Int(i)
                case "value": value = try uint64(m.value, "\"value\"")
                case "valueTwo": valueTwo = try uint64(m.value, "\"valueTwo\"")
                case "op":
                    let s = try string(m.value, "\"op\"")
                    guard let o = SeccompOperator(rawValue: s) else {
                        let all = SeccompOperator.allCases.map(\.rawValue)
                        throw error(m.value.position, "unknown operator \"\(s)\""
                                    + Suggestion.didYouMean(s, among: all) + "; operators: "
                                    + all.joined(separator: ", "))
                    }
                    op = o
                default: break
                }
            }
            guard let index else { throw error(argNode.position, "the argument condition needs \"index\" (0-5)") }
            guard let value else { throw error(argNode.position, "the argument condition needs \"value\"") }
            guard let op else {
                throw error(argNode.position, "the argument condition needs \"op\" (for example \"SCMP_CMP_EQ\")")
            }
            if out.contains(where: { $0.index == index }) {
                throw error(argNode.position, "argument \(index) is compared twice in this rule; libseccomp accepts "
                            + "one comparison per argument in a rule (write two rules instead)")
            }
            if op == .maskedEqual && valueTwo & ~value != 0 {
                throw error(argNode.position, "SCMP_CMP_MASKED_EQ compares (arg & value) with valueTwo, but "
                            + "valueTwo \(valueTwo) has bits outside the mask \(value): it can never match")
            }
            out.append(SeccompArg(index: index, value: value, valueTwo: valueTwo, op: op))
        }
        return out
    }

    /// Docker's `includes` / `excludes`: whether the rule applies on this host. codeinterp children hold no
    /// capabilities, so a rule that `includes` capabilities never applies and `excludes.caps` never excludes.
    func condition(_ node: JSONNode, include: Bool) throws(ProfileError) -> Bool {
        let what = include ? "\"includes\"" : "\"excludes\""
        let members = try object(node, what)
        try checkKeys(members, allowed: ["arches", "caps", "minKernel"], in: what)
        var matchesAll = true
        var anyCondition = false
        for m in members {
            if isNull(m.value) { continue }
            switch m.key {
            case "arches":
                let arches = try array(m.value, "\"arches\"")
                if arches.isEmpty { continue }
                anyCondition = true
                var any = false
                for a in arches where ProfileHost.dockerArchNames.contains(try string(a, "an architecture")) {
                    any = true
                }
                if !any { matchesAll = false }
            case "caps":
                let caps = try array(m.value, "\"caps\"")
                for c in caps { _ = try string(c, "a capability") }
                if caps.isEmpty { continue }
                anyCondition = true
                matchesAll = false  // no capabilities here
            case "minKernel":
                let s = try string(m.value, "\"minKernel\"")
                if s.isEmpty { continue }
                guard let want = ProfileHost.parseVersion(s) else {
                    throw error(m.value.position, "\"minKernel\" must be a version such as \"5.8\"")
                }
                anyCondition = true
                let have = ProfileHost.kernelVersion
                if have < want { matchesAll = false }
            default: break
            }
        }
        if include { return matchesAll }
        // excludes: the rule is dropped when every given condition holds.
        return !(anyCondition && matchesAll)
    }
}
