//! How long a compact viewer takes to read an events frame, per event: through serde
//! (`serde_json::from_str::<ServerMsg>`) and through the quick reader (`shared::read_server_msg`);
//! and the same events in binary (`shared::binary`): the server's writing of each row, its
//! joining of a frame, a viewer's reading, and the bytes. Prints numbers; asserts only that
//! every reader reads the same events.
//!
//! The frames are what a load of 16 clerks makes: each call's twelve events as rows (invoked;
//! request sent, delivered, executed; forward sent, delivered, executed; ack sent, delivered;
//! reply sent, delivered; completed), 200 events a frame, a checker's verdict object now and then.
//!
//!   cargo run --release -p shared --example read_rows [CALLS]

use std::time::Instant;

use shared::binary::{FrameWriter, NameTable, Names};
use shared::{Event, ServerMsg};

/// One call's twelve rows, as the gateway writes them.
fn call_rows(out: &mut Vec<String>, seq: &mut u64, call: u64) {
    let clerk = 1001 + call % 16;
    let n = call / 16 + 1;
    let lock = format!("load-{}", call * 7 % 16);
    let op = call % 2;
    let t = 1_000_000 + call * 30;
    let id = |k: u64| (clerk << 32) | (n * 4 + k);
    let c = format!("c{clerk}");
    let mut row = |t: u64, node: &str, rest: String| {
        *seq += 1;
        out.push(format!("[{},{},\"{node}\",{rest}]", *seq, t));
    };
    let req = format!("{clerk},{n},0");
    row(
        t,
        &c,
        format!("\"I\",{clerk},{req},{op},\"{lock}\",\"s1\",null"),
    );
    row(
        t + 1,
        &c,
        format!(
            "\"S\",{},\"{c}\",\"s1\",[\"Q\",{req},{op},\"{lock}\"]",
            id(0)
        ),
    );
    row(t + 5, "s1", format!("\"D\",{},\"{c}\",\"s1\",0", id(0)));
    row(t + 6, "s1", format!("\"X\",{req},{op},\"{lock}\",9"));
    row(
        t + 7,
        "s1",
        format!(
            "\"S\",{},\"s1\",\"s2\",[\"F\",{req},{op},\"{lock}\"]",
            id(1)
        ),
    );
    row(t + 11, "s2", format!("\"D\",{},\"s1\",\"s2\",0", id(1)));
    row(t + 12, "s2", format!("\"X\",{req},{op},\"{lock}\",0"));
    row(
        t + 13,
        "s2",
        format!("\"S\",{},\"s2\",\"s1\",[\"A\",{req},1]", id(2)),
    );
    row(t + 17, "s1", format!("\"D\",{},\"s2\",\"s1\",0", id(2)));
    row(
        t + 18,
        "s1",
        format!("\"S\",{},\"s1\",\"{c}\",[\"P\",{req},1]", id(3)),
    );
    row(t + 22, &c, format!("\"D\",{},\"s1\",\"{c}\",0", id(3)));
    row(
        t + 23,
        &c,
        format!("\"C\",{clerk},{req},{op},\"{lock}\",\"s1\",1,23,1,null"),
    );
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mut rows = Vec::new();
    let mut seq = 0;
    for call in 0..calls {
        call_rows(&mut rows, &mut seq, call);
    }
    let frames: Vec<String> = rows
        .chunks(200)
        .enumerate()
        .map(|(i, chunk)| {
            let mut body = chunk.join(",");
            if i % 10 == 0 {
                body.push_str(&format!(
                    r#",{{"seq":{},"t_us":1,"node":"checker","type":"verdict","lock":"load-12","status":"unknown","ops":[],"explanation":"not checked yet","calls":0}}"#,
                    seq + 1 + i as u64
                ));
            }
            format!(r#"{{"type":"events","events":[{body}]}}"#)
        })
        .collect();
    let bytes: usize = frames.iter().map(String::len).sum();
    let events = |m: ServerMsg| match m {
        ServerMsg::Events { events } => events,
        _ => Vec::new(),
    };
    let quick_count = frames
        .iter()
        .filter(|f| shared::read_events_frame(f).is_some())
        .count();
    for f in &frames {
        let serde = serde_json::from_str::<ServerMsg>(f).expect("serde reads the frame");
        assert_eq!(
            events(shared::read_server_msg(f).expect("read")),
            events(serde)
        );
    }
    println!(
        "{} frames, {} events, {:.0} bytes an event; {quick_count} frames read quickly",
        frames.len(),
        rows.len(),
        bytes as f64 / rows.len() as f64
    );
    for round in 1..=3 {
        let mut line = format!("round {round}:");
        for (name, quick) in [("serde", false), ("quick", true)] {
            let t = Instant::now();
            let mut n = 0;
            for f in &frames {
                let m = if quick {
                    shared::read_server_msg(f)
                } else {
                    serde_json::from_str::<ServerMsg>(f)
                };
                n += events(m.expect("read")).len();
            }
            let ns = t.elapsed().as_nanos() as f64 / n as f64;
            line.push_str(&format!(" {name} {ns:.0} ns/event"));
        }
        println!("{line}");
    }
    binary(
        &frames
            .iter()
            .map(|f| events(shared::read_server_msg(f).expect("read")))
            .collect::<Vec<_>>(),
        bytes,
    );
}

/// An event as the bus keeps it for a binary viewer: its seq, and its binary row or its object.
type Stored = (u64, Option<Vec<u8>>, String);

/// The same frames in binary, as the bus writes rows and the gateway joins them.
fn binary(frames: &[Vec<Event>], json_bytes: usize) {
    let n: usize = frames.iter().map(Vec::len).sum();
    let encode = |table: &mut NameTable| -> Vec<Vec<Stored>> {
        frames
            .iter()
            .map(|f| {
                f.iter()
                    .map(|e| {
                        let mut row = Vec::with_capacity(32);
                        if shared::binary::write_row(&mut row, e, table) {
                            (e.seq, Some(row), String::new())
                        } else {
                            (
                                e.seq,
                                None,
                                serde_json::to_string(e).expect("events serialize"),
                            )
                        }
                    })
                    .collect()
            })
            .collect()
    };
    let join = |stored: &[Vec<Stored>], table: &NameTable| {
        let mut sent = 0;
        stored
            .iter()
            .map(|f| {
                let mut w = FrameWriter::new(sent, table.since(sent), 16 * f.len());
                sent = table.len();
                for (seq, row, json) in f {
                    match row {
                        Some(row) => w.row(*seq, row),
                        None => w.object(*seq, json),
                    }
                }
                w.finish()
            })
            .collect::<Vec<Vec<u8>>>()
    };
    let mut table = NameTable::new(shared::binary::MAX_NAMES);
    let stored = encode(&mut table);
    let bin = join(&stored, &table);
    let mut names = Names::default();
    for (b, f) in bin.iter().zip(frames) {
        assert_eq!(&shared::binary::read_frame(b, &mut names).expect("read"), f);
    }
    let bytes: usize = bin.iter().map(Vec::len).sum();
    println!(
        "binary: {:.1} bytes an event ({:.1}x fewer than the JSON frames)",
        bytes as f64 / n as f64,
        json_bytes as f64 / bytes as f64
    );
    for round in 1..=3 {
        // Rows into one buffer, as the bus writes them into its scratch buffer.
        let mut table = NameTable::new(shared::binary::MAX_NAMES);
        let mut scratch = Vec::with_capacity(32 * n);
        let t = Instant::now();
        for e in frames.iter().flatten() {
            shared::binary::write_row(&mut scratch, e, &mut table);
        }
        let write = t.elapsed().as_nanos() as f64 / n as f64;
        let stored = encode(&mut table);
        let t = Instant::now();
        let bin = join(&stored, &table);
        let joined = t.elapsed().as_nanos() as f64 / n as f64;
        let t = Instant::now();
        let mut names = Names::default();
        let mut read = 0;
        for b in &bin {
            read += shared::binary::read_frame(b, &mut names)
                .expect("read")
                .len();
        }
        let ns = t.elapsed().as_nanos() as f64 / read as f64;
        println!("round {round}: binary write {write:.0} ns/event, join {joined:.0}, read {ns:.0}");
    }
}
