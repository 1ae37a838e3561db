#ifndef CODEINTERP_CSECCOMP_SHIM_H
#define CODEINTERP_CSECCOMP_SHIM_H
#include <seccomp.h>
#include <errno.h>

// SCMP_ACT_ERRNO and SCMP_ACT_TRACE are function-like macros, which Swift does not import.
static inline uint32_t ci_scmp_act_errno(uint16_t err) { return SCMP_ACT_ERRNO(err); }

// seccomp_rule_add_array is not variadic, so Swift can call it directly; these build its conditions.
static inline struct scmp_arg_cmp ci_scmp_arg(unsigned int arg, enum scmp_compare op, scmp_datum_t a, scmp_datum_t b) {
    struct scmp_arg_cmp c = { .arg = arg, .op = op, .datum_a = a, .datum_b = b };
    return c;
}
#endif
