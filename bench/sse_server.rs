//! Paced SSE provider for `make bench` (std only; built with plain `rustc -O`).
//!
//! Serves a canned stream one event per write (HTTP/1.1 chunked, TCP_NODELAY), with a
//! pause between events, the way a model streams tokens, so that Envoy sees about one
//! event per read and the gateway pays its per-chunk cost per event. Paths containing
//! `anthropic` get the Anthropic stream, all others the OpenAI one. Keep-alive, one thread
//! per connection. Exits by itself after `--max-seconds`.
//!
//! ```text
//! sse_server --port 18003 --openai answer-openai-stream.sse \
//!            --anthropic answer-anthropic-stream.sse --gap-us 200 --max-seconds 900
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

struct Streams {
    openai: Vec<Vec<u8>>,
    anthropic: Vec<Vec<u8>>,
    gap: Duration,
}

fn split_events(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\n' && bytes[i + 1] == b'\n' {
            out.push(bytes[start..i + 2].to_vec());
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    if start < bytes.len() {
        out.push(bytes[start..].to_vec());
    }
    out
}

fn serve(stream: TcpStream, streams: Arc<Streams>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        // Request line and headers.
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body)?;

        let events = if path.contains("anthropic") {
            &streams.anthropic
        } else {
            &streams.openai
        };
        writer.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n",
        )?;
        for event in events {
            let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
            chunk.extend_from_slice(event);
            chunk.extend_from_slice(b"\r\n");
            writer.write_all(&chunk)?;
            if !streams.gap.is_zero() {
                std::thread::sleep(streams.gap);
            }
        }
        writer.write_all(b"0\r\n\r\n")?;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(18003);
    let gap_us: u64 = arg("--gap-us").and_then(|p| p.parse().ok()).unwrap_or(200);
    let max_seconds: u64 = arg("--max-seconds")
        .and_then(|p| p.parse().ok())
        .unwrap_or(900);
    let read = |name: &str| match arg(name) {
        Some(p) => std::fs::read(&p).unwrap_or_else(|e| {
            eprintln!("sse_server: cannot read {p}: {e}");
            std::process::exit(2)
        }),
        None => {
            eprintln!("sse_server: {name} <file> is required");
            std::process::exit(2)
        }
    };
    let streams = Arc::new(Streams {
        openai: split_events(&read("--openai")),
        anthropic: split_events(&read("--anthropic")),
        gap: Duration::from_micros(gap_us),
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("sse_server: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(2)
    });
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(max_seconds));
        eprintln!("sse_server: --max-seconds reached, exiting");
        std::process::exit(0);
    });
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let streams = Arc::clone(&streams);
        std::thread::spawn(move || {
            let _ = serve(conn, streams);
        });
    }
}
