// A game server in a few lines of C++: binds OnServerInvoke handlers and serves players on
// 127.0.0.1:7878 until it is killed. Try it with `remotefn call 127.0.0.1:7878 Greet Ana`.
#include <remotefn.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

int main() {
  remotefn::Server server;
  server.on_player_added([](remotefn::PlayerId p) { std::printf("player %llu joined\n", (unsigned long long)p); });
  server.bind("Greet", [](remotefn::PlayerId, const remotefn::TupleRef& args) {
    return remotefn::Tuple().push("hello, " + std::string(args[0].string()));
  });
  uint16_t port = server.listen("127.0.0.1:7878");
  std::printf("serving on 127.0.0.1:%u\n", port);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}
