/* err: the error record every layer fills and returns.
 *
 * A failing function returns -1 (or NULL) and writes one line into an Err:
 * what failed and where (file, tensor, field, line). The caller adds context
 * with err_wrap and the CLI prints it and exits with the code it carries:
 * ERR_INPUT (2) for bad input or usage, ERR_WORK (1) for work that failed.
 * This is not a logging facility and never aborts. */
#ifndef GRPO_ERR_H
#define GRPO_ERR_H

#include <stddef.h>

enum { ERR_OK = 0, ERR_WORK = 1, ERR_INPUT = 2 };

typedef struct Err {
    int code;          /* ERR_WORK or ERR_INPUT once set */
    char msg[1024];
} Err;

/* Sets err (if non-NULL) and returns -1 so callers can `return err_set(...)`. */
int err_set(Err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes the existing message with new context ("loading X: <old>"). */
int err_wrap(Err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void err_clear(Err *err);

#endif
