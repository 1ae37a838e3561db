#ifndef CODEINTERP_CPYTHON_SHIM_H
#define CODEINTERP_CPYTHON_SHIM_H
// Python.h uses fd_set; on glibc it must be declared before Python.h is parsed by the Swift importer.
#include <sys/select.h>
#define PY_SSIZE_T_CLEAN
#include <Python.h>

// Py_None and Py_DECREF/Py_XDECREF are macros; Swift sees neither.
static inline PyObject *ci_py_none(void) { return Py_None; }
static inline void ci_py_decref(PyObject *o) { Py_XDECREF(o); }
static inline void ci_py_incref(PyObject *o) { Py_XINCREF(o); }
#endif
