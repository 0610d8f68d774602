/* xalloc: checked allocation. Out of memory is not an input error we can
 * report usefully, so these print what was asked and where, then exit(1).
 * Use plain malloc where a caller can recover (e.g. sizes taken from a file). */
#ifndef GRPO_XALLOC_H
#define GRPO_XALLOC_H

#include <stddef.h>

#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_at((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_at((s), __FILE__, __LINE__)

void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t n, size_t size, const char *file, int line);
void *xrealloc_at(void *p, size_t n, const char *file, int line);
char *xstrdup_at(const char *s, const char *file, int line);
/* 64-byte aligned, zeroed; free with free(). */
void *xaligned(size_t n);

#endif
