//! Replays every input of the fuzz corpus (`fuzz/corpus/<target>/`) through the same entry
//! points the fuzzers use, so crashes found once stay fixed. With `REMOTEFN_BLESS_CORPUS=1`
//! it (re)writes the seed inputs, built from the library's own encoders.

use bytes::{Bytes, BytesMut};
use remotefn::proto::{self, ErrorKind, Frame, GoodbyeCode};
use remotefn::value::codec::encode_tuple_to_bytes;
use remotefn::{tuple, CFrame, Color3, InstanceRef, Value, Vector2, Vector3};
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let args = encode_tuple_to_bytes(
        &tuple![
            Value::Nil,
            true,
            1.5,
            "text",
            Value::buffer(vec![1u8, 2]),
            Vector2 { x: 1.0, y: 2.0 },
            Vector3 {
                x: 1.0,
                y: 2.0,
                z: 3.0
            },
            CFrame::default(),
            Color3 {
                r: 1.0,
                g: 0.0,
                b: 0.0
            },
            InstanceRef(9),
            Value::Array(vec![Value::from(1), Value::Array(vec![])]),
            Value::dictionary([("k", 1)]),
        ],
        64,
    )
    .unwrap();
    let frames = [
        Frame::Invoke {
            call: 1,
            name: Bytes::from_static(b"Echo"),
            args: args.clone(),
        },
        Frame::Result {
            call: 1,
            values: args.clone(),
        },
        Frame::Error {
            call: 2,
            kind: ErrorKind::Handler,
            message: "boom".into(),
        },
        Frame::Event {
            name: Bytes::from_static(b"Tick"),
            args: args.clone(),
        },
        Frame::Ping(1),
        Frame::Pong(1),
        Frame::Goodbye {
            code: GoodbyeCode::Normal,
            reason: "bye".into(),
        },
    ];
    let mut all = BytesMut::new();
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let mut one = BytesMut::new();
        f.encode(&mut one);
        all.extend_from_slice(&one);
        out.push((
            "frames",
            [
                "invoke", "result", "error", "event", "ping", "pong", "goodbye",
            ][i],
            one.to_vec(),
        ));
    }
    out.push(("frames", "all", all.to_vec()));
    let mut hello = BytesMut::new();
    proto::encode_preface(&mut hello);
    Frame::Hello {
        place: "lobby".into(),
        token: Bytes::from_static(b"token"),
    }
    .encode(&mut hello);
    out.push(("handshake", "hello", hello.to_vec()));
    let mut welcome = BytesMut::new();
    Frame::Welcome {
        player: 1 << 32,
        max_frame: 1 << 22,
    }
    .encode(&mut welcome);
    out.push(("handshake", "welcome", welcome.to_vec()));
    let mut refused = BytesMut::new();
    Frame::Refused {
        reason: "full".into(),
    }
    .encode(&mut refused);
    out.push(("handshake", "refused", refused.to_vec()));
    out.push(("values", "all_types", args.to_vec()));
    out.push(("values", "empty", vec![0]));
    out.push(("values", "deep", {
        let mut v = vec![1u8];
        for _ in 0..70 {
            v.extend_from_slice(&[0x0B, 1]);
        }
        v.push(0);
        v
    }));
    out
}

#[test]
fn the_fuzz_corpus_replays_without_a_panic() {
    if std::env::var_os("REMOTEFN_BLESS_CORPUS").is_some() {
        for (target, name, bytes) in seeds() {
            std::fs::create_dir_all(corpus(target)).unwrap();
            std::fs::write(corpus(target).join(format!("seed-{name}")), bytes).unwrap();
        }
    }
    let mut replayed = 0;
    for (target, run) in [
        ("frames", remotefn::fuzzing::frames as fn(&[u8])),
        ("handshake", remotefn::fuzzing::handshake),
        ("values", remotefn::fuzzing::values),
    ] {
        let dir = corpus(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            replayed += 1;
        }
    }
    assert!(replayed >= seeds().len(), "the corpus lost its seeds");
}
