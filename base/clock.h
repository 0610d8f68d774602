/* clock: monotonic seconds, for timings and progress (never for results). */
#ifndef GRPO_CLOCK_H
#define GRPO_CLOCK_H

#include <time.h>

static inline double clock_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#endif
