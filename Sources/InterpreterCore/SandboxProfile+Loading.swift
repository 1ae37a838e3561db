/// Loading profiles by name or path, and where they are looked for.
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
