/// Command line of the worker. The engine spawns it; people never do, so the parsing is strict and plain.
struct WorkerConfig {
    var controlFd: Int32 = 3
    var slots = 4
    /// Slot n runs as uid/gid `uidBase + n` (root only). Far above any /etc/passwd entry.
    var uidBase: UInt32 = 2_000_000
    var preload: [String] = []
    var python = "/usr/bin/python3"
    var mplConfigDir = "/tmp/codeinterp-mpl"
    /// Name of this worker's cgroup directory under each controller.
    var cgroupName = "codeinterp"
    /// Python packages the operator added (`codeinterp packages`): on sys.path, read-only in every sandbox.
    var packages: String?

    static func parse(_ args: [String]) throws(WorkerError) -> WorkerConfig {
        var c = WorkerConfig()
        var i = 1
        func value() throws(WorkerError) -> String {
            i += 1
            guard i < args.count else { throw WorkerError("missing value for \(args[i - 1])") }
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--control-fd": c.controlFd = Int32(try value()) ?? -1
            case "--slots": c.slots = Int(try value()) ?? 0
            case "--uid-base": c.uidBase = UInt32(try value()) ?? 0
            case "--preload": c.preload = try value().split(separator: ",").map(String.init)
            case "--python": c.python = try value()
            case "--mpl-config-dir": c.mplConfigDir = try value()
            case "--cgroup-name": c.cgroupName = try value()
            case "--packages": c.packages = try value()
            default: throw WorkerError("unknown argument \(args[i])")
            }
            i += 1
        }
        guard c.controlFd >= 0, c.slots > 0, c.slots <= 256, c.uidBase > 0 else { throw WorkerError("invalid arguments") }
        return c
    }
}

struct WorkerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
