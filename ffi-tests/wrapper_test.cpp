// Proves include/remotefn.hpp (C++17): RAII handles, lambdas as handlers, exceptions as errors.
#include "remotefn.hpp"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

using namespace std::chrono_literals;
using remotefn::Tuple;
using remotefn::TupleRef;

static std::string address(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

static void test_calls_values_and_errors() {
  remotefn::ServerOptions options;
  options.reactors = 2;
  remotefn::Server server(options);
  server.bind("Echo", [](remotefn::PlayerId, const TupleRef& args) { return Tuple(args); });
  /* Inline: answered on the event loop, exceptions included. */
  server.bind_inline("Add", [](remotefn::PlayerId, const TupleRef& args) {
    return Tuple().push(args[0].number() + args[1].number());
  });
  server.bind_inline("Throw", [](remotefn::PlayerId, const TupleRef&) -> Tuple { throw std::runtime_error("nope"); });
  remotefn::Client client(address(server.listen("127.0.0.1:0")));

  CHECK(client.invoke("Add", Tuple().push(2).push(3.5), 5s)[0].number() == 5.5);

  Tuple rich;
  rich.push_nil().push(true).push(NAN).push(std::string("a\0b", 3)).push(remotefn::Vector3{1, 2, 3});
  rich.push(remotefn::CFrame{{1, 2, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1}}).push(remotefn::Color3{1, 0.5, 0});
  rich.push_instance(99).push_buffer("\x00\x01", 2);
  rich.begin_dictionary().key("hp").push(100).key("tags").begin_array().push("x").end().end();
  Tuple echoed = client.invoke("Echo", rich, 5s);
  CHECK(echoed.size() == rich.size());
  CHECK(echoed[0].is_nil());
  CHECK(std::isnan(echoed[2].number()));
  CHECK(echoed[3].string() == std::string_view("a\0b", 3));
  CHECK(echoed[4].vector3().z == 3);
  CHECK(echoed[5].cframe().position[1] == 2);
  CHECK(echoed[7].instance() == 99);
  CHECK(echoed[8].buffer().size() == 2);
  CHECK(echoed[9].at("hp").number() == 100);
  CHECK(echoed[9].at("tags")[0].string() == "x");

  try {
    client.invoke("Throw", Tuple(), 5s);
    CHECK(!"expected an exception");
  } catch (const remotefn::Error& e) {
    CHECK(e.status() == RF_ERR_REMOTE);
    CHECK(std::string(e.what()) == "nope");
  }
  try {
    echoed[0].number();
    CHECK(!"expected a type error");
  } catch (const remotefn::Error& e) {
    CHECK(e.status() == RF_ERR_INVALID_ARGUMENT);
  }
  try {
    Tuple open;
    open.begin_array();
    client.invoke("Echo", open, 5s);
    CHECK(!"expected an open-table error");
  } catch (const remotefn::Error& e) {
    CHECK(e.status() == RF_ERR_INVALID_ARGUMENT);
  }
}

static void test_invoke_client_nested_and_deferred() {
  remotefn::Server server(remotefn::ServerOptions{1, RF_DISPATCH_WORKERS, 1u << 20});
  server.bind("Double", [](remotefn::PlayerId, const TupleRef& args) { return Tuple().push(args[0].number() * 2); });
  // A nested call: the server asks the invoking client, whose handler calls the server again.
  server.bind("AskMe", [&server](remotefn::PlayerId player, const TupleRef& args) {
    return server.invoke_client(player, "Question", Tuple(args), 10s);
  });
  server.bind_deferred("Later", [&server](remotefn::PlayerId, const TupleRef& args, remotefn::CallId call) {
    Tuple copy(args);
    std::thread([&server, call, copy]() {
      std::this_thread::sleep_for(20ms);
      server.reply(call, copy);
    }).detach();
  });
  remotefn::Client client(address(server.listen("127.0.0.1:0")));
  client.bind("Question", [&client](const TupleRef& args) {
    return client.invoke("Double", Tuple(args), 10s);
  });
  CHECK(client.invoke("AskMe", Tuple().push(21), 10s)[0].number() == 42);
  CHECK(client.invoke("Later", Tuple().push("soon"), 10s)[0].string() == "soon");
  std::this_thread::sleep_for(50ms);  // let the detached replier finish before the server goes

  client.bind("Refuse", [](const TupleRef&) -> Tuple { throw std::runtime_error("client refuses"); });
  try {
    server.invoke_client(client.player_id(), "Refuse", Tuple(), 5s);
    CHECK(!"expected an exception");
  } catch (const remotefn::Error& e) {
    CHECK(e.status() == RF_ERR_REMOTE && std::string(e.what()) == "client refuses");
  }
  try {
    server.invoke_client(123456, "Refuse", Tuple(), 5s);
    CHECK(!"expected not found");
  } catch (const remotefn::Error& e) {
    CHECK(e.status() == RF_ERR_NOT_FOUND);
  }
}

static void test_events_players_and_auth() {
  remotefn::Server server;
  std::atomic<int> joined{0}, left{0}, pings{0};
  server.on_player_added([&](remotefn::PlayerId) { joined++; });
  server.on_player_removing([&](remotefn::PlayerId) { left++; });
  server.bind_event("Ping", [&](remotefn::PlayerId, const TupleRef& args) {
    if (args[0].number() == pings.load()) pings++;
  });
  server.set_authenticator([](std::string_view, std::string_view token, uint64_t& user_id, std::string& text) {
    if (token == "ok") {
      user_id = 5;
      text = "eve";
      return true;
    }
    text = "who are you?";
    return false;
  });
  uint16_t port = server.listen("127.0.0.1:0");
  remotefn::ClientOptions good;
  good.token = "ok";
  good.busy_poll = std::chrono::microseconds(0);
  {
    remotefn::Client client(address(port), good);
    CHECK(server.user_id(client.player_id()) == 5);
    std::atomic<int> news{0};
    client.bind_event("News", [&](const TupleRef& args) { news += static_cast<int>(args[0].number()); });
    for (int i = 0; i < 50; i++) client.fire_server("Ping", Tuple().push(i));
    WAIT_UNTIL(pings.load() == 50);
    server.fire_all_clients("News", Tuple().push(2));
    server.fire_client(client.player_id(), "News", Tuple().push(3));
    WAIT_UNTIL(news.load() == 5);
    CHECK(server.player_count() == 1);
    std::string metrics = server.metrics();
    CHECK(metrics.find("remotefn_server_players 1\n") != std::string::npos);
    CHECK(metrics.find("remotefn_server_events_total 50\n") != std::string::npos);
  }
  WAIT_UNTIL(left.load() == 1);
  CHECK(joined.load() == 1);
  try {
    remotefn::ClientOptions bad;
    bad.token = "nope";
    remotefn::Client rejected(address(port), bad);
    CHECK(!"expected a rejection");
  } catch (const remotefn::Error& e) {
    CHECK(e.status() == RF_ERR_REJECTED && std::string(e.what()) == "who are you?");
  }
  try {
    remotefn::ClientOptions spinning = good;
    spinning.busy_poll = std::chrono::seconds(2);
    remotefn::Client refused(address(port), spinning);
    CHECK(!"expected a refused option");
  } catch (const remotefn::Error& e) {
    CHECK(e.status() == RF_ERR_INVALID_ARGUMENT && std::string(e.what()).find("busy poll") != std::string::npos);
  }
}

static void test_manual_dispatch_on_this_thread() {
  remotefn::Server server(remotefn::ServerOptions{1, RF_DISPATCH_MANUAL, 1u << 20});
  std::thread::id main_id = std::this_thread::get_id();
  server.bind("Where", [main_id](remotefn::PlayerId, const TupleRef&) {
    return Tuple().push(std::this_thread::get_id() == main_id);
  });
  remotefn::Client client(address(server.listen("127.0.0.1:0")));
  std::atomic<bool> done{false};
  bool on_main = false;
  std::thread caller([&] {
    on_main = client.invoke("Where", Tuple(), 10s)[0].boolean();
    done = true;
  });
  double deadline = now_ms() + 20000;
  while (!done && now_ms() < deadline) server.dispatch(0, 20ms);
  caller.join();
  CHECK(on_main);
}

/* TLS through the options: a call, and an untrusted server as a typed exception. */
static void test_tls(const char* cert, const char* key, const char* ca) {
  remotefn::ServerOptions options;
  options.tls_cert = cert;
  options.tls_key = key;
  remotefn::Server server(options);
  server.bind("Echo", [](remotefn::PlayerId, const TupleRef& args) { return Tuple(args); });
  std::string addr = address(server.listen("127.0.0.1:0"));
  remotefn::ClientOptions trusting;
  trusting.tls = true;
  trusting.tls_ca = ca;
  remotefn::Client client(addr, trusting);
  CHECK(client.invoke("Echo", Tuple().push(3), 5s)[0].number() == 3);
  remotefn::ClientOptions wrong = trusting;
  wrong.tls_ca = cert; /* not a CA */
  try {
    remotefn::Client untrusted(addr, wrong);
    CHECK(!"an untrusted server must throw");
  } catch (const remotefn::Error& e) {
    CHECK(e.status() == RF_ERR_TLS);
    CHECK(e.tls_error() == RF_TLS_UNTRUSTED_CERTIFICATE);
  }
  server.reload_tls();
}

int main(int, char**) {
  test_calls_values_and_errors();
  test_invoke_client_nested_and_deferred();
  test_events_players_and_auth();
  test_manual_dispatch_on_this_thread();
  const char *cert = std::getenv("RF_TEST_TLS_CERT"), *key = std::getenv("RF_TEST_TLS_KEY"),
             *ca = std::getenv("RF_TEST_TLS_CA");
  if (cert && key && ca) {
    test_tls(cert, key, ca);
  } else {
    std::fprintf(stderr, "wrapper_test: RF_TEST_TLS_* not set; skipping TLS tests\n");
  }
  if (rf_test_failures) {
    std::fprintf(stderr, "wrapper_test: %d check(s) failed\n", rf_test_failures);
    return 1;
  }
  std::printf("wrapper_test: all checks passed\n");
  return 0;
}
