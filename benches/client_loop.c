/* One thread calling rf_client_invoke_server in a loop through the C ABI: the round trip a C++
 * engine's own code pays. Built and run by benches/client_api.py against `remotefn serve`.
 * Usage: client_loop ADDR [SECONDS]. Prints `round_trips_per_sec N p50_us N`. */
#define _POSIX_C_SOURCE 200809L
#include "remotefn.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: client_loop ADDR [SECONDS]\n");
    return 2;
  }
  double seconds = argc > 2 ? atof(argv[2]) : 4.0;
  rf_client *c = NULL;
  if (rf_client_connect(argv[1], NULL, &c) != RF_OK) {
    fprintf(stderr, "connect: %s\n", rf_last_error());
    return 1;
  }
  rf_tuple *args = rf_tuple_new();
  rf_tuple_push_string(args, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 32);
  double warm_until = now_s() + 1.0;
  while (now_s() < warm_until) {
    rf_tuple *out = NULL;
    if (rf_client_invoke_server(c, "Echo", args, 10000, &out) != RF_OK) {
      fprintf(stderr, "invoke: %s\n", rf_last_error());
      return 1;
    }
    rf_tuple_free(out);
  }
  size_t cap = 1 << 20, n = 0;
  double *lat = malloc(cap * sizeof *lat);
  double start = now_s(), end = start + seconds;
  for (;;) {
    double sent = now_s();
    if (sent >= end) break;
    rf_tuple *out = NULL;
    if (rf_client_invoke_server(c, "Echo", args, 10000, &out) != RF_OK) {
      fprintf(stderr, "invoke: %s\n", rf_last_error());
      return 1;
    }
    rf_tuple_free(out);
    if (n < cap) lat[n++] = now_s() - sent;
  }
  double elapsed = now_s() - start;
  qsort(lat, n, sizeof *lat, cmp_double);
  printf("round_trips_per_sec %.0f p50_us %.0f\n", (double)n / elapsed, n ? lat[n / 2] * 1e6 : 0.0);
  free(lat);
  rf_tuple_free(args);
  rf_client_free(c);
  return 0;
}
