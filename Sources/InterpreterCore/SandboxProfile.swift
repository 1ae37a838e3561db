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
