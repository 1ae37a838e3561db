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
