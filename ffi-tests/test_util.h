/* Tiny test helpers shared by the C and C++ programs in ffi-tests/. */
#ifndef RF_TEST_UTIL_H
#define RF_TEST_UTIL_H

#include "remotefn.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int rf_test_failures = 0;

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s (rf_last_error: %s)\n", __FILE__, __LINE__,  \
              #cond, rf_last_error());                                                      \
      rf_test_failures++;                                                                   \
    }                                                                                       \
  } while (0)

#define CHECK_STATUS(expr, want)                                                            \
  do {                                                                                      \
    rf_status got_ = (expr);                                                                \
    if (got_ != (want)) {                                                                   \
      fprintf(stderr, "%s:%d: %s returned %d, expected %d (rf_last_error: %s)\n", __FILE__, \
              __LINE__, #expr, (int)got_, (int)(want), rf_last_error());                    \
      rf_test_failures++;                                                                   \
    }                                                                                       \
  } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, RF_OK)

static inline void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

static inline double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Polls `cond` (an expression) for up to 20 s: proves "does not hang", never times speed. */
#define WAIT_UNTIL(cond)                                                                    \
  do {                                                                                      \
    double deadline_ = now_ms() + 20000.0;                                                  \
    while (!(cond) && now_ms() < deadline_) sleep_ms(2);                                    \
    CHECK(cond);                                                                            \
  } while (0)

#endif
