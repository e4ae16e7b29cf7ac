/* Proves the C ABI (docs/ABI.md) from C11: every function, and every semantic listed at its end.
 * Built and run by `cargo test` (tests/ffi.rs) against the shared and the static library, and
 * under valgrind memcheck. Exit status 0 means every check passed. */
#define _POSIX_C_SOURCE 200809L

#include "test_util.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------- helpers ---------- */

static void on_echo(void *user, rf_server *s, rf_player_id player, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)player;
  CHECK_OK(rf_server_return(s, call, rf_tuple_clone(args)));
}

static rf_server *start_server(uint32_t workers, rf_dispatch mode, uint32_t queue_limit, char *addr, size_t addr_len) {
  rf_server_config *cfg = rf_server_config_new();
  CHECK_OK(rf_server_config_set_workers(cfg, workers));
  /* Two event loops: players are dealt between them, so every test below crosses loops. */
  CHECK_STATUS(rf_server_config_set_reactors(cfg, 0), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_reactors(cfg, 129), RF_ERR_INVALID_ARGUMENT);
  CHECK_OK(rf_server_config_set_reactors(cfg, 2));
  CHECK_OK(rf_server_config_set_dispatch(cfg, mode));
  CHECK_OK(rf_server_config_set_queue_limit(cfg, queue_limit));
  CHECK_OK(rf_server_config_set_max_payload(cfg, 1 << 20));
  CHECK_OK(rf_server_config_set_max_depth(cfg, 64));
  CHECK_OK(rf_server_config_set_handshake_timeout(cfg, 10000));
  CHECK_OK(rf_server_config_set_idle_timeout(cfg, 60000));
  CHECK_OK(rf_server_config_set_max_inflight_per_player(cfg, 1024));
  CHECK_OK(rf_server_config_set_rate_limit(cfg, 100000, 100000));
  CHECK_OK(rf_server_config_set_rate_cut_after(cfg, 30000));
  CHECK_OK(rf_server_config_set_max_players(cfg, 1000));
  CHECK_OK(rf_server_config_set_max_output_buffer(cfg, 8u << 20));
  rf_server *s = NULL;
  CHECK_OK(rf_server_new(cfg, &s));
  rf_server_config_free(cfg);
  CHECK_OK(rf_server_listen(s, "127.0.0.1:0"));
  uint16_t port = 0;
  CHECK_OK(rf_server_local_port(s, &port));
  CHECK(port != 0);
  snprintf(addr, addr_len, "127.0.0.1:%u", (unsigned)port);
  CHECK_OK(rf_server_bind(s, "Echo", on_echo, NULL));
  return s;
}

static rf_client *connect_to(const char *addr) {
  rf_client *c = NULL;
  CHECK_OK(rf_client_connect(addr, NULL, &c));
  CHECK(c != NULL);
  return c;
}

static int value_eq(const rf_value *a, const rf_value *b);

static int bytes_eq(const char *pa, size_t la, const char *pb, size_t lb) {
  return la == lb && (la == 0 || memcmp(pa, pb, la) == 0);
}

static int value_eq(const rf_value *a, const rf_value *b) {
  rf_type t = rf_value_type(a);
  if (t != rf_value_type(b)) return 0;
  switch (t) {
    case RF_NIL:
      return 1;
    case RF_BOOLEAN: {
      bool x = false, y = false;
      return rf_value_boolean(a, &x) == RF_OK && rf_value_boolean(b, &y) == RF_OK && x == y;
    }
    case RF_NUMBER: {
      double x = 0, y = 0;
      rf_value_number(a, &x);
      rf_value_number(b, &y);
      return memcmp(&x, &y, sizeof x) == 0; /* bit patterns: NaN == NaN, 0.0 != -0.0 */
    }
    case RF_STRING: {
      const char *pa, *pb;
      size_t la, lb;
      rf_value_string(a, &pa, &la);
      rf_value_string(b, &pb, &lb);
      return bytes_eq(pa, la, pb, lb);
    }
    case RF_BUFFER: {
      const uint8_t *pa, *pb;
      size_t la, lb;
      rf_value_buffer(a, &pa, &la);
      rf_value_buffer(b, &pb, &lb);
      return bytes_eq((const char *)pa, la, (const char *)pb, lb);
    }
    case RF_VECTOR2: {
      rf_vector2 x, y;
      rf_value_vector2(a, &x);
      rf_value_vector2(b, &y);
      return memcmp(&x, &y, sizeof x) == 0;
    }
    case RF_VECTOR3: {
      rf_vector3 x, y;
      rf_value_vector3(a, &x);
      rf_value_vector3(b, &y);
      return memcmp(&x, &y, sizeof x) == 0;
    }
    case RF_CFRAME: {
      rf_cframe x, y;
      rf_value_cframe(a, &x);
      rf_value_cframe(b, &y);
      return memcmp(&x, &y, sizeof x) == 0;
    }
    case RF_COLOR3: {
      rf_color3 x, y;
      rf_value_color3(a, &x);
      rf_value_color3(b, &y);
      return memcmp(&x, &y, sizeof x) == 0;
    }
    case RF_INSTANCE: {
      uint64_t x = 0, y = 1;
      rf_value_instance(a, &x);
      rf_value_instance(b, &y);
      return x == y;
    }
    case RF_ARRAY: {
      size_t n = rf_value_len(a);
      if (n != rf_value_len(b)) return 0;
      for (size_t i = 0; i < n; i++)
        if (!value_eq(rf_value_index(a, i), rf_value_index(b, i))) return 0;
      return 1;
    }
    case RF_DICTIONARY: {
      size_t n = rf_value_len(a);
      if (n != rf_value_len(b)) return 0;
      for (size_t i = 0; i < n; i++) {
        const char *ka, *kb;
        size_t la, lb;
        const rf_value *va, *vb;
        if (rf_value_entry(a, i, &ka, &la, &va) != RF_OK) return 0;
        if (rf_value_entry(b, i, &kb, &lb, &vb) != RF_OK) return 0;
        if (!bytes_eq(ka, la, kb, lb) || !value_eq(va, vb)) return 0;
      }
      return 1;
    }
  }
  return 0;
}

static int tuple_eq(const rf_tuple *a, const rf_tuple *b) {
  size_t n = rf_tuple_len(a);
  if (n != rf_tuple_len(b)) return 0;
  for (size_t i = 0; i < n; i++)
    if (!value_eq(rf_tuple_get(a, i), rf_tuple_get(b, i))) return 0;
  return 1;
}

/* Every value type, NaN and infinities, NUL bytes, empty tables, nesting to depth 32. */
static rf_tuple *rich_tuple(void) {
  rf_tuple *t = rf_tuple_new();
  CHECK_OK(rf_tuple_push_nil(t));
  CHECK_OK(rf_tuple_push_boolean(t, true));
  CHECK_OK(rf_tuple_push_boolean(t, false));
  CHECK_OK(rf_tuple_push_number(t, 42.5));
  CHECK_OK(rf_tuple_push_number(t, NAN));
  CHECK_OK(rf_tuple_push_number(t, INFINITY));
  CHECK_OK(rf_tuple_push_number(t, -INFINITY));
  CHECK_OK(rf_tuple_push_number(t, -0.0));
  CHECK_OK(rf_tuple_push_string(t, "a\0b", 3));
  CHECK_OK(rf_tuple_push_string(t, NULL, 0));
  const uint8_t bytes[] = {0, 1, 255};
  CHECK_OK(rf_tuple_push_buffer(t, bytes, sizeof bytes));
  CHECK_OK(rf_tuple_push_vector2(t, (rf_vector2){1.5, -2.5}));
  CHECK_OK(rf_tuple_push_vector3(t, (rf_vector3){1, 2, 3}));
  rf_cframe cf = {{10, 20, 30}, {1, 0, 0, 0, 0, -1, 0, 1, 0}};
  CHECK_OK(rf_tuple_push_cframe(t, &cf));
  CHECK_OK(rf_tuple_push_color3(t, (rf_color3){0.25, 0.5, 1}));
  CHECK_OK(rf_tuple_push_instance(t, UINT64_MAX));
  CHECK_OK(rf_tuple_begin_dictionary(t));
  CHECK_OK(rf_tuple_push_key(t, "hp", 2));
  CHECK_OK(rf_tuple_push_number(t, 100));
  CHECK_OK(rf_tuple_push_key(t, "tags", 4));
  CHECK_OK(rf_tuple_begin_array(t));
  CHECK_OK(rf_tuple_push_string(t, "x", 1));
  CHECK_OK(rf_tuple_end(t));
  CHECK_OK(rf_tuple_push_key(t, "k\0ey", 4));
  CHECK_OK(rf_tuple_push_boolean(t, true));
  CHECK_OK(rf_tuple_end(t));
  CHECK_OK(rf_tuple_begin_array(t));
  CHECK_OK(rf_tuple_end(t));
  CHECK_OK(rf_tuple_begin_dictionary(t));
  CHECK_OK(rf_tuple_end(t));
  for (int i = 0; i < 32; i++) CHECK_OK(rf_tuple_begin_array(t));
  CHECK_OK(rf_tuple_push_string(t, "bottom", 6));
  for (int i = 0; i < 32; i++) CHECK_OK(rf_tuple_end(t));
  return t;
}

/* ---------- tests ---------- */

static void test_versions(void) {
  CHECK(rf_abi_version() == RF_ABI_VERSION);
  CHECK(rf_version() != NULL && strlen(rf_version()) > 0);
  CHECK(rf_last_error() != NULL);
}

static void test_tuple_builder_and_reading(void) {
  rf_tuple *t = rich_tuple();
  CHECK(rf_tuple_len(t) == 20);
  const rf_value *s = rf_tuple_get(t, 8);
  const char *p;
  size_t n;
  CHECK_OK(rf_value_string(s, &p, &n));
  CHECK(n == 3 && memcmp(p, "a\0b", 3) == 0);
  double d;
  CHECK_STATUS(rf_value_number(s, &d), RF_ERR_INVALID_ARGUMENT); /* wrong type */
  const rf_value *dict = rf_tuple_get(t, 16);
  CHECK(rf_value_type(dict) == RF_DICTIONARY && rf_value_len(dict) == 3);
  const char *key;
  size_t key_len;
  const rf_value *tags;
  CHECK_OK(rf_value_entry(dict, 1, &key, &key_len, &tags));
  CHECK(key_len == 4 && memcmp(key, "tags", 4) == 0);
  CHECK(rf_value_type(tags) == RF_ARRAY && rf_value_len(tags) == 1);
  CHECK(rf_value_index(tags, 1) == NULL);
  CHECK_STATUS(rf_value_entry(dict, 3, &key, &key_len, &tags), RF_ERR_INVALID_ARGUMENT);
  CHECK(rf_tuple_get(t, 20) == NULL);
  rf_tuple *copy = rf_tuple_clone(t);
  CHECK(tuple_eq(t, copy));
  rf_tuple_free(t);
  CHECK(rf_tuple_len(copy) == 20); /* the copy is independent */
  rf_tuple_free(copy);
  CHECK(rf_tuple_clone(NULL) == NULL);
}

/* Pointers handed out by a tuple stay valid while it lives, however much is pushed onto it
   afterwards (valgrind reports any read of memory that moved). */
static void test_borrowed_pointers_outlive_pushes(void) {
  rf_tuple *t = rf_tuple_new();
  CHECK_OK(rf_tuple_push_string(t, "short", 5));
  CHECK_OK(rf_tuple_push_buffer(t, (const uint8_t *)"\x01\x02", 2));
  const rf_value *first = rf_tuple_get(t, 0);
  const char *str;
  size_t str_len;
  CHECK_OK(rf_value_string(first, &str, &str_len));
  const uint8_t *buf;
  size_t buf_len;
  CHECK_OK(rf_value_buffer(rf_tuple_get(t, 1), &buf, &buf_len));
  for (int i = 0; i < 1000; i++) {
    CHECK_OK(rf_tuple_push_string(t, "more", 4));
    CHECK_OK(rf_tuple_begin_array(t));
    CHECK_OK(rf_tuple_push_number(t, i));
    CHECK_OK(rf_tuple_end(t));
  }
  CHECK(rf_tuple_len(t) == 2002);
  CHECK(str_len == 5 && memcmp(str, "short", 5) == 0);
  CHECK(buf_len == 2 && buf[0] == 1 && buf[1] == 2);
  CHECK(rf_tuple_get(t, 0) == first && rf_value_type(first) == RF_STRING);
  const char *last;
  size_t last_len;
  CHECK_OK(rf_value_string(rf_tuple_get(t, 2000), &last, &last_len));
  CHECK(last_len == 4 && memcmp(last, "more", 4) == 0);
  rf_tuple_free(t);
}

/* Reads its (short string) arguments, then builds the results on a copy of them: the pointers
   read first are used after every push. Answers the strings, then each again reversed. */
static void on_mirror(void *user, rf_server *s, rf_player_id p, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)p;
  rf_tuple *r = rf_tuple_clone(args);
  size_t n = rf_tuple_len(r);
  const char *ptrs[16];
  size_t lens[16];
  for (size_t i = 0; i < n && i < 16; i++) CHECK_OK(rf_value_string(rf_tuple_get(r, i), &ptrs[i], &lens[i]));
  for (size_t i = 0; i < n && i < 16; i++) {
    char reversed[64];
    for (size_t j = 0; j < lens[i] && j < sizeof reversed; j++) reversed[j] = ptrs[i][lens[i] - 1 - j];
    CHECK_OK(rf_tuple_push_string(r, reversed, lens[i]));
  }
  CHECK_OK(rf_server_return(s, call, r));
}

static void test_handler_builds_results_from_borrowed_arguments(rf_server *s, const char *addr) {
  CHECK_OK(rf_server_bind(s, "Mirror", on_mirror, NULL));
  rf_client *c = connect_to(addr);
  rf_tuple *args = rf_tuple_new();
  const char *words[12] = {"a", "bc", "def", "ghij", "klmno", "pq", "rst", "uvwx", "yz", "01", "234", "56789"};
  for (int i = 0; i < 12; i++) CHECK_OK(rf_tuple_push_string(args, words[i], strlen(words[i])));
  rf_tuple *out = NULL;
  CHECK_OK(rf_client_invoke_server(c, "Mirror", args, 10000, &out));
  CHECK(rf_tuple_len(out) == 24);
  for (int i = 0; i < 12; i++) {
    const char *p;
    size_t n;
    size_t len = strlen(words[i]);
    CHECK_OK(rf_value_string(rf_tuple_get(out, (size_t)i), &p, &n));
    CHECK(n == len && memcmp(p, words[i], len) == 0);
    CHECK_OK(rf_value_string(rf_tuple_get(out, (size_t)i + 12), &p, &n));
    CHECK(n == len);
    for (size_t j = 0; j < len; j++) CHECK(p[j] == words[i][len - 1 - j]);
  }
  rf_tuple_free(out);
  rf_tuple_free(args);
  rf_client_free(c);
}

static void test_values_round_trip(const char *addr) {
  rf_client *c = connect_to(addr);
  rf_tuple *args = rich_tuple();
  rf_tuple *out = NULL;
  CHECK_OK(rf_client_invoke_server(c, "Echo", args, 10000, &out));
  CHECK(out != NULL && tuple_eq(args, out));
  rf_tuple_free(out);
  rf_tuple *empty = rf_tuple_new();
  CHECK_OK(rf_client_invoke_server(c, "Echo", empty, 10000, &out));
  CHECK(out != NULL && rf_tuple_len(out) == 0);
  rf_tuple_free(out);
  CHECK_OK(rf_client_invoke_server(c, "Echo", NULL, 10000, &out)); /* NULL args: none */
  CHECK(rf_tuple_len(out) == 0);
  rf_tuple_free(out);
  rf_tuple_free(empty);
  rf_tuple_free(args);
  rf_client_free(c);
}

static void on_fail(void *user, rf_server *s, rf_player_id player, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)player;
  (void)args;
  CHECK_OK(rf_server_error(s, call, "server says no"));
}

static void on_client_fail(void *user, rf_client *c, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)args;
  CHECK_OK(rf_client_error(c, call, "client says no"));
}

static void test_remote_errors_both_ways(rf_server *s, const char *addr) {
  CHECK_OK(rf_server_bind(s, "Fail", on_fail, NULL));
  rf_client *c = connect_to(addr);
  rf_tuple *out = (rf_tuple *)1;
  CHECK_STATUS(rf_client_invoke_server(c, "Fail", NULL, 10000, &out), RF_ERR_REMOTE);
  CHECK(strcmp(rf_last_error(), "server says no") == 0);
  CHECK(out == NULL);
  CHECK_OK(rf_client_bind(c, "ClientFail", on_client_fail, NULL));
  rf_player_id me = 0;
  CHECK_OK(rf_client_player_id(c, &me));
  CHECK(me != 0);
  CHECK_STATUS(rf_server_invoke_client(s, me, "ClientFail", NULL, 10000, &out), RF_ERR_REMOTE);
  CHECK(strcmp(rf_last_error(), "client says no") == 0);
  rf_client_free(c);
}

struct delayed_reply {
  rf_server *server;
  rf_call_id call;
  long delay_ms;
  char tag[16];
};

static atomic_int delayed_done;

static void *reply_later(void *arg) {
  struct delayed_reply *d = (struct delayed_reply *)arg;
  sleep_ms(d->delay_ms);
  rf_tuple *r = rf_tuple_new();
  CHECK_OK(rf_tuple_push_string(r, d->tag, strlen(d->tag)));
  CHECK_OK(rf_server_return(d->server, d->call, r)); /* deferred reply from another thread */
  CHECK_STATUS(rf_server_return(d->server, d->call, NULL), RF_ERR_INVALID_ARGUMENT); /* twice */
  free(d);
  atomic_fetch_add(&delayed_done, 1);
  return NULL;
}

/* args: (delay_ms, tag) */
static void on_slow(void *user, rf_server *s, rf_player_id player, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)player;
  struct delayed_reply *d = (struct delayed_reply *)calloc(1, sizeof *d);
  double delay = 0;
  CHECK_OK(rf_value_number(rf_tuple_get(args, 0), &delay));
  const char *tag;
  size_t len;
  CHECK_OK(rf_value_string(rf_tuple_get(args, 1), &tag, &len));
  d->server = s;
  d->call = call;
  d->delay_ms = (long)delay;
  memcpy(d->tag, tag, len < 15 ? len : 15);
  pthread_t th;
  pthread_create(&th, NULL, reply_later, d);
  pthread_detach(th);
}

static rf_tuple *slow_args(double delay, const char *tag) {
  rf_tuple *t = rf_tuple_new();
  rf_tuple_push_number(t, delay);
  rf_tuple_push_string(t, tag, strlen(tag));
  return t;
}

static void test_timeout_and_late_reply(rf_server *s, const char *addr) {
  CHECK_OK(rf_server_bind(s, "Slow", on_slow, NULL));
  rf_client *c = connect_to(addr);
  rf_tuple *first = slow_args(300, "first");
  rf_tuple *out = NULL;
  CHECK_STATUS(rf_client_invoke_server(c, "Slow", first, 50, &out), RF_ERR_TIMEOUT);
  CHECK(out == NULL);
  /* The late "first" reply arrives while this call waits: it must not be taken for it. */
  rf_tuple *second = slow_args(600, "second");
  CHECK_OK(rf_client_invoke_server(c, "Slow", second, 20000, &out));
  const char *p = NULL;
  size_t n = 0;
  CHECK_OK(rf_value_string(rf_tuple_get(out, 0), &p, &n));
  CHECK(n == 6 && memcmp(p, "second", 6) == 0);
  rf_tuple_free(out);
  rf_tuple_free(first);
  rf_tuple_free(second);
  WAIT_UNTIL(atomic_load(&delayed_done) == 2);
  rf_client_free(c);
}

struct invoke_job {
  rf_server *server;
  rf_client *client;
  rf_player_id player;
  const char *function;
  uint32_t timeout_ms;
  rf_status status;
  double finished_at;
  atomic_int done;
  /* The first result when it is a boolean (1 or 0), else -1. */
  int answer;
};

static int first_boolean(const rf_tuple *out) {
  bool b = false;
  if (out == NULL || rf_tuple_len(out) == 0 || rf_value_boolean(rf_tuple_get(out, 0), &b) != RF_OK) return -1;
  return b ? 1 : 0;
}

static void *server_invokes(void *arg) {
  struct invoke_job *j = (struct invoke_job *)arg;
  rf_tuple *out = NULL;
  j->status = rf_server_invoke_client(j->server, j->player, j->function, NULL, j->timeout_ms, &out);
  j->finished_at = now_ms();
  j->answer = first_boolean(out);
  rf_tuple_free(out);
  atomic_store(&j->done, 1);
  return NULL;
}

static void *client_invokes(void *arg) {
  struct invoke_job *j = (struct invoke_job *)arg;
  rf_tuple *out = NULL;
  j->status = rf_client_invoke_server(j->client, j->function, NULL, j->timeout_ms, &out);
  j->finished_at = now_ms();
  j->answer = first_boolean(out);
  rf_tuple_free(out);
  atomic_store(&j->done, 1);
  return NULL;
}

static void never_reply(void *user, rf_client *c, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)c;
  (void)args;
  (void)call;
}

static void never_reply_server(void *user, rf_server *s, rf_player_id p, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)s;
  (void)p;
  (void)args;
  (void)call;
}

static size_t in_flight(rf_server *s) {
  size_t n = 0;
  CHECK_OK(rf_server_calls_in_flight(s, &n));
  return n;
}

static void test_disconnect_fails_invoke_client(rf_server *s, const char *addr) {
  rf_client *c = connect_to(addr);
  CHECK_OK(rf_client_bind(c, "Hang", never_reply, NULL));
  struct invoke_job job = {s, NULL, 0, "Hang", 0, RF_OK, 0, 0, -1};
  CHECK_OK(rf_client_player_id(c, &job.player));
  pthread_t th;
  pthread_create(&th, NULL, server_invokes, &job);
  WAIT_UNTIL(in_flight(s) == 1);
  double freed_at = now_ms();
  rf_client_free(c);
  pthread_join(th, NULL);
  CHECK(job.status == RF_ERR_DISCONNECTED);
  CHECK(job.finished_at - freed_at < 1000.0);
}

static atomic_int nested_seen;

static void on_outer(void *user, rf_server *s, rf_player_id player, const rf_tuple *args, rf_call_id call) {
  (void)user;
  rf_tuple *middle = NULL;
  rf_status st = rf_server_invoke_client(s, player, "Middle", args, 20000, &middle);
  if (st == RF_OK) {
    CHECK_OK(rf_server_return(s, call, middle));
  } else {
    CHECK_OK(rf_server_error(s, call, rf_last_error()));
  }
}

static void on_middle(void *user, rf_client *c, const rf_tuple *args, rf_call_id call) {
  (void)user;
  rf_tuple *inner = NULL;
  CHECK_OK(rf_client_invoke_server(c, "Echo", args, 20000, &inner));
  atomic_fetch_add(&nested_seen, 1);
  CHECK_OK(rf_client_return(c, call, inner));
}

static void test_nested_calls_with_one_worker(void) {
  char addr[64];
  rf_server *s = start_server(1, RF_DISPATCH_WORKERS, 256, addr, sizeof addr);
  CHECK_OK(rf_server_bind(s, "Outer", on_outer, NULL));
  rf_client *c = connect_to(addr);
  CHECK_OK(rf_client_bind(c, "Middle", on_middle, NULL));
  rf_tuple *args = rf_tuple_new();
  rf_tuple_push_string(args, "deep", 4);
  rf_tuple *out = NULL;
  CHECK_OK(rf_client_invoke_server(c, "Outer", args, 20000, &out));
  CHECK(out != NULL && tuple_eq(args, out));
  CHECK(atomic_load(&nested_seen) == 1);
  rf_tuple_free(out);
  rf_tuple_free(args);
  rf_client_free(c);
  rf_server_free(s);
}

/* ---------- inline handlers ---------- */

static void on_inline_add(void *user, rf_server *s, rf_player_id p, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)p;
  const rf_value *a = rf_tuple_get(args, 0), *b = rf_tuple_get(args, 1);
  double x = 0, y = 0;
  if (a == NULL || b == NULL || rf_value_number(a, &x) != RF_OK || rf_value_number(b, &y) != RF_OK) {
    CHECK_OK(rf_server_error(s, call, "Add takes two numbers"));
    return;
  }
  /* Blocking is refused on the event loop rather than deadlocking it. */
  rf_tuple *nothing = NULL;
  CHECK_STATUS(rf_server_invoke_client(s, p, "Anything", NULL, 1000, &nothing), RF_ERR_INVALID_ARGUMENT);
  rf_tuple *r = rf_tuple_new();
  rf_tuple_push_number(r, x + y);
  CHECK_OK(rf_server_return(s, call, r));
  /* One answer per call. */
  CHECK_STATUS(rf_server_return(s, call, NULL), RF_ERR_INVALID_ARGUMENT);
}

static void on_inline_silent(void *user, rf_server *s, rf_player_id p, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)s;
  (void)p;
  (void)args;
  (void)call;
}

/* Checks that `*out` holds exactly the number `expected`, then frees it and clears `*out`. */
static void take_one_number(rf_tuple **out, double expected) {
  double got = 0;
  CHECK(*out != NULL && rf_tuple_len(*out) == 1);
  CHECK_OK(rf_value_number(rf_tuple_get(*out, 0), &got));
  CHECK(got == expected);
  rf_tuple_free(*out);
  *out = NULL;
}

static void test_inline_handlers(rf_server *s, const char *addr) {
  CHECK_OK(rf_server_bind_inline(s, "Add", on_inline_add, NULL));
  CHECK_OK(rf_server_bind_inline(s, "Silent", on_inline_silent, NULL));
  CHECK_STATUS(rf_server_bind_inline(s, "X", NULL, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_bind_inline(NULL, "X", on_inline_add, NULL), RF_ERR_INVALID_ARGUMENT);
  rf_client *c = connect_to(addr);
  rf_tuple *args = rf_tuple_new();
  rf_tuple_push_number(args, 2);
  rf_tuple_push_number(args, 40);
  rf_tuple *out = NULL;
  CHECK_OK(rf_client_invoke_server(c, "Add", args, 20000, &out));
  take_one_number(&out, 42);
  CHECK_STATUS(rf_client_invoke_server(c, "Add", NULL, 20000, &out), RF_ERR_REMOTE);
  CHECK(strstr(rf_last_error(), "two numbers") != NULL);
  CHECK_STATUS(rf_client_invoke_server(c, "Silent", NULL, 20000, &out), RF_ERR_REMOTE);
  CHECK(strstr(rf_last_error(), "without answering") != NULL);
  CHECK_OK(rf_server_unbind(s, "Add"));
  CHECK_OK(rf_server_unbind(s, "Silent"));
  rf_tuple_free(args);
  rf_client_free(c);
}

static void on_client_inline_double(void *user, rf_client *c, const rf_tuple *args, rf_call_id call) {
  (void)user;
  double x = 0;
  const rf_value *a = rf_tuple_get(args, 0);
  if (a == NULL || rf_value_number(a, &x) != RF_OK) {
    CHECK_OK(rf_client_error(c, call, "Double takes a number"));
    return;
  }
  /* Blocking is refused on the client's event loop rather than deadlocking it. */
  rf_tuple *nothing = NULL;
  CHECK_STATUS(rf_client_invoke_server(c, "Add", NULL, 1000, &nothing), RF_ERR_INVALID_ARGUMENT);
  rf_tuple *r = rf_tuple_new();
  rf_tuple_push_number(r, 2 * x);
  CHECK_OK(rf_client_return(c, call, r));
}

static void on_client_inline_silent(void *user, rf_client *c, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)c;
  (void)args;
  (void)call;
}

static void test_client_inline_handlers(rf_server *s, const char *addr) {
  rf_client *c = connect_to(addr);
  CHECK_OK(rf_client_bind_inline(c, "Double", on_client_inline_double, NULL));
  CHECK_OK(rf_client_bind_inline(c, "Silent", on_client_inline_silent, NULL));
  CHECK_STATUS(rf_client_bind_inline(c, "X", NULL, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_client_bind_inline(NULL, "X", on_client_inline_double, NULL), RF_ERR_INVALID_ARGUMENT);
  rf_player_id me = 0;
  CHECK_OK(rf_client_player_id(c, &me));
  rf_tuple *args = rf_tuple_new();
  rf_tuple_push_number(args, 21);
  rf_tuple *out = NULL;
  CHECK_OK(rf_server_invoke_client(s, me, "Double", args, 20000, &out));
  take_one_number(&out, 42);
  CHECK_STATUS(rf_server_invoke_client(s, me, "Double", NULL, 20000, &out), RF_ERR_REMOTE);
  CHECK(strstr(rf_last_error(), "takes a number") != NULL);
  CHECK_STATUS(rf_server_invoke_client(s, me, "Silent", NULL, 20000, &out), RF_ERR_REMOTE);
  CHECK(strstr(rf_last_error(), "without answering") != NULL);
  rf_tuple_free(args);
  rf_client_free(c);
}

static pthread_t main_thread;

static void on_where(void *user, rf_server *s, rf_player_id p, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)p;
  (void)args;
  rf_tuple *r = rf_tuple_new();
  rf_tuple_push_boolean(r, pthread_equal(pthread_self(), main_thread) != 0);
  CHECK_OK(rf_server_return(s, call, r));
}

static void on_client_where(void *user, rf_client *c, const rf_tuple *args, rf_call_id call) {
  (void)user;
  (void)args;
  rf_tuple *r = rf_tuple_new();
  rf_tuple_push_boolean(r, pthread_equal(pthread_self(), main_thread) != 0);
  CHECK_OK(rf_client_return(c, call, r));
}

static size_t player_count(rf_server *s) {
  size_t n = 99;
  CHECK_OK(rf_server_player_count(s, &n));
  return n;
}

/* Pumps `dispatch` until `job` is done; returns the callbacks it reported running. */
#define PUMP_UNTIL_DONE(job, dispatch_call, total)        \
  do {                                                      \
    double deadline_ = now_ms() + 20000;                    \
    while (!atomic_load(&(job).done) && now_ms() < deadline_) { \
      uint32_t ran_ = 0;                                    \
      CHECK_OK(dispatch_call);                              \
      (total) += ran_;                                      \
    }                                                       \
  } while (0)

static void test_manual_dispatch(void) {
  char addr[64];
  rf_server *s = start_server(1, RF_DISPATCH_MANUAL, 256, addr, sizeof addr);
  CHECK_OK(rf_server_bind(s, "Where", on_where, NULL));
  rf_client_config *cc = rf_client_config_new();
  CHECK_OK(rf_client_config_set_dispatch(cc, RF_DISPATCH_MANUAL));
  /* A client whose loop sleeps at once still sees every answer. */
  CHECK_OK(rf_client_config_set_busy_poll_us(cc, 0));
  rf_client *c = NULL;
  CHECK_OK(rf_client_connect(addr, cc, &c));
  rf_client_config_free(cc);
  CHECK_OK(rf_client_bind(c, "Where", on_client_where, NULL));

  /* A player joined, but no hook is registered: no callback of ours runs, so none is counted
     (the join is queued before the client is welcomed, so this pump sees it). */
  uint32_t ran = 99;
  CHECK_OK(rf_server_dispatch(s, 16, 200, &ran));
  CHECK(ran == 0);

  struct invoke_job job = {NULL, c, 0, "Where", 20000, RF_OK, 0, 0, -1};
  pthread_t th;
  pthread_create(&th, NULL, client_invokes, &job);
  uint32_t total = 0;
  PUMP_UNTIL_DONE(job, rf_server_dispatch(s, 0, 20, &ran_), total);
  pthread_join(th, NULL);
  CHECK(job.status == RF_OK);
  CHECK(job.answer == 1); /* the handler ran on this (the pumping) thread */
  CHECK(total == 1);

  /* The client side pumps its own handlers too. */
  struct invoke_job back = {s, NULL, 0, "Where", 20000, RF_OK, 0, 0, -1};
  CHECK_OK(rf_client_player_id(c, &back.player));
  pthread_create(&th, NULL, server_invokes, &back);
  total = 0;
  PUMP_UNTIL_DONE(back, rf_client_dispatch(c, 8, 20, &ran_), total);
  pthread_join(th, NULL);
  CHECK(back.status == RF_OK);
  CHECK(back.answer == 1);
  CHECK(total == 1);

  /* The player leaving queues another internal job with nothing to call. */
  rf_client_free(c);
  WAIT_UNTIL(player_count(s) == 0);
  ran = 99;
  CHECK_OK(rf_server_dispatch(s, 16, 200, &ran));
  CHECK(ran == 0);
  rf_server_free(s);
}

#define EVENTS 300
static int ticks[EVENTS];
static atomic_int tick_count;

static void on_tick(void *user, rf_server *s, rf_player_id p, const rf_tuple *args) {
  (void)user;
  (void)s;
  (void)p;
  double v = -1;
  rf_value_number(rf_tuple_get(args, 0), &v);
  int i = atomic_load(&tick_count);
  if (i < EVENTS) ticks[i] = (int)v;
  atomic_fetch_add(&tick_count, 1);
}

struct news {
  atomic_int count;
  atomic_int in_order;
};

static void on_news(void *user, rf_client *c, const rf_tuple *args) {
  (void)c;
  struct news *n = (struct news *)user;
  double v = -1;
  rf_value_number(rf_tuple_get(args, 0), &v);
  if ((int)v != atomic_load(&n->count)) atomic_store(&n->in_order, 0);
  atomic_fetch_add(&n->count, 1);
}

static void test_events(rf_server *s, const char *addr) {
  CHECK_OK(rf_server_bind_event(s, "Tick", on_tick, NULL));
  rf_client *a = connect_to(addr);
  rf_client *b = connect_to(addr);
  rf_tuple *t = rf_tuple_new();
  for (int i = 0; i < EVENTS; i++) {
    rf_tuple *one = rf_tuple_new();
    rf_tuple_push_number(one, i);
    CHECK_OK(rf_client_fire_server(a, "Tick", one));
    rf_tuple_free(one);
  }
  WAIT_UNTIL(atomic_load(&tick_count) == EVENTS);
  int ordered = 1;
  for (int i = 0; i < EVENTS; i++) ordered &= ticks[i] == i;
  CHECK(ordered);

  struct news na, nb;
  atomic_init(&na.count, 0);
  atomic_init(&na.in_order, 1);
  atomic_init(&nb.count, 0);
  atomic_init(&nb.in_order, 1);
  CHECK_OK(rf_client_bind_event(a, "News", on_news, &na));
  CHECK_OK(rf_client_bind_event(b, "News", on_news, &nb));
  for (int i = 0; i < 100; i++) {
    rf_tuple *one = rf_tuple_new();
    rf_tuple_push_number(one, i);
    CHECK_OK(rf_server_fire_all_clients(s, "News", one));
    rf_tuple_free(one);
  }
  rf_player_id pa = 0;
  CHECK_OK(rf_client_player_id(a, &pa));
  rf_tuple_push_number(t, 100);
  CHECK_OK(rf_server_fire_client(s, pa, "News", t));
  WAIT_UNTIL(atomic_load(&na.count) == 101 && atomic_load(&nb.count) == 100);
  CHECK(atomic_load(&na.in_order) && atomic_load(&nb.in_order));
  CHECK_STATUS(rf_server_fire_client(s, 12345, "News", t), RF_ERR_NOT_FOUND);
  rf_tuple_free(t);
  rf_client_free(a);
  rf_client_free(b);
}

static void on_auth(void *user, rf_server *s, const char *place, const uint8_t *token, size_t len, rf_auth *auth) {
  (void)user;
  (void)s;
  if (len == 4 && memcmp(token, "good", 4) == 0) {
    CHECK_OK(rf_auth_accept(auth, 7, "bob"));
  } else {
    char reason[128];
    snprintf(reason, sizeof reason, "bad token for %s", place);
    CHECK_OK(rf_auth_reject(auth, reason));
  }
  CHECK_STATUS(rf_auth_accept(auth, 1, "twice"), RF_ERR_INVALID_ARGUMENT);
}

static void test_authentication(void) {
  char addr[64];
  rf_server *s = start_server(2, RF_DISPATCH_WORKERS, 256, addr, sizeof addr);
  CHECK_OK(rf_server_set_authenticator(s, on_auth, NULL));
  rf_client_config *cfg = rf_client_config_new();
  CHECK_OK(rf_client_config_set_token(cfg, "good", 4));
  CHECK_OK(rf_client_config_set_connect_timeout(cfg, 10000));
  rf_client *good = NULL;
  CHECK_OK(rf_client_connect(addr, cfg, &good));
  rf_player_id id = 0;
  CHECK_OK(rf_client_player_id(good, &id));
  uint64_t user_id = 0;
  CHECK_OK(rf_server_player_user_id(s, id, &user_id));
  CHECK(user_id == 7);
  CHECK_STATUS(rf_server_player_user_id(s, 999999, &user_id), RF_ERR_NOT_FOUND);

  CHECK_OK(rf_client_config_set_token(cfg, "bad", 3));
  CHECK_OK(rf_client_config_set_place(cfg, "arena"));
  rf_client *bad = (rf_client *)1;
  CHECK_STATUS(rf_client_connect(addr, cfg, &bad), RF_ERR_REJECTED);
  CHECK(strcmp(rf_last_error(), "bad token for arena") == 0);
  CHECK(bad == NULL);
  rf_client_config_free(cfg);
  rf_client_free(good);
  rf_server_free(s);
}

static atomic_int added, removed;

static void on_added(void *user, rf_server *s, rf_player_id p) {
  (void)user;
  (void)s;
  (void)p;
  atomic_fetch_add(&added, 1);
}

static void on_removed(void *user, rf_server *s, rf_player_id p) {
  (void)user;
  (void)s;
  (void)p;
  atomic_fetch_add(&removed, 1);
}

static void test_players_and_kick(void) {
  char addr[64];
  rf_server *s = start_server(2, RF_DISPATCH_WORKERS, 256, addr, sizeof addr);
  CHECK_OK(rf_server_on_player_added(s, on_added, NULL));
  CHECK_OK(rf_server_on_player_removing(s, on_removed, NULL));
  rf_client *a = connect_to(addr);
  rf_client *b = connect_to(addr);
  WAIT_UNTIL(atomic_load(&added) == 2);
  CHECK(player_count(s) == 2);
  rf_player_id pa = 0;
  CHECK_OK(rf_client_player_id(a, &pa));
  CHECK_OK(rf_server_kick(s, pa, "cheating"));
  WAIT_UNTIL(atomic_load(&removed) == 1);
  CHECK(player_count(s) == 1);
  rf_tuple *out = NULL;
  CHECK_STATUS(rf_client_invoke_server(a, "Echo", NULL, 10000, &out), RF_ERR_DISCONNECTED);
  CHECK(strstr(rf_last_error(), "cheating") != NULL);
  CHECK_STATUS(rf_server_kick(s, pa, NULL), RF_ERR_NOT_FOUND);
  CHECK_STATUS(rf_server_invoke_client(s, pa, "Echo", NULL, 1000, &out), RF_ERR_NOT_FOUND);
  CHECK_OK(rf_client_invoke_server(b, "Echo", NULL, 10000, &out));
  rf_tuple_free(out);
  rf_client_free(a);
  rf_client_free(b);
  WAIT_UNTIL(atomic_load(&removed) == 2);
  rf_server_free(s);
}

static void test_unbound_queue_and_limit(void) {
  char addr[64];
  rf_server *s = start_server(2, RF_DISPATCH_WORKERS, 2, addr, sizeof addr);
  rf_client *c = connect_to(addr);
  struct invoke_job jobs[2];
  pthread_t th[2];
  for (int i = 0; i < 2; i++) {
    struct invoke_job j = {NULL, c, 0, "Later", 20000, RF_OK, 0, 0, -1};
    jobs[i] = j;
    pthread_create(&th[i], NULL, client_invokes, &jobs[i]);
  }
  size_t queued = 0;
  WAIT_UNTIL((rf_server_queued_calls(s, &queued), queued == 2));
  rf_tuple *out = NULL;
  double started = now_ms();
  CHECK_STATUS(rf_client_invoke_server(c, "Later", NULL, 20000, &out), RF_ERR_LIMIT);
  CHECK(now_ms() - started < 10000);
  CHECK_OK(rf_server_bind(s, "Later", on_echo, NULL));
  for (int i = 0; i < 2; i++) {
    pthread_join(th[i], NULL);
    CHECK(jobs[i].status == RF_OK);
  }
  CHECK_OK(rf_server_unbind(s, "Later"));
  CHECK_STATUS(rf_server_unbind(s, "Later"), RF_ERR_INVALID_ARGUMENT);
  rf_client_free(c);
  rf_server_free(s);
}

static void test_shutdown_with_pending_calls(void) {
  char addr[64];
  rf_server *s = start_server(2, RF_DISPATCH_WORKERS, 256, addr, sizeof addr);
  CHECK_OK(rf_server_bind(s, "Hang", never_reply_server, NULL));
  rf_client *c = connect_to(addr);
  CHECK_OK(rf_client_bind(c, "HangToo", never_reply, NULL));
  struct invoke_job from_client = {NULL, c, 0, "Hang", 0, RF_OK, 0, 0, -1};
  struct invoke_job from_server = {s, NULL, 0, "HangToo", 0, RF_OK, 0, 0, -1};
  CHECK_OK(rf_client_player_id(c, &from_server.player));
  pthread_t t1, t2;
  pthread_create(&t1, NULL, client_invokes, &from_client);
  pthread_create(&t2, NULL, server_invokes, &from_server);
  WAIT_UNTIL(in_flight(s) == 1);
  sleep_ms(50);
  rf_server_free(s); /* pending calls fail; threads joined before it returns */
  pthread_join(t2, NULL);
  CHECK(from_server.status == RF_ERR_CLOSED);
  pthread_join(t1, NULL);
  CHECK(from_client.status == RF_ERR_DISCONNECTED);
  rf_tuple *out = NULL;
  CHECK_STATUS(rf_client_invoke_server(c, "Echo", NULL, 1000, &out), RF_ERR_DISCONNECTED);
  rf_client_free(c);
}

static void test_misuse(rf_server *s, const char *addr) {
  rf_tuple *out = NULL;
  uint16_t port;
  size_t count;
  uint32_t ran;
  rf_player_id pid;
  rf_server *none = NULL;
  /* NULL handles and out-pointers */
  CHECK_STATUS(rf_server_new(NULL, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_listen(NULL, "127.0.0.1:0"), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_listen(s, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_local_port(NULL, &port), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_player_count(s, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_bind(s, "X", NULL, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_bind(NULL, "X", on_echo, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_invoke_client(s, 1, "X", NULL, 0, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_return(NULL, 1, rf_tuple_new()), RF_ERR_INVALID_ARGUMENT); /* consumed */
  CHECK_STATUS(rf_server_error(s, 1, NULL), RF_ERR_INVALID_ARGUMENT);
  /* This build has no Luau (the library as a C engine gets it): loading a script says so. */
  CHECK_STATUS(rf_server_load_script(s, "server.luau"), RF_ERR_SCRIPT);
  CHECK(strstr(rf_last_error(), "luau") != NULL);
  CHECK_STATUS(rf_server_load_script(NULL, "server.luau"), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_client_load_script(NULL, "client.luau"), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_client_connect(NULL, NULL, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_client_invoke_server(NULL, "Echo", NULL, 0, &out), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_client_player_id(NULL, &pid), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_client_dispatch(NULL, 1, 0, &ran), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_workers(NULL, 1), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_client_config_set_place(NULL, "p"), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_auth_accept(NULL, 1, "x"), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_value_number(NULL, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK(rf_value_type(NULL) == RF_NIL && rf_value_len(NULL) == 0 && rf_value_index(NULL, 0) == NULL);
  CHECK(rf_tuple_len(NULL) == 0 && rf_tuple_get(NULL, 0) == NULL);
  CHECK_STATUS(rf_tuple_push_nil(NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_tuple_push_string(NULL, "x", 1), RF_ERR_INVALID_ARGUMENT);
  /* freeing NULL is a no-op */
  rf_server_free(NULL);
  rf_client_free(NULL);
  rf_tuple_free(NULL);
  rf_server_config_free(NULL);
  rf_client_config_free(NULL);
  /* bad values */
  rf_server_config *cfg = rf_server_config_new();
  CHECK_STATUS(rf_server_config_set_workers(cfg, 0), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_dispatch(cfg, (rf_dispatch)7), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_max_payload(cfg, 10), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_rate_limit(cfg, 10, 0), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_max_output_buffer(cfg, 10), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_handshake_timeout(cfg, 0), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_max_inflight_per_player(cfg, 0), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_max_players(cfg, 0), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_idle_timeout(NULL, 0), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_rate_cut_after(NULL, 0), RF_ERR_INVALID_ARGUMENT);
  CHECK_OK(rf_server_config_set_rate_cut_after(cfg, 0)); /* never cut: only slowed */
  CHECK_OK(rf_server_new(cfg, &none));
  CHECK_STATUS(rf_server_local_port(none, &port), RF_ERR_INVALID_ARGUMENT); /* not listening */
  CHECK_STATUS(rf_server_dispatch(none, 1, 0, &ran), RF_ERR_INVALID_ARGUMENT); /* worker mode */
  CHECK_STATUS(rf_server_listen(none, "not an address"), RF_ERR_IO);
  CHECK_STATUS(rf_server_attach(none, "127.0.0.1:1", "lobby", NULL), RF_ERR_IO); /* nothing there */
  CHECK(strstr(rf_last_error(), "relay") != NULL);
  CHECK_STATUS(rf_server_attach(none, NULL, "lobby", NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_OK(rf_server_queued_calls(none, &count));
  rf_server_free(none);
  rf_server_config_free(cfg);
  rf_client_config *ccfg = rf_client_config_new();
  CHECK_STATUS(rf_client_config_set_connect_timeout(ccfg, 0), RF_ERR_INVALID_ARGUMENT);
  CHECK_OK(rf_client_config_set_idle_timeout(ccfg, 30000));
  CHECK_STATUS(rf_client_config_set_busy_poll_us(ccfg, 1000001), RF_ERR_INVALID_ARGUMENT);
  CHECK(strstr(rf_last_error(), "busy poll") != NULL);
  CHECK_OK(rf_client_config_set_busy_poll_us(ccfg, 1000000));
  CHECK_STATUS(rf_client_config_set_token(ccfg, NULL, 5), RF_ERR_INVALID_ARGUMENT);
  rf_client_config_free(ccfg);
  rf_client *nowhere = (rf_client *)1;
  CHECK_STATUS(rf_client_connect("127.0.0.1:1", NULL, &nowhere), RF_ERR_IO);
  CHECK(nowhere == NULL);
  /* unbalanced tuple builders */
  rf_tuple *t = rf_tuple_new();
  CHECK_STATUS(rf_tuple_end(t), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_tuple_push_key(t, "k", 1), RF_ERR_INVALID_ARGUMENT);
  CHECK_OK(rf_tuple_begin_dictionary(t));
  CHECK_STATUS(rf_tuple_push_number(t, 1), RF_ERR_INVALID_ARGUMENT); /* value without key */
  CHECK_STATUS(rf_tuple_begin_array(t), RF_ERR_INVALID_ARGUMENT);
  CHECK_OK(rf_tuple_push_key(t, "k", 1));
  CHECK_STATUS(rf_tuple_push_key(t, "k2", 2), RF_ERR_INVALID_ARGUMENT); /* key twice */
  CHECK_STATUS(rf_tuple_end(t), RF_ERR_INVALID_ARGUMENT); /* key without value */
  rf_client *c = connect_to(addr);
  CHECK_STATUS(rf_client_invoke_server(c, "Echo", t, 1000, &out), RF_ERR_INVALID_ARGUMENT); /* open */
  CHECK(out == NULL);
  CHECK_OK(rf_tuple_push_number(t, 1));
  CHECK_OK(rf_tuple_end(t));
  CHECK_OK(rf_client_invoke_server(c, "Echo", t, 10000, &out));
  CHECK(tuple_eq(t, out));
  rf_tuple_free(out);
  for (int i = 0; i < 300; i++) rf_tuple_begin_array(t); /* past RF_MAX_BUILD_DEPTH */
  CHECK_STATUS(rf_tuple_begin_array(t), RF_ERR_LIMIT);
  rf_tuple_free(t);
  /* nesting deeper than the server's limit is refused before sending */
  rf_tuple *deep = rf_tuple_new();
  for (int i = 0; i < 100; i++) rf_tuple_begin_array(deep);
  for (int i = 0; i < 100; i++) rf_tuple_end(deep);
  CHECK_STATUS(rf_client_invoke_server(c, "Echo", deep, 1000, &out), RF_ERR_INVALID_ARGUMENT);
  rf_tuple_free(deep);
  /* payload over the server's 1 MiB limit */
  rf_tuple *big = rf_tuple_new();
  char *blob = (char *)calloc(1, 2 << 20);
  rf_tuple_push_buffer(big, (const uint8_t *)blob, 2 << 20);
  free(blob);
  CHECK_STATUS(rf_client_invoke_server(c, "Echo", big, 1000, &out), RF_ERR_LIMIT);
  rf_tuple_free(big);
  /* names: bad UTF-8, unknown call ids */
  CHECK_STATUS(rf_client_invoke_server(c, "\xff\xfe", NULL, 1000, &out), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_client_return(c, 0xdeadbeef, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_return(s, 0xdeadbeef, NULL), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_error(s, 0, "x"), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_client_unbind(c, "never bound"), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_invoke_client(s, 424242, "Echo", NULL, 1000, &out), RF_ERR_NOT_FOUND);
  rf_client_free(c);
}

/* Through a relay started by the test driver: the same API, served via rf_server_attach. */
static void test_through_a_relay(const char *hosts_addr, const char *players_addr) {
  rf_server *s = NULL;
  CHECK_OK(rf_server_new(NULL, &s));
  CHECK_OK(rf_server_bind(s, "Echo", on_echo, NULL));
  CHECK_OK(rf_server_set_authenticator(s, on_auth, NULL));
  CHECK_STATUS(rf_server_attach(s, hosts_addr, "lobby", "wrong secret"), RF_ERR_REJECTED);
  CHECK_OK(rf_server_attach(s, hosts_addr, "lobby", "s3cret"));
  rf_client_config *cfg = rf_client_config_new();
  CHECK_OK(rf_client_config_set_place(cfg, "lobby"));
  CHECK_OK(rf_client_config_set_token(cfg, "good", 4));
  rf_client *c = NULL;
  CHECK_OK(rf_client_connect(players_addr, cfg, &c));
  rf_player_id id = 0;
  CHECK_OK(rf_client_player_id(c, &id));
  uint64_t user_id = 0;
  CHECK_OK(rf_server_player_user_id(s, id, &user_id));
  CHECK(user_id == 7);
  rf_tuple *args = rich_tuple();
  rf_tuple *out = NULL;
  CHECK_OK(rf_client_invoke_server(c, "Echo", args, 10000, &out));
  CHECK(out != NULL && tuple_eq(args, out));
  rf_tuple_free(out);
  CHECK_OK(rf_client_bind(c, "ClientFail", on_client_fail, NULL));
  CHECK_STATUS(rf_server_invoke_client(s, id, "ClientFail", NULL, 10000, &out), RF_ERR_REMOTE);
  CHECK(strcmp(rf_last_error(), "client says no") == 0);
  CHECK_OK(rf_client_config_set_token(cfg, "bad", 3));
  rf_client *bad = NULL;
  CHECK_STATUS(rf_client_connect(players_addr, cfg, &bad), RF_ERR_REJECTED);
  CHECK(strcmp(rf_last_error(), "bad token for lobby") == 0);
  rf_client_config_free(cfg);
  rf_tuple_free(args);
  rf_client_free(c);
  rf_server_free(s);
}

/* A client config over TLS trusting `ca`, optionally naming the server. */
static rf_client_config *tls_client_config(const char *ca, const char *server_name) {
  rf_client_config *cc = rf_client_config_new();
  CHECK_OK(rf_client_config_set_connect_timeout(cc, 5000));
  CHECK_OK(rf_client_config_set_tls(cc, ca));
  if (server_name) CHECK_OK(rf_client_config_set_server_name(cc, server_name));
  return cc;
}

/* Connecting with `cc` must fail with RF_ERR_TLS of kind `want`; frees `cc`. */
static void check_tls_failure(const char *addr, rf_client_config *cc, rf_tls_error want) {
  rf_client *c = NULL;
  CHECK_STATUS(rf_client_connect(addr, cc, &c), RF_ERR_TLS);
  CHECK(c == NULL);
  CHECK(rf_last_tls_error() == want);
  rf_client_config_free(cc);
}

/* TLS: the setters, a call over TLS, each error a caller acts on, and a reload. */
static void test_tls(const char *cert, const char *key, const char *ca) {
  rf_server_config *cfg = rf_server_config_new();
  CHECK_STATUS(rf_server_config_set_tls12(cfg, true), RF_ERR_INVALID_ARGUMENT);
  CHECK(rf_last_tls_error() == RF_TLS_NONE);
  CHECK_STATUS(rf_server_config_set_relay_client_cert(cfg, cert, key), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_config_set_tls(cfg, NULL, key), RF_ERR_INVALID_ARGUMENT);
  /* An unreadable certificate fails at creation, naming the file. */
  CHECK_OK(rf_server_config_set_tls(cfg, "/nonexistent/cert.pem", key));
  rf_server *s = NULL;
  CHECK_STATUS(rf_server_new(cfg, &s), RF_ERR_TLS);
  CHECK(rf_last_tls_error() == RF_TLS_BAD_CONFIG);
  CHECK(strstr(rf_last_error(), "/nonexistent/cert.pem") != NULL);
  CHECK_OK(rf_server_config_set_tls(cfg, cert, key));
  CHECK_OK(rf_server_config_set_tls12(cfg, true));
  CHECK_OK(rf_server_config_set_relay_tls(cfg, ca));
  CHECK_OK(rf_server_config_set_relay_client_cert(cfg, cert, key));
  CHECK_OK(rf_server_new(cfg, &s));
  rf_server_config_free(cfg);
  CHECK_OK(rf_server_listen(s, "127.0.0.1:0"));
  CHECK_OK(rf_server_bind(s, "Echo", on_echo, NULL));
  uint16_t port = 0;
  CHECK_OK(rf_server_local_port(s, &port));
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);

  rf_client_config *cc = rf_client_config_new();
  CHECK_STATUS(rf_client_config_set_server_name(cc, "localhost"), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_client_config_set_client_cert(cc, cert, key), RF_ERR_INVALID_ARGUMENT);
  rf_client_config_free(cc);
  cc = tls_client_config(ca, "localhost");
  /* The server asks for no client certificate; presenting one does no harm. */
  CHECK_OK(rf_client_config_set_client_cert(cc, cert, key));
  rf_client *c = NULL;
  CHECK_OK(rf_client_connect(addr, cc, &c));
  rf_client_config_free(cc);
  rf_tuple *args = rf_tuple_new();
  CHECK_OK(rf_tuple_push_number(args, 7));
  rf_tuple *out = NULL;
  CHECK_OK(rf_client_invoke_server(c, "Echo", args, 5000, &out));
  take_one_number(&out, 7);

  /* Each failure has its kind. */
  check_tls_failure(addr, tls_client_config(cert, NULL), RF_TLS_UNTRUSTED_CERTIFICATE);
  check_tls_failure(addr, tls_client_config(ca, "game.example.com"), RF_TLS_WRONG_SERVER_NAME);
  rf_client_config *plain = rf_client_config_new();
  CHECK_OK(rf_client_config_set_connect_timeout(plain, 5000));
  check_tls_failure(addr, plain, RF_TLS_REQUIRED);

  /* Reloading keeps the connected player. */
  CHECK_OK(rf_server_reload_tls(s));
  CHECK_OK(rf_client_invoke_server(c, "Echo", args, 5000, &out));
  take_one_number(&out, 7);
  rf_tuple_free(args);
  rf_client_free(c);
  rf_server_free(s);

  /* A server without TLS has nothing to reload. */
  char plain_addr[64];
  rf_server *p = start_server(1, RF_DISPATCH_WORKERS, 16, plain_addr, sizeof plain_addr);
  CHECK_STATUS(rf_server_reload_tls(p), RF_ERR_INVALID_ARGUMENT);
  check_tls_failure(plain_addr, tls_client_config(ca, NULL), RF_TLS_NOT_TLS);
  rf_server_free(p);
}

/* rf_server_metrics: the size first, then the text; a buffer too small gets RF_ERR_LIMIT and is
   left as it was. */
static void test_metrics(void) {
  char addr[64];
  rf_server *s = start_server(2, RF_DISPATCH_WORKERS, 256, addr, sizeof addr);
  CHECK_OK(rf_server_bind(s, "Echo", on_echo, NULL));
  CHECK_OK(rf_server_bind(s, "Fail", on_fail, NULL));
  rf_client *c = NULL;
  CHECK_OK(rf_client_connect(addr, NULL, &c));
  for (int i = 0; i < 3; i++) {
    rf_tuple *out = NULL;
    CHECK_OK(rf_client_invoke_server(c, "Echo", NULL, 10000, &out));
    rf_tuple_free(out);
  }
  rf_tuple *out = NULL;
  CHECK_STATUS(rf_client_invoke_server(c, "Fail", NULL, 10000, &out), RF_ERR_REMOTE);

  size_t len = 0;
  CHECK_OK(rf_server_metrics(s, NULL, 0, &len));
  CHECK(len > 0);
  size_t cap = len + 4096;
  char *text = malloc(cap);
  CHECK(text != NULL);
  text[0] = 'x';
  CHECK_STATUS(rf_server_metrics(s, text, 16, &len), RF_ERR_LIMIT);
  CHECK(text[0] == 'x');
  CHECK_OK(rf_server_metrics(s, text, cap, &len));
  CHECK(strlen(text) == len);
  CHECK(strstr(text, "remotefn_server_players 1\n") != NULL);
  CHECK(strstr(text, "remotefn_server_calls_total{function=\"Echo\",outcome=\"ok\"} 3\n") != NULL);
  CHECK(strstr(text, "remotefn_server_calls_total{function=\"Fail\",outcome=\"error\"} 1\n") != NULL);
  CHECK(strstr(text, "remotefn_server_handler_seconds_count{function=\"Echo\"} 3\n") != NULL);
  free(text);
  CHECK_STATUS(rf_server_metrics(NULL, NULL, 0, &len), RF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(rf_server_metrics(s, NULL, 0, NULL), RF_ERR_INVALID_ARGUMENT);
  rf_client_free(c);
  rf_server_free(s);
}

int main(int argc, char **argv) {
  main_thread = pthread_self();
  atomic_init(&delayed_done, 0);
  atomic_init(&nested_seen, 0);
  atomic_init(&tick_count, 0);
  atomic_init(&added, 0);
  atomic_init(&removed, 0);

  test_versions();
  test_tuple_builder_and_reading();
  test_borrowed_pointers_outlive_pushes();

  char addr[64];
  rf_server *s = start_server(4, RF_DISPATCH_WORKERS, 256, addr, sizeof addr);
  test_values_round_trip(addr);
  test_handler_builds_results_from_borrowed_arguments(s, addr);
  test_remote_errors_both_ways(s, addr);
  test_timeout_and_late_reply(s, addr);
  test_disconnect_fails_invoke_client(s, addr);
  test_events(s, addr);
  test_misuse(s, addr);
  test_inline_handlers(s, addr);
  test_client_inline_handlers(s, addr);
  rf_server_free(s);

  test_nested_calls_with_one_worker();
  test_manual_dispatch();
  test_authentication();
  test_players_and_kick();
  test_unbound_queue_and_limit();
  test_shutdown_with_pending_calls();
  test_metrics();
  const char *cert = getenv("RF_TEST_TLS_CERT"), *key = getenv("RF_TEST_TLS_KEY"),
             *ca = getenv("RF_TEST_TLS_CA");
  if (cert && key && ca) {
    test_tls(cert, key, ca);
  } else {
    fprintf(stderr, "abi_test: RF_TEST_TLS_CERT, RF_TEST_TLS_KEY and RF_TEST_TLS_CA not set; skipping TLS tests\n");
  }
  if (argc == 3) {
    test_through_a_relay(argv[1], argv[2]);
  } else {
    fprintf(stderr, "abi_test: no relay given (usage: abi_test HOSTS_ADDR PLAYERS_ADDR); skipping relay tests\n");
  }

  if (rf_test_failures) {
    fprintf(stderr, "abi_test: %d check(s) failed\n", rf_test_failures);
    return 1;
  }
  printf("abi_test: all checks passed\n");
  return 0;
}
