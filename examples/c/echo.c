/* A game server and one of its players in one C program: the player invokes "Echo" and the
 * server's OnServerInvoke handler answers with the arguments it was given. It checks that the
 * library it loaded speaks the ABI of the header it was compiled with, and exits 0 when the
 * round trip worked.
 *
 *   cc echo.c $(pkg-config --cflags --libs remotefn) -o echo && ./echo
 *   cc echo.c $(pkg-config --cflags --libs --static remotefn-static) -o echo && ./echo
 */
#include <remotefn.h>

#include <stdio.h>
#include <string.h>

static void on_echo(void *user, rf_server *server, rf_player_id player, const rf_tuple *args,
                    rf_call_id call) {
  (void)user;
  (void)player;
  /* Completes the call with a copy of the arguments (rf_server_return consumes it). */
  if (rf_server_return(server, call, rf_tuple_clone(args)) != RF_OK) {
    fprintf(stderr, "return failed: %s\n", rf_last_error());
  }
}

static int fail(const char *what) {
  fprintf(stderr, "%s failed: %s\n", what, rf_last_error());
  return 1;
}

int main(void) {
  if (rf_abi_version() != RF_ABI_VERSION) {
    fprintf(stderr, "libremotefn speaks ABI %u, this program was built for %u\n",
            (unsigned)rf_abi_version(), (unsigned)RF_ABI_VERSION);
    return 1;
  }
  rf_server *server = NULL;
  if (rf_server_new(NULL, &server) != RF_OK) return fail("rf_server_new");
  if (rf_server_bind(server, "Echo", on_echo, NULL) != RF_OK) return fail("rf_server_bind");
  if (rf_server_listen(server, "127.0.0.1:0") != RF_OK) return fail("rf_server_listen");
  uint16_t port = 0;
  if (rf_server_local_port(server, &port) != RF_OK) return fail("rf_server_local_port");

  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
  rf_client *client = NULL;
  if (rf_client_connect(addr, NULL, &client) != RF_OK) return fail("rf_client_connect");

  rf_tuple *args = rf_tuple_new();
  const char *greeting = "hello from C";
  rf_tuple_push_string(args, greeting, strlen(greeting));
  rf_tuple_push_number(args, 42);
  rf_tuple *results = NULL;
  rf_status status = rf_client_invoke_server(client, "Echo", args, 5000, &results);
  rf_tuple_free(args);
  if (status != RF_OK) return fail("rf_client_invoke_server");

  const char *text = NULL;
  size_t len = 0;
  double number = 0;
  int ok = rf_tuple_len(results) == 2 &&
           rf_value_string(rf_tuple_get(results, 0), &text, &len) == RF_OK &&
           len == strlen(greeting) && memcmp(text, greeting, len) == 0 &&
           rf_value_number(rf_tuple_get(results, 1), &number) == RF_OK && number == 42;
  rf_tuple_free(results);
  rf_client_free(client);
  rf_server_free(server);
  if (!ok) {
    fprintf(stderr, "Echo answered something else\n");
    return 1;
  }
  printf("remotefn %s (ABI %u): Echo answered on 127.0.0.1:%u\n", rf_version(),
         (unsigned)rf_abi_version(), (unsigned)port);
  return 0;
}
