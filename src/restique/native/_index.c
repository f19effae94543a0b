/* Placeholder: filled in by the change that uses it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_index", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__index(void) { return PyModule_Create(&module); }
