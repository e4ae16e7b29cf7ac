// A C++ client calling a Luau server, and a Luau client calling a C++ server, through
// include/remotefn.hpp (rf_server_load_script, rf_client_load_script). The scripts are in
// ffi-tests/luau/; their folder is the first argument.
#include "remotefn.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "test_util.h"

using namespace std::chrono_literals;
using remotefn::Tuple;
using remotefn::TupleRef;

static std::string address(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

static void test_cpp_client_calls_a_luau_server(const std::string& dir) {
  remotefn::Server server;
  server.load_script(dir + "/server.luau");
  remotefn::Client client(address(server.listen("127.0.0.1:0")));

  Tuple bought = client.invoke("Shop.Buy", Tuple().push("sword").push(150), 5s);
  CHECK(bought.size() == 3);
  CHECK(bought[0].boolean());
  CHECK(bought[1].number() == 50);
  CHECK(bought[2].vector3().z == 6);
  Tuple short_of = client.invoke("Shop.Buy", Tuple().push("shield").push(10), 5s);
  CHECK(!short_of[0].boolean() && short_of[1].number() == 50);
  try {
    client.invoke("Shop.Buy", Tuple().push("bow").push(1), 5s);
    CHECK(!"expected the script's error");
  } catch (const remotefn::Error& e) {
    CHECK(e.status() == RF_ERR_REMOTE);
    CHECK(std::string(e.what()) == "no such item: bow");
  }

  std::mutex m;
  std::string said;
  double user_id = 0;
  client.bind_event("Shop.Bought", [&](const TupleRef& args) {
    std::lock_guard<std::mutex> lock(m);
    said = std::string(args[0].string());
    user_id = args[1].number();
  });
  client.fire_server("Shop.Bought", Tuple().push("sword"));
  for (int i = 0; i < 1000; i++) {
    {
      std::lock_guard<std::mutex> lock(m);
      if (!said.empty()) break;
    }
    std::this_thread::sleep_for(10ms);
  }
  std::lock_guard<std::mutex> lock(m);
  CHECK(said == "enjoy your sword");
  CHECK(user_id == static_cast<double>(client.player_id()));

  // A script that does not compile is a clear error, not a crash.
  try {
    server.load_script(dir + "/does-not-exist.luau");
    CHECK(!"expected an error");
  } catch (const remotefn::Error& e) {
    CHECK(e.status() == RF_ERR_IO);
  }
}

static void test_luau_client_calls_a_cpp_server(const std::string& dir) {
  remotefn::Server server;
  server.bind("Add", [](remotefn::PlayerId, const TupleRef& args) {
    return Tuple().push(args[0].number() + args[1].number());
  });
  server.bind("Fail", [](remotefn::PlayerId, const TupleRef& args) -> Tuple {
    throw std::runtime_error("refused " + std::string(args[0].string()));
  });
  std::atomic<bool> reported{false};
  std::mutex m;
  double sum = 0;
  bool ok = true;
  std::string message;
  server.bind_event("Report", [&](remotefn::PlayerId, const TupleRef& args) {
    std::lock_guard<std::mutex> lock(m);
    sum = args[0].number();
    ok = args[1].boolean();
    message = std::string(args[2].string());
    reported = true;
  });
  remotefn::Client client(address(server.listen("127.0.0.1:0")));
  client.load_script(dir + "/client.luau");
  for (int i = 0; i < 1000 && !reported; i++) std::this_thread::sleep_for(10ms);
  CHECK(reported);
  {
    std::lock_guard<std::mutex> lock(m);
    CHECK(sum == 5.5);
    CHECK(!ok);
    CHECK(message == "refused from C++");
  }
  // The C++ server invokes the Luau client's OnClientInvoke.
  Tuple answer = server.invoke_client(client.player_id(), "Ask", Tuple().push("hello"), 5s);
  CHECK(answer[0].string() == "luau answers hello");
}

int main(int argc, char** argv) {
  (void)argc;
  (void)argv;
  const char* dir = std::getenv("RF_TEST_LUAU_DIR");
  if (!dir) {
    std::fprintf(stderr, "luau_test: RF_TEST_LUAU_DIR (the scripts' folder) is not set\n");
    return 1;
  }
  test_cpp_client_calls_a_luau_server(dir);
  test_luau_client_calls_a_cpp_server(dir);
  if (rf_test_failures) {
    std::fprintf(stderr, "luau_test: %d check(s) failed\n", rf_test_failures);
    return 1;
  }
  std::printf("luau_test: all checks passed\n");
  return 0;
}
