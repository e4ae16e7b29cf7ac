//! `remotefn call ADDR FUNCTION [ARGS...]`: one invocation from the command line.

use super::tls::ClientTlsArgs;
use clap::Args;
use remotefn::value::json::{from_json, to_json};
use remotefn::{Client, ClientConfig, Error, Tuple, Value};
use std::time::{Duration, Instant};

/// How long connecting and the handshake may take when `--timeout-ms 0` lets the call itself
/// wait forever.
const CONNECT_TIMEOUT_WITHOUT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct CallArgs {
    /// Server or relay address, e.g. 127.0.0.1:7878.
    addr: String,
    /// Function to invoke.
    function: String,
    /// Arguments, each a JSON value (`42`, `"text"`, `[1,2]`, `{"$vector3":[1,2,3]}`); anything
    /// that is not valid JSON is taken as a string.
    args: Vec<String>,
    /// Give up after this many milliseconds, connecting and the handshake included (0: the
    /// call waits forever; connecting still gives up after 10 s).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Handshake token for the server's authenticator.
    #[arg(long, default_value = "")]
    token: String,
    /// Place to join (relay deployments).
    #[arg(long, default_value = "")]
    place: String,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

pub fn run(args: CallArgs) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let values = args
        .args
        .iter()
        .map(|a| parse_arg(a))
        .collect::<Result<Vec<Value>, _>>()?;
    let budget = (args.timeout_ms > 0).then(|| Duration::from_millis(args.timeout_ms));
    let config = ClientConfig {
        token: args.token.into_bytes().into(),
        place: args.place,
        connect_timeout: budget.unwrap_or(CONNECT_TIMEOUT_WITHOUT_LIMIT),
        tls: args.tls.config(),
        ..ClientConfig::default()
    };
    let client = Client::connect(args.addr.as_str(), config).map_err(|e| match e {
        Error::Timeout(after) => format!(
            "timed out after {after:?} connecting to {}: nothing completed the handshake (is a \
             remotefn server or relay listening there?); --timeout-ms bounds the whole command",
            args.addr
        )
        .into(),
        e => Box::<dyn std::error::Error>::from(e),
    })?;
    // Answer the server if it calls back (`CallMeBack`): echo, and say so on stderr.
    client.bind("Echo", |_, values| {
        eprintln!("server called back Echo{}", render(&values));
        Ok::<_, String>(values)
    })?;
    let left = budget.map(|b| b.saturating_sub(started.elapsed()));
    let results = client
        .invoke_server(&args.function, &values, left)
        .map_err(|e| match (e, budget) {
            (Error::Timeout(_), Some(budget)) => format!(
                "timed out after {budget:?}: no handler answered `{}` (calls to a function \
                 nobody has bound wait for one, as in Roblox, so a misspelt name waits too); \
                 --timeout-ms sets how long to wait, 0 forever",
                args.function
            )
            .into(),
            (e, _) => Box::<dyn std::error::Error>::from(e),
        })?;
    println!("{}", render(&results));
    Ok(())
}

fn parse_arg(text: &str) -> Result<Value, Error> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => {
            from_json(&json).map_err(|e| Error::InvalidArgument(format!("argument {text:?}: {e}")))
        }
        Err(_) => Ok(Value::from(text)),
    }
}

/// A tuple as a JSON array.
fn render(values: &Tuple) -> String {
    serde_json::Value::Array(values.iter().map(to_json).collect()).to_string()
}
