//! A minimal HTTP/1.1 client for the gateway tests (no client library):
//! one request per connection (`connection: close`), chunked bodies, and
//! Server-Sent Events streams. Works over any stream, so TLS tests use it
//! too.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::PATIENCE;

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("status {}: body is not JSON ({e}): {}", self.status, self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body_len: Option<usize>,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(len) = body_len {
        head.push_str(&format!("content-length: {len}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Status line and headers.
pub async fn read_head<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header line");
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            return (status, headers);
        }
        let (name, value) = trimmed.split_once(':').unwrap_or_else(|| panic!("{trimmed:?}"));
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// One chunk of a chunked body; `None` at the last (empty) chunk.
pub async fn read_chunk<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("chunk size");
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .unwrap_or_else(|_| panic!("chunk size {line:?}"));
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).await.expect("chunk");
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

/// The rest of a `connection: close` response's body.
pub async fn read_body<S: AsyncRead + Unpin>(reader: &mut BufReader<S>, headers: &[(String, String)]) -> Vec<u8> {
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(reader).await {
            body.extend(chunk);
        }
    } else {
        // The server may close with our request body unread (413): a reset
        // after the response is not the test's concern.
        let _ = reader.read_to_end(&mut body).await;
    }
    body
}

/// One request on a fresh connection (`connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let stream = TcpStream::connect(addr).await.expect("connect");
    http_over(stream, addr, method, path, headers, body).await
}

/// One request over an open connection (plain or TLS), `connection: close`.
pub async fn http_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    tokio::time::timeout(PATIENCE, async {
        stream.write_all(request_head(addr, method, path, headers, body.map(<[u8]>::len)).as_bytes()).await.unwrap();
        if let Some(body) = body {
            stream.write_all(body).await.unwrap();
        }
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader).await;
        let body = read_body(&mut reader, &headers).await;
        HttpResponse { status, headers, body }
    })
    .await
    .expect("no answer within PATIENCE")
}

pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, "GET", path, &[], None).await
}

pub async fn post(addr: SocketAddr, path: &str, body: &Value) -> HttpResponse {
    let body = serde_json::to_vec(body).unwrap();
    http(addr, "POST", path, &[("content-type", "application/json")], Some(&body)).await
}

pub async fn post_raw(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
    http(addr, "POST", path, &[("content-type", "application/json")], Some(body.as_bytes())).await
}

/// An open `GET /v1/events` stream.
pub struct Sse {
    reader: BufReader<TcpStream>,
    pending: String,
    ended: bool,
}

#[derive(Debug)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

impl Sse {
    /// Opens the stream; panics unless the answer is 200 text/event-stream.
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        match Sse::try_open(addr, path, headers).await {
            Ok(sse) => sse,
            Err(response) => panic!("{path}: {} {}", response.status, response.text()),
        }
    }

    pub async fn try_open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Sse, HttpResponse> {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request_head(addr, "GET", path, headers, None).as_bytes()).await.unwrap();
        let mut reader = BufReader::new(stream);
        let (status, headers) = tokio::time::timeout(PATIENCE, read_head(&mut reader)).await.expect("head");
        if status != 200 {
            let body = read_body(&mut reader, &headers).await;
            return Err(HttpResponse { status, headers, body });
        }
        let content_type = headers.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.as_str());
        assert_eq!(content_type, Some("text/event-stream"));
        Ok(Sse { reader, pending: String::new(), ended: false })
    }

    /// The next event (keep-alive comments skipped); `None` when the
    /// response has ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim_start().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim_start().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                let data = serde_json::from_str(&data).unwrap_or_else(|e| panic!("data {data:?}: {e}"));
                return Some(SseEvent { id, event, data });
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout(PATIENCE, read_chunk(&mut self.reader)).await.expect("event stream stalled") {
                Some(chunk) => self.pending.push_str(&String::from_utf8(chunk).expect("utf-8")),
                None => self.ended = true,
            }
        }
    }

    /// Events until one satisfies `stop` (included).
    pub async fn until(&mut self, stop: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await.expect("stream ended early");
            let done = stop(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }
}
