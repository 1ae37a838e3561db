#ifndef CODEINTERP_CPYTHON_SHIM_H
#define CODEINTERP_CPYTHON_SHIM_H
// Python.h uses fd_set; on glibc it must be declared before Python.h is parsed by the Swift importer.
#include <sys/select.h>
#define PY_SSIZE_T_CLEAN
#include <Python.h>

// Py_XDECREF is a macro; Swift does not see it.
static inline void ci_py_decref(PyObject *o) { Py_XDECREF(o); }

/// Initializes the embedded interpreter as Debian's /usr/bin/python3 would be, minus the environment:
/// PYTHON* variables and the user site are ignored, stdio is unbuffered (output streams live), the
/// interpreter's own signal handlers stay off (the zygote owns signals). Returns NULL or an error message.
static inline const char *ci_py_initialize(const char *executable) {
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;
    config.use_environment = 0;
    config.user_site_directory = 0;
    config.buffered_stdio = 0;
    config.install_signal_handlers = 0;
    config.safe_path = 1;
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, executable);
    if (!PyStatus_Exception(status)) status = PyConfig_SetBytesString(&config, &config.executable, executable);
    if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) return status.err_msg ? status.err_msg : "Py_InitializeFromConfig failed";
    return NULL;
}

/// callable(*args) for up to three arguments (PyObject_CallFunctionObjArgs is variadic).
static inline PyObject *ci_py_call0(PyObject *callable) { return PyObject_CallNoArgs(callable); }
static inline PyObject *ci_py_call1(PyObject *callable, PyObject *a) { return PyObject_CallOneArg(callable, a); }
/// A new reference to None (Py_None is a macro).
static inline PyObject *ci_py_none(void) { Py_INCREF(Py_None); return Py_None; }
static inline PyObject *ci_py_call2(PyObject *callable, PyObject *a, PyObject *b) {
    return PyObject_CallFunctionObjArgs(callable, a, b, NULL);
}
static inline PyObject *ci_py_call3(PyObject *callable, PyObject *a, PyObject *b, PyObject *c) {
    return PyObject_CallFunctionObjArgs(callable, a, b, c, NULL);
}
static inline PyObject *ci_py_call4(PyObject *callable, PyObject *a, PyObject *b, PyObject *c, PyObject *d) {
    return PyObject_CallFunctionObjArgs(callable, a, b, c, d, NULL);
}
#endif
