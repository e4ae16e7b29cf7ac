//! `remotefn call ADDR FUNCTION [ARGS...]`: one invocation from the command line.

use clap::Args;
use remotefn::value::json::{from_json, to_json};
use remotefn::{Client, ClientConfig, Tuple, Value};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct CallArgs {
    /// Server or relay address, e.g. 127.0.0.1:7878.
    addr: String,
    /// Function to invoke.
    function: String,
    /// Arguments, each a JSON value (`42`, `"text"`, `[1,2]`, `{"$vector3":[1,2,3]}`); anything
    /// that is not valid JSON is taken as a string.
    args: Vec<String>,
    /// Give up after this many milliseconds (0 waits forever).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Handshake token for the server's authenticator.
    #[arg(long, default_value = "")]
    token: String,
    /// Place to join (relay deployments).
    #[arg(long, default_value = "")]
    place: String,
}

pub fn run(args: CallArgs) -> Result<(), remotefn::Error> {
    let values = args
        .args
        .iter()
        .map(|a| parse_arg(a))
        .collect::<Result<Vec<Value>, _>>()?;
    let config = ClientConfig {
        token: args.token.into_bytes().into(),
        place: args.place,
        ..ClientConfig::default()
    };
    let client = Client::connect(args.addr.as_str(), config)?;
    // Answer the server if it calls back (`CallMeBack`): echo, and say so on stderr.
    client.bind("Echo", |_, values| {
        eprintln!("server called back Echo{}", render(&values));
        Ok::<_, String>(values)
    })?;
    let timeout = (args.timeout_ms > 0).then(|| Duration::from_millis(args.timeout_ms));
    let results = client.invoke_server(&args.function, &values, timeout)?;
    println!("{}", render(&results));
    Ok(())
}

fn parse_arg(text: &str) -> Result<Value, remotefn::Error> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => from_json(&json)
            .map_err(|e| remotefn::Error::InvalidArgument(format!("argument {text:?}: {e}"))),
        Err(_) => Ok(Value::from(text)),
    }
}

/// A tuple as a JSON array.
fn render(values: &Tuple) -> String {
    serde_json::Value::Array(values.iter().map(to_json).collect()).to_string()
}
