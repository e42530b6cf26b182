// The host tests' one assertion: EXPECT(cond) prints the failed condition with its line and counts it in
// `failures`; each test's main() returns non-zero when failures > 0.
#pragma once

#include <cstdio>

static int failures = 0;
#define EXPECT(cond)                                                         \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "%s:%d: FAILED %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                            \
    }                                                                        \
  } while (0)
