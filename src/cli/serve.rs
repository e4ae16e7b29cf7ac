//! `remotefn serve`: an embedded server with a few demo functions.

use clap::Args;
use remotefn::{tuple, Server, ServerConfig, Tuple, Value};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on for players.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
    /// Handler worker threads.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Largest frame a player may send, in bytes.
    #[arg(long, default_value_t = remotefn::proto::DEFAULT_MAX_FRAME)]
    max_payload: u32,
}

/// How long `CallMeBack` waits for the client's answer.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: ServeArgs) -> Result<(), remotefn::Error> {
    let server = Server::new(ServerConfig {
        workers: args.workers,
        max_payload: args.max_payload,
        ..ServerConfig::default()
    })?;
    bind_demo_functions(&server)?;
    server.on_player_added(|srv, player| {
        tracing::info!(player, players = srv.player_count(), "player added");
    });
    server.on_player_removing(|srv, player| {
        tracing::info!(player, players = srv.player_count(), "player removing");
    });
    let addr = server.listen(args.listen.as_str())?;
    println!("remotefn serving on {addr} (functions: Echo, Add, Fail, CallMeBack); Ctrl-C stops");
    loop {
        std::thread::park();
    }
}

/// The demo functions: enough to try every semantic from `remotefn call`.
fn bind_demo_functions(server: &Server) -> Result<(), remotefn::Error> {
    // Echo(...) returns its arguments.
    server.bind("Echo", |_, _, args| Ok::<_, String>(args))?;
    // Add(a, b, ...) returns the sum of numbers.
    server.bind("Add", |_, _, args| {
        args.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_number().ok_or_else(|| {
                    format!("argument {} is a {}, not a number", i + 1, v.type_name())
                })
            })
            .sum::<Result<f64, String>>()
            .map(|sum| tuple![sum])
    })?;
    // Fail(message?) raises an error at the caller.
    server.bind("Fail", |_, _, args| {
        let message = args
            .first()
            .and_then(Value::as_str)
            .unwrap_or("Fail was called");
        Err::<Tuple, _>(message.to_owned())
    })?;
    // CallMeBack(...) invokes the calling client's Echo with the same arguments and returns
    // what the client answered: a nested call across the boundary.
    server.bind("CallMeBack", |srv, player, args| {
        srv.invoke_client(player, "Echo", &args, Some(CALLBACK_TIMEOUT))
            .map_err(|e| format!("calling the client back failed: {e}"))
    })?;
    Ok(())
}
