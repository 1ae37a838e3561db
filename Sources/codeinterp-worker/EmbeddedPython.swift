import CPython
import CSandbox

/// The interpreter embedded in the zygote, and the runtime module (`runtime/codeinterp_runtime.py`) that does the
/// Python side of an execution: capture, last expression, figures.
struct EmbeddedPython {
    private let preloadFn: UnsafeMutablePointer<PyObject>
    private let warmupFn: UnsafeMutablePointer<PyObject>
    private let afterForkFn: UnsafeMutablePointer<PyObject>
    private let executeFn: UnsafeMutablePointer<PyObject>
    private let primeFn: UnsafeMutablePointer<PyObject>
    let version: String

    init(executable: String) throws(WorkerError) {
        // Object arenas from one region (see ci_collapse_into_huge_pages); set before Python allocates any. The
        // reservation is address space only: what the preload does not use is given back after it.
        if ci_arenas_reserve(1 << 30) == 0 {
            var arenas = PyObjectArenaAllocator(ctx: nil, alloc: ci_arena_alloc, free: ci_arena_free)
            PyObject_SetArenaAllocator(&arenas)
        }
        if let message = ci_py_initialize(executable) {
            throw WorkerError("Python failed to start: \(String(cString: message))")
        }
        version = String(cString: Py_GetVersion()).split(separator: " ").first.map(String.init) ?? "?"
        let source = PackageResources.codeinterp_runtime_py + [0]
        guard let code = source.withUnsafeBufferPointer({ buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                Py_CompileString($0, "codeinterp_runtime.py", Py_file_input)
            }
        }), let module = PyImport_ExecCodeModule("codeinterp_runtime", code) else {
            throw WorkerError("the runtime module failed to load: \(EmbeddedPython.fetchError())")
        }
        ci_py_decref(code)
        func function(_ name: String) throws(WorkerError) -> UnsafeMutablePointer<PyObject> {
            guard let f = PyObject_GetAttrString(module, name) else {
                throw WorkerError("runtime module has no \(name)")
            }
            return f
        }
        preloadFn = try function("preload")
        warmupFn = try function("warmup")
        afterForkFn = try function("after_fork")
        executeFn = try function("execute")
        primeFn = try function("prime")
    }

    /// Imports each module; returns (loaded, failed).
    /// `packages`: the operator's package directory, put on sys.path first.
    func preload(_ modules: [String], packages: String?) -> (loaded: [String], failed: [String]) {
        let list = PyList_New(0)!
        defer { ci_py_decref(list) }
        for m in modules {
            let s = PyUnicode_FromString(m)
            PyList_Append(list, s)
            ci_py_decref(s)
        }
        let path = packages.map { PyUnicode_FromString($0)! } ?? ci_py_none()
        defer { ci_py_decref(path) }
        guard let r = ci_py_call2(preloadFn, list, path) else {
            return ([], modules.map { "\($0) (\(EmbeddedPython.fetchError()))" })
        }
        defer { ci_py_decref(r) }
        func strings(_ index: Int) -> [String] {
            guard let seq = PyTuple_GetItem(r, index) else { return [] }
            return (0..<PyList_Size(seq)).compactMap { i in
                PyUnicode_AsUTF8(PyList_GetItem(seq, i)).map { String(cString: $0) }
            }
        }
        return (strings(0), strings(1))
    }

    func warmup() {
        if let r = ci_py_call0(warmupFn) { ci_py_decref(r) } else { PyErr_Clear() }
    }

    /// In a freshly forked child: Python's own after-fork bookkeeping. Must come first, before any Python call.
    static func afterForkInChild() {
        PyOS_AfterFork_Child()
    }

    static func beforeFork() { PyOS_BeforeFork() }
    static func afterForkInParent() { PyOS_AfterFork_Parent() }

    /// In the child, once isolated and before its first cell: reseed, reconfigure the standard streams.
    func afterFork() {
        if let r = ci_py_call0(afterForkFn) { ci_py_decref(r) } else { PyErr_Print() }
    }

    /// Runs one cell; the runtime writes its JSON outcome to `resultFd` (an `outcome` frame), then closes it unless
    /// `keepOpen`.
    /// `oneShot`: the interpreter ends after this cell (the runtime waits briefly for the processes it forked).
    func runCell(_ code: String, resultFd: Int32, keepOpen: Bool, oneShot: Bool = false) {
        let codeObject = PyUnicode_FromString(code)
        let fdObject = PyLong_FromLong(Int(resultFd))
        let keepObject = PyBool_FromLong(keepOpen ? 1 : 0)
        let oneShotObject = PyBool_FromLong(oneShot ? 1 : 0)
        if let r = ci_py_call4(executeFn, codeObject, fdObject, keepObject, oneShotObject) { ci_py_decref(r) } else { PyErr_Print() }
        ci_py_decref(codeObject)
        ci_py_decref(fdObject)
        ci_py_decref(keepObject)
        ci_py_decref(oneShotObject)
    }

    /// While the child waits: a throwaway chart, then a `primed` frame on `resultFd` (the runtime's `prime`).
    func prime(resultFd: Int32) {
        let fdObject = PyLong_FromLong(Int(resultFd))
        if let r = ci_py_call1(primeFn, fdObject) { ci_py_decref(r) } else { PyErr_Print() }
        ci_py_decref(fdObject)
    }

    private static func fetchError() -> String {
        var type: UnsafeMutablePointer<PyObject>?
        var value: UnsafeMutablePointer<PyObject>?
        var tb: UnsafeMutablePointer<PyObject>?
        PyErr_Fetch(&type, &value, &tb)
        defer { ci_py_decref(type); ci_py_decref(value); ci_py_decref(tb) }
        guard let value, let s = PyObject_Str(value) else { return "unknown Python error" }
        defer { ci_py_decref(s) }
        return PyUnicode_AsUTF8(s).map { String(cString: $0) } ?? "unknown Python error"
    }
}
