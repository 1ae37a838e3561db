// swift-tools-version: 6.1
import Foundation
import PackageDescription

/// Debian's static libpython, when it is installed (python3-dev): `/usr/lib/python3.X/config-3.X-ARCH/libpython3.X.a`,
/// the build Debian links its own /usr/bin/python3 from: no position-independent code, no calls through the PLT
/// inside the interpreter. Python runs on fewer instructions in it than in libpython3.X.so (valgrind's callgrind:
/// 5% for a matplotlib chart in a warm interpreter, 10% for importing the stack and the first chart, 6% for pure
/// Python), so the worker links it when it is there. The worker is then not a position-independent executable;
/// that costs the sandbox nothing: every child is a fork of the one zygote and shares its layout anyway, and user
/// code already holds the interpreter (ctypes included): seccomp and the namespaces confine it, not addresses.
/// (Code linked into the worker should not take the address of a Swift runtime function, `\.isNumber` say: the
/// dynamic loader then warns that a protected symbol's pointer equality may break.)
/// Elsewhere the worker links the shared libpython that pkg-config's python3-embed names.
let staticPython: (include: String, archive: String)? = {
    let fm = FileManager.default
    guard let target = try? fm.destinationOfSymbolicLink(atPath: "/usr/bin/python3"),
          let version = target.split(separator: "/").last.map(String.init), version.hasPrefix("python3."),
          fm.fileExists(atPath: "/usr/include/\(version)/Python.h"),
          let configs = try? fm.contentsOfDirectory(atPath: "/usr/lib/\(version)") else { return nil }
    let number = version.dropFirst("python".count)
    for config in configs.sorted() where config.hasPrefix("config-\(number)-") {
        let archive = "/usr/lib/\(version)/\(config)/lib\(version).a"
        if fm.fileExists(atPath: archive) { return ("/usr/include/\(version)", archive) }
    }
    return nil
}()

let package = Package(
    name: "codeinterp",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "codeinterp", targets: ["codeinterp"]),
        .executable(name: "codeinterp-worker", targets: ["codeinterp-worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", from: "0.12.1"),
    ],
    targets: [
        // C: system calls used between fork and user code, one wrapper per macro or variadic function.
        .target(name: "CSandbox"),
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CPython", pkgConfig: staticPython == nil ? "python3-embed" : nil, providers: [.apt(["python3-dev"])]),

        // Models shared by the server side and the worker: requests, results, limits, profiles, wire protocol.
        .target(name: "InterpreterCore"),
        // Sandbox profile -> seccomp BPF through libseccomp (compiled once per profile).
        .target(name: "Seccomp", dependencies: [
            "InterpreterCore", "CSeccomp", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The zygote: single-threaded, embeds libpython, forks one isolated child per execution.
        .executableTarget(
            name: "codeinterp-worker",
            dependencies: ["InterpreterCore", "CSandbox", "CPython"],
            exclude: ["runtime"],
            resources: [.embedInCode("runtime/codeinterp_runtime.py")],
            swiftSettings: staticPython.map { [.unsafeFlags(["-Xcc", "-I\($0.include)"])] } ?? [],
            linkerSettings: staticPython.map { python in [
                // The archive, then what it needs (what /usr/bin/python3 links: libexpat, zlib, libm); the
                // interpreter's symbols exported for the extension modules it loads (numpy's and the others' are not
                // linked with libpython: they find it in the executable, as under /usr/bin/python3).
                .unsafeFlags([python.archive, "-Xlinker", "--export-dynamic", "-Xclang-linker", "-no-pie"]),
                .linkedLibrary("expat"), .linkedLibrary("z"), .linkedLibrary("m"), .linkedLibrary("dl"),
            ] } ?? []
        ),
        // UUID-keyed blobs + SQLite metadata.
        .target(name: "FileStore", dependencies: [
            "InterpreterCore",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The execution engine the CLI and the server call: worker processes, limits, file collection.
        .target(name: "Sandbox", dependencies: [
            "InterpreterCore", "FileStore", "Seccomp", "CSandbox",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // The HTTP service: native API, OpenAI-compatible containers and files, SSE, auth, metrics.
        .target(name: "Server", dependencies: [
            "Sandbox", "FileStore", "InterpreterCore", "Tools", "Responses",
            .product(name: "MCP", package: "swift-sdk"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "MultipartKit", package: "multipart-kit"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ], exclude: ["README.md"],
        // The page at `/` (WebRoutes.swift), built into the binary: an installed codeinterp needs no files beside it.
        resources: [.embedInCode("Web")]),
        // Tool schemas and call adapters (OpenAI, Anthropic, MCP), conversations, the MCP server, the chat loop.
        .target(name: "Tools", dependencies: [
            "Sandbox", "FileStore", "InterpreterCore",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "MCP", package: "swift-sdk"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The Responses and Conversations APIs: OpenAI's hosted code_interpreter emulated in front of any model
        // (a Chat Completions or Responses upstream, or a scripted one), with their state in the engine's database.
        .target(name: "Responses", dependencies: [
            "Tools", "Sandbox", "FileStore", "InterpreterCore",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Logging", package: "swift-log"),
        ], resources: [.embedInCode("scripted-demo.json")]),
        .target(name: "Commands", dependencies: [
            "Sandbox", "InterpreterCore", "FileStore", "Seccomp", "Server", "Tools", "Responses",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "codeinterp", dependencies: ["Commands"]),

        // Running the built binaries from tests (posix_spawn: Foundation.Process can miss a child's exit on Linux).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "InterpreterCoreTests", dependencies: ["InterpreterCore"]),
        .testTarget(name: "SeccompTests", dependencies: ["Seccomp", "InterpreterCore"]),
        .testTarget(name: "FileStoreTests", dependencies: ["FileStore", "InterpreterCore"]),
        .testTarget(name: "SandboxTests", dependencies: [
            "Sandbox", "FileStore", "InterpreterCore", "TestSupport", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "CommandsTests", dependencies: ["InterpreterCore", "TestSupport"]),
        .testTarget(name: "ServerTests", dependencies: [
            "TestSupport", "Server", "Sandbox", "FileStore", "InterpreterCore",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "ResponsesTests", dependencies: ["Responses", "Tools", "Sandbox", "FileStore", "InterpreterCore"]),
        .testTarget(name: "ToolsTests", dependencies: ["Tools", "Sandbox", "FileStore", "InterpreterCore", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
