// A game server in a few lines of C++: binds OnServerInvoke handlers and serves players until it
// is killed. Try it with `remotefn call 127.0.0.1:7878 Greet Ana`.
//
//   ./game_server [ADDRESS]   (default 127.0.0.1:7878; 127.0.0.1:0 picks a free port)
#include <remotefn.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  // Line-buffered even into a file or a pipe, so "serving on" is seen as soon as it is true.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const char* address = argc > 1 ? argv[1] : "127.0.0.1:7878";
  remotefn::Server server;
  server.on_player_added([](remotefn::PlayerId p) { std::printf("player %llu joined\n", (unsigned long long)p); });
  server.bind("Greet", [](remotefn::PlayerId, const remotefn::TupleRef& args) {
    return remotefn::Tuple().push("hello, " + std::string(args[0].string()));
  });
  std::string host(address);
  host = host.substr(0, host.rfind(':'));
  uint16_t port = server.listen(address);
  std::printf("serving on %s:%u\n", host.c_str(), port);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}
