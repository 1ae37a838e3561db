#ifndef CODEINTERP_CSANDBOX_H
#define CODEINTERP_CSANDBOX_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
int ci_placeholder(void);
#endif
