// remotefn.hpp: a header-only C++17 wrapper over the C ABI in remotefn.h.
//
//   remotefn::Server server;                       // RAII: the destructor stops and frees it
//   server.bind("Add", [](remotefn::PlayerId, const remotefn::TupleRef& args) {
//     return remotefn::Tuple().push(args[0].number() + args[1].number());
//   });
//   uint16_t port = server.listen("127.0.0.1:0");
//   remotefn::Client client("127.0.0.1:" + std::to_string(port));
//   remotefn::Tuple sum = client.invoke("Add", remotefn::Tuple().push(2).push(3));
//
// Errors are exceptions: remotefn::Error carries the rf_status and the message. A handler that
// throws answers its caller with an error (RF_ERR_REMOTE at the caller, with e.what()).
// Handlers run on library worker threads (or inside dispatch() in manual mode).
#ifndef REMOTEFN_HPP
#define REMOTEFN_HPP

#include "remotefn.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace remotefn {

using PlayerId = rf_player_id;
using CallId = rf_call_id;
using Vector2 = rf_vector2;
using Vector3 = rf_vector3;
using Color3 = rf_color3;
using CFrame = rf_cframe;

/// An error from the library: the status code, rf_last_error() and, for RF_ERR_TLS,
/// rf_last_tls_error() at the time.
class Error : public std::runtime_error {
 public:
  Error(rf_status status, const std::string& message, rf_tls_error tls = RF_TLS_NONE)
      : std::runtime_error(message), status_(status), tls_(tls) {}
  rf_status status() const noexcept { return status_; }
  /// What went wrong in TLS (RF_TLS_NONE unless status() is RF_ERR_TLS).
  rf_tls_error tls_error() const noexcept { return tls_; }

 private:
  rf_status status_;
  rf_tls_error tls_;
};

namespace detail {
inline void check(rf_status status) {
  if (status != RF_OK) throw Error(status, rf_last_error(), rf_last_tls_error());
}

struct HolderBase {
  virtual ~HolderBase() = default;
};
template <typename F>
struct Holder : HolderBase {
  explicit Holder(F f) : fn(std::move(f)) {}
  F fn;
};

/// Owns the C++ handlers whose addresses are given to C as `user` pointers: they stay put when
/// the owning Server/Client moves, and live until it is destroyed.
class HandlerStore {
 public:
  template <typename F>
  Holder<F>* hold(F f) {
    auto holder = std::make_unique<Holder<F>>(std::move(f));
    Holder<F>* raw = holder.get();
    std::lock_guard<std::mutex> lock(mutex_);
    handlers_.push_back(std::move(holder));
    return raw;
  }

 private:
  std::mutex mutex_;
  std::list<std::unique_ptr<HolderBase>> handlers_;
};
}  // namespace detail

/// A borrowed value inside a tuple: valid while that tuple lives unmodified.
class Value {
 public:
  explicit Value(const rf_value* v) : v_(v) {}
  rf_type type() const noexcept { return rf_value_type(v_); }
  bool is_nil() const noexcept { return type() == RF_NIL; }
  bool boolean() const { return read<bool>(rf_value_boolean); }
  double number() const { return read<double>(rf_value_number); }
  Vector2 vector2() const { return read<Vector2>(rf_value_vector2); }
  Vector3 vector3() const { return read<Vector3>(rf_value_vector3); }
  CFrame cframe() const { return read<CFrame>(rf_value_cframe); }
  Color3 color3() const { return read<Color3>(rf_value_color3); }
  uint64_t instance() const { return read<uint64_t>(rf_value_instance); }
  std::string_view string() const {
    const char* p = nullptr;
    size_t n = 0;
    detail::check(rf_value_string(v_, &p, &n));
    return {p, n};
  }
  std::string_view buffer() const {
    const uint8_t* p = nullptr;
    size_t n = 0;
    detail::check(rf_value_buffer(v_, &p, &n));
    return {reinterpret_cast<const char*>(p), n};
  }
  /// Entries of an array or dictionary; 0 otherwise.
  size_t size() const noexcept { return rf_value_len(v_); }
  /// Array element `i`; throws when this is not an array or `i` is out of range.
  Value operator[](size_t i) const {
    const rf_value* item = rf_value_index(v_, i);
    if (!item) throw Error(RF_ERR_INVALID_ARGUMENT, "not an array, or index out of range");
    return Value(item);
  }
  /// Dictionary entry `i`: key and value.
  std::pair<std::string_view, Value> entry(size_t i) const {
    const char* k = nullptr;
    size_t n = 0;
    const rf_value* item = nullptr;
    detail::check(rf_value_entry(v_, i, &k, &n, &item));
    return {std::string_view(k, n), Value(item)};
  }
  /// The value under `key` in a dictionary; throws when absent.
  Value at(std::string_view key) const {
    for (size_t i = 0; i < size(); i++) {
      auto e = entry(i);
      if (e.first == key) return e.second;
    }
    throw Error(RF_ERR_INVALID_ARGUMENT, "no such key: " + std::string(key));
  }
  const rf_value* raw() const noexcept { return v_; }

 private:
  template <typename T, typename F>
  T read(F f) const {
    T out{};
    detail::check(f(v_, &out));
    return out;
  }
  const rf_value* v_;
};

/// A borrowed tuple (a handler's arguments): valid until the handler returns.
class TupleRef {
 public:
  explicit TupleRef(const rf_tuple* t) : t_(t) {}
  size_t size() const noexcept { return rf_tuple_len(t_); }
  Value operator[](size_t i) const {
    const rf_value* v = rf_tuple_get(t_, i);
    if (!v) throw Error(RF_ERR_INVALID_ARGUMENT, "tuple index out of range");
    return Value(v);
  }
  const rf_tuple* raw() const noexcept { return t_; }

 private:
  const rf_tuple* t_;
};

/// An owned tuple with a chaining builder: Tuple().push(1).push("two").begin_array()...end().
class Tuple {
 public:
  Tuple() : t_(rf_tuple_new()) {
    if (!t_) throw Error(RF_ERR_PANIC, "rf_tuple_new failed");
  }
  /// Takes ownership of a tuple from the C API.
  explicit Tuple(rf_tuple* owned) : t_(owned) {}
  /// A deep copy of a borrowed tuple.
  explicit Tuple(const TupleRef& ref) : t_(rf_tuple_clone(ref.raw())) {}
  Tuple(const Tuple& other) : t_(rf_tuple_clone(other.t_)) {}
  Tuple(Tuple&& other) noexcept : t_(std::exchange(other.t_, nullptr)) {}
  Tuple& operator=(Tuple other) noexcept {
    std::swap(t_, other.t_);
    return *this;
  }
  ~Tuple() { rf_tuple_free(t_); }

  Tuple& push_nil() { return step(rf_tuple_push_nil(t_)); }
  Tuple& push(bool v) { return step(rf_tuple_push_boolean(t_, v)); }
  /// Any arithmetic type but bool: a Luau number (a double).
  template <typename T, std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Tuple& push(T v) {
    return step(rf_tuple_push_number(t_, static_cast<double>(v)));
  }
  Tuple& push(std::string_view s) { return step(rf_tuple_push_string(t_, s.data(), s.size())); }
  Tuple& push(const char* s) { return push(std::string_view(s)); }
  Tuple& push(const std::string& s) { return push(std::string_view(s)); }
  Tuple& push(const Vector2& v) { return step(rf_tuple_push_vector2(t_, v)); }
  Tuple& push(const Vector3& v) { return step(rf_tuple_push_vector3(t_, v)); }
  Tuple& push(const CFrame& v) { return step(rf_tuple_push_cframe(t_, &v)); }
  Tuple& push(const Color3& v) { return step(rf_tuple_push_color3(t_, v)); }
  Tuple& push_buffer(const void* data, size_t len) {
    return step(rf_tuple_push_buffer(t_, static_cast<const uint8_t*>(data), len));
  }
  Tuple& push_instance(uint64_t ref) { return step(rf_tuple_push_instance(t_, ref)); }
  Tuple& begin_array() { return step(rf_tuple_begin_array(t_)); }
  Tuple& begin_dictionary() { return step(rf_tuple_begin_dictionary(t_)); }
  Tuple& key(std::string_view k) { return step(rf_tuple_push_key(t_, k.data(), k.size())); }
  Tuple& end() { return step(rf_tuple_end(t_)); }

  size_t size() const noexcept { return rf_tuple_len(t_); }
  Value operator[](size_t i) const { return TupleRef(t_)[i]; }
  TupleRef ref() const noexcept { return TupleRef(t_); }
  const rf_tuple* raw() const noexcept { return t_; }
  /// Gives up ownership (for rf_*_return, which consumes it).
  rf_tuple* release() noexcept { return std::exchange(t_, nullptr); }

 private:
  Tuple& step(rf_status s) {
    detail::check(s);
    return *this;
  }
  rf_tuple* t_;
};

inline uint32_t to_ms(std::chrono::milliseconds timeout) {
  return timeout.count() <= 0 ? 0u : static_cast<uint32_t>(timeout.count());
}

/// Microseconds for a setter: negative is 0, and past what a u32 holds is refused by the setter.
inline uint32_t to_us(std::chrono::microseconds window) {
  if (window.count() <= 0) return 0u;
  return window.count() > 0xffffffffLL ? 0xffffffffu : static_cast<uint32_t>(window.count());
}

/// Server settings (see rf_server_config_*).
struct ServerOptions {
  uint32_t workers = 4;
  rf_dispatch dispatch = RF_DISPATCH_WORKERS;
  uint32_t max_payload = 4u * 1024u * 1024u;
  /// Event loop threads (rf_server_config_set_reactors). Last, so that existing positional
  /// initialisers keep their meaning.
  uint32_t reactors = 1;
  /// Serve players over TLS with this certificate chain and key (PEM files; both or none).
  std::string tls_cert{};
  std::string tls_key{};
  /// Also accept TLS 1.2 (with tls_cert).
  bool tls12 = false;
};

/// Client settings (see rf_client_config_*).
struct ClientOptions {
  std::string token;
  std::string place;
  rf_dispatch dispatch = RF_DISPATCH_WORKERS;
  std::chrono::milliseconds connect_timeout{10000};
  /// How long the client's loop polls after a turn before sleeping (0: it sleeps at once).
  std::chrono::microseconds busy_poll{50};
  /// Connect over TLS, trusting the CAs in tls_ca (a PEM file; empty: the system's store).
  bool tls = false;
  std::string tls_ca{};
  /// The name the server's certificate must carry (empty: the host of the address).
  std::string server_name{};
  /// A client certificate chain and key to present (PEM files; both or none).
  std::string tls_client_cert{};
  std::string tls_client_key{};
};

/// A game server. Move-only; the destructor stops it (pending calls fail with RF_ERR_CLOSED)
/// and joins its threads, so no handler runs afterwards.
class Server {
 public:
  using Handler = std::function<Tuple(PlayerId, const TupleRef&)>;
  using DeferredHandler = std::function<void(PlayerId, const TupleRef&, CallId)>;
  using EventHandler = std::function<void(PlayerId, const TupleRef&)>;
  using PlayerHandler = std::function<void(PlayerId)>;
  using Authenticator = std::function<bool(std::string_view place, std::string_view token, uint64_t& user_id,
                                           std::string& name_or_reason)>;

  explicit Server(const ServerOptions& options = ServerOptions()) {
    rf_server_config* c = rf_server_config_new();
    rf_status st = rf_server_config_set_workers(c, options.workers);
    if (st == RF_OK) st = rf_server_config_set_reactors(c, options.reactors);
    if (st == RF_OK) st = rf_server_config_set_dispatch(c, options.dispatch);
    if (st == RF_OK) st = rf_server_config_set_max_payload(c, options.max_payload);
    if (st == RF_OK && (!options.tls_cert.empty() || !options.tls_key.empty())) {
      st = rf_server_config_set_tls(c, options.tls_cert.c_str(), options.tls_key.c_str());
      if (st == RF_OK) st = rf_server_config_set_tls12(c, options.tls12);
    }
    if (st == RF_OK) st = rf_server_new(c, &s_);
    rf_server_config_free(c);
    detail::check(st);
  }
  Server(Server&& other) noexcept
      : s_(std::exchange(other.s_, nullptr)), handlers_(std::move(other.handlers_)) {}
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server() { rf_server_free(s_); }

  /// Reads the TLS certificate and key again for players who connect from now on
  /// (rf_server_reload_tls).
  void reload_tls() { detail::check(rf_server_reload_tls(s_)); }

  /// Runs a Luau server script beside the C++ handlers (rf_server_load_script); throws its
  /// load error (RF_ERR_SCRIPT).
  void load_script(const std::string& path) { detail::check(rf_server_load_script(s_, path.c_str())); }

  /// Listens on `addr` ("127.0.0.1:0" picks a port); returns the port.
  uint16_t listen(const std::string& addr) {
    detail::check(rf_server_listen(s_, addr.c_str()));
    uint16_t port = 0;
    detail::check(rf_server_local_port(s_, &port));
    return port;
  }

  /// OnServerInvoke: the lambda's return value goes back to the caller; an exception becomes
  /// the caller's RF_ERR_REMOTE with its what().
  void bind(const std::string& function, Handler handler) {
    auto* h = hold(std::move(handler));
    detail::check(rf_server_bind(s_, function.c_str(), &Server::invoke_trampoline, h));
  }

  /// A handler declared non-blocking, run on the server's event loop as each call arrives
  /// (rf_server_bind_inline): the fastest path, for handlers that only compute. It must not
  /// block; invoke_client inside it throws.
  void bind_inline(const std::string& function, Handler handler) {
    auto* h = hold(std::move(handler));
    detail::check(rf_server_bind_inline(s_, function.c_str(), &Server::invoke_trampoline, h));
  }

  /// A handler that completes the call later with reply()/fail(), from any thread.
  void bind_deferred(const std::string& function, DeferredHandler handler) {
    auto* h = hold(std::move(handler));
    detail::check(rf_server_bind(s_, function.c_str(), &Server::deferred_trampoline, h));
  }

  void unbind(const std::string& function) { detail::check(rf_server_unbind(s_, function.c_str())); }
  void reply(CallId call, Tuple results) { detail::check(rf_server_return(s_, call, results.release())); }
  void fail(CallId call, const std::string& message) { detail::check(rf_server_error(s_, call, message.c_str())); }

  /// InvokeClient: blocks until the player's handler answers (0 ms: forever).
  Tuple invoke_client(PlayerId player, const std::string& function, const Tuple& args = Tuple(),
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    rf_tuple* out = nullptr;
    detail::check(rf_server_invoke_client(s_, player, function.c_str(), args.raw(), to_ms(timeout), &out));
    return Tuple(out);
  }

  void bind_event(const std::string& event, EventHandler handler) {
    auto* h = hold(std::move(handler));
    detail::check(rf_server_bind_event(s_, event.c_str(), &Server::event_trampoline, h));
  }
  void fire_client(PlayerId player, const std::string& event, const Tuple& args = Tuple()) {
    detail::check(rf_server_fire_client(s_, player, event.c_str(), args.raw()));
  }
  void fire_all_clients(const std::string& event, const Tuple& args = Tuple()) {
    detail::check(rf_server_fire_all_clients(s_, event.c_str(), args.raw()));
  }

  void on_player_added(PlayerHandler handler) {
    detail::check(rf_server_on_player_added(s_, &Server::player_trampoline, hold(std::move(handler))));
  }
  void on_player_removing(PlayerHandler handler) {
    detail::check(rf_server_on_player_removing(s_, &Server::player_trampoline, hold(std::move(handler))));
  }
  /// Return true to accept (set user_id and the display name), false to reject (set the reason).
  void set_authenticator(Authenticator authenticator) {
    detail::check(rf_server_set_authenticator(s_, &Server::auth_trampoline, hold(std::move(authenticator))));
  }

  void kick(PlayerId player, const std::string& reason) { detail::check(rf_server_kick(s_, player, reason.c_str())); }
  size_t player_count() const {
    size_t n = 0;
    detail::check(rf_server_player_count(s_, &n));
    return n;
  }
  /// The server's metrics in the Prometheus text format (names `remotefn_server_*`).
  std::string metrics() const {
    size_t len = 0;
    detail::check(rf_server_metrics(s_, nullptr, 0, &len));
    for (;;) {
      // Counters grow between two calls: room for some growth, and again if that was not enough.
      std::string text(len + 1024, '\0');
      rf_status status = rf_server_metrics(s_, &text[0], text.size(), &len);
      if (status == RF_OK) {
        text.resize(len);
        return text;
      }
      if (status != RF_ERR_LIMIT) detail::check(status);
    }
  }
  uint64_t user_id(PlayerId player) const {
    uint64_t id = 0;
    detail::check(rf_server_player_user_id(s_, player, &id));
    return id;
  }
  /// Manual dispatch: runs queued handlers on this thread (max_calls 0: all queued).
  uint32_t dispatch(uint32_t max_calls = 0, std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    uint32_t ran = 0;
    detail::check(rf_server_dispatch(s_, max_calls, to_ms(timeout), &ran));
    return ran;
  }
  rf_server* raw() const noexcept { return s_; }

 private:
  template <typename F>
  using Holder = detail::Holder<F>;
  template <typename F>
  Holder<F>* hold(F f) {
    return handlers_->hold(std::move(f));
  }

  static void invoke_trampoline(void* user, rf_server* s, rf_player_id player, const rf_tuple* args, rf_call_id call) {
    auto* h = static_cast<Holder<Handler>*>(user);
    try {
      Tuple results = h->fn(player, TupleRef(args));
      rf_server_return(s, call, results.release());
    } catch (const std::exception& e) {
      rf_server_error(s, call, e.what());
    } catch (...) {
      rf_server_error(s, call, "unknown C++ exception");
    }
  }
  static void deferred_trampoline(void* user, rf_server* s, rf_player_id player, const rf_tuple* args,
                                  rf_call_id call) {
    auto* h = static_cast<Holder<DeferredHandler>*>(user);
    try {
      h->fn(player, TupleRef(args), call);
    } catch (const std::exception& e) {
      rf_server_error(s, call, e.what());  // refused (and harmless) if the handler already replied
    } catch (...) {
      rf_server_error(s, call, "unknown C++ exception");
    }
  }
  static void event_trampoline(void* user, rf_server*, rf_player_id player, const rf_tuple* args) {
    try {
      static_cast<Holder<EventHandler>*>(user)->fn(player, TupleRef(args));
    } catch (...) {
      // An event has no caller to report to; exceptions must not cross into C.
    }
  }
  static void player_trampoline(void* user, rf_server*, rf_player_id player) {
    try {
      static_cast<Holder<PlayerHandler>*>(user)->fn(player);
    } catch (...) {
    }
  }
  static void auth_trampoline(void* user, rf_server*, const char* place, const uint8_t* token, size_t len,
                              rf_auth* auth) {
    uint64_t user_id = 0;
    std::string text;
    try {
      bool ok = static_cast<Holder<Authenticator>*>(user)->fn(
          place, std::string_view(reinterpret_cast<const char*>(token), len), user_id, text);
      if (ok) {
        rf_auth_accept(auth, user_id, text.c_str());
      } else {
        rf_auth_reject(auth, text.empty() ? "rejected" : text.c_str());
      }
    } catch (const std::exception& e) {
      rf_auth_reject(auth, e.what());
    } catch (...) {
      rf_auth_reject(auth, "authenticator failed");
    }
  }

  rf_server* s_ = nullptr;
  // ~Server frees the server (joining its threads) before the handlers are destroyed.
  std::unique_ptr<detail::HandlerStore> handlers_ = std::make_unique<detail::HandlerStore>();
};

/// A connected player. Move-only; the destructor disconnects (pending calls fail with
/// RF_ERR_CLOSED) and joins its threads.
class Client {
 public:
  using Handler = std::function<Tuple(const TupleRef&)>;
  using EventHandler = std::function<void(const TupleRef&)>;

  explicit Client(const std::string& addr, const ClientOptions& options = ClientOptions()) {
    rf_client_config* c = rf_client_config_new();
    rf_status st = rf_client_config_set_token(c, options.token.data(), options.token.size());
    if (st == RF_OK) st = rf_client_config_set_place(c, options.place.c_str());
    if (st == RF_OK) st = rf_client_config_set_dispatch(c, options.dispatch);
    if (st == RF_OK) st = rf_client_config_set_connect_timeout(c, to_ms(options.connect_timeout));
    if (st == RF_OK) st = rf_client_config_set_busy_poll_us(c, to_us(options.busy_poll));
    if (st == RF_OK && options.tls) {
      st = rf_client_config_set_tls(c, options.tls_ca.empty() ? nullptr : options.tls_ca.c_str());
      if (st == RF_OK && !options.server_name.empty())
        st = rf_client_config_set_server_name(c, options.server_name.c_str());
      if (st == RF_OK && (!options.tls_client_cert.empty() || !options.tls_client_key.empty()))
        st = rf_client_config_set_client_cert(c, options.tls_client_cert.c_str(), options.tls_client_key.c_str());
    }
    if (st == RF_OK) st = rf_client_connect(addr.c_str(), c, &c_);
    rf_client_config_free(c);
    detail::check(st);
  }
  Client(Client&& other) noexcept
      : c_(std::exchange(other.c_, nullptr)), handlers_(std::move(other.handlers_)) {}
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() { rf_client_free(c_); }

  PlayerId player_id() const {
    PlayerId id = 0;
    detail::check(rf_client_player_id(c_, &id));
    return id;
  }

  /// Runs a Luau client script as this player (rf_client_load_script).
  void load_script(const std::string& path) { detail::check(rf_client_load_script(c_, path.c_str())); }

  /// InvokeServer: blocks until the server's handler answers (0 ms: forever).
  Tuple invoke(const std::string& function, const Tuple& args = Tuple(),
               std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    rf_tuple* out = nullptr;
    detail::check(rf_client_invoke_server(c_, function.c_str(), args.raw(), to_ms(timeout), &out));
    return Tuple(out);
  }

  /// OnClientInvoke: the lambda's return value goes back to the server; an exception becomes
  /// the server's RF_ERR_REMOTE.
  void bind(const std::string& function, Handler handler) {
    detail::check(rf_client_bind(c_, function.c_str(), &Client::invoke_trampoline, hold(std::move(handler))));
  }
  void unbind(const std::string& function) { detail::check(rf_client_unbind(c_, function.c_str())); }
  void bind_event(const std::string& event, EventHandler handler) {
    detail::check(rf_client_bind_event(c_, event.c_str(), &Client::event_trampoline, hold(std::move(handler))));
  }
  void fire_server(const std::string& event, const Tuple& args = Tuple()) {
    detail::check(rf_client_fire_server(c_, event.c_str(), args.raw()));
  }
  uint32_t dispatch(uint32_t max_calls = 0, std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    uint32_t ran = 0;
    detail::check(rf_client_dispatch(c_, max_calls, to_ms(timeout), &ran));
    return ran;
  }
  rf_client* raw() const noexcept { return c_; }

 private:
  template <typename F>
  using Holder = detail::Holder<F>;
  template <typename F>
  Holder<F>* hold(F f) {
    return handlers_->hold(std::move(f));
  }
  static void invoke_trampoline(void* user, rf_client* c, const rf_tuple* args, rf_call_id call) {
    try {
      Tuple results = static_cast<Holder<Handler>*>(user)->fn(TupleRef(args));
      rf_client_return(c, call, results.release());
    } catch (const std::exception& e) {
      rf_client_error(c, call, e.what());
    } catch (...) {
      rf_client_error(c, call, "unknown C++ exception");
    }
  }
  static void event_trampoline(void* user, rf_client*, const rf_tuple* args) {
    try {
      static_cast<Holder<EventHandler>*>(user)->fn(TupleRef(args));
    } catch (...) {
    }
  }

  rf_client* c_ = nullptr;
  std::unique_ptr<detail::HandlerStore> handlers_ = std::make_unique<detail::HandlerStore>();
};

}  // namespace remotefn

#endif  // REMOTEFN_HPP
