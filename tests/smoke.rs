use remotefn::*;
use std::time::Duration;

#[test]
fn echo_round_trip() {
    let server = Server::new(ServerConfig::default()).unwrap();
    server
        .bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    let addr = server.listen("127.0.0.1:0").unwrap();
    let client = Client::connect(addr, ClientConfig::default()).unwrap();
    let out = client
        .invoke_server(
            "Echo",
            &tuple![1, "two", true],
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(out, tuple![1, "two", true]);
}
