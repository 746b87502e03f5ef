//! A minimal HTTP/1.1 GET for the CLI's reads of the JSON/HTTP gateway
//! (`lastmile eta status`, ...): one request per connection
//! (`Connection: close`), http:// over a TCP stream, https:// over rustls
//! trusting only `--ca` (this build carries no system root store, as for
//! webhooks). Reads the status, `Content-Type` and the body (by
//! `Content-Length`, chunked, or to the end of the stream).
//!
//! Bounded: the whole exchange within [`TIMEOUT`], the answer at most
//! [`MAX_RESPONSE_BYTES`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// Connect, send and read the whole answer within this.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer (head and body) read, bytes.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// `GET url`, with `Authorization: Bearer token` when given; `ca` is the
/// PEM file of the CA to trust for https://. Returns the status code, the
/// `Content-Type` (empty when absent) and the body. Any status is `Ok`:
/// the caller decides what a 401 or a 404 means.
pub async fn get(url: &str, token: Option<&str>, ca: Option<&Path>) -> anyhow::Result<(u16, String, Vec<u8>)> {
    tokio::time::timeout(TIMEOUT, get_unbounded(url, token, ca))
        .await
        .with_context(|| format!("GET {url}: no complete answer within {} s", TIMEOUT.as_secs()))?
}

async fn get_unbounded(url: &str, token: Option<&str>, ca: Option<&Path>) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let target = Url::parse(url)?;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lastmile/{}\r\nAccept: application/json\r\nConnection: close\r\n",
        target.path,
        target.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(token) = token {
        anyhow::ensure!(
            token.bytes().all(|b| b.is_ascii_graphic()),
            "the token must be printable ASCII without spaces"
        );
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    // The CA is checked before connecting: a missing --ca is a usage error,
    // whatever the network says.
    let connector = match (target.https, ca) {
        (false, _) => None,
        (true, Some(ca)) => Some(tls_connector(ca)?),
        (true, None) => anyhow::bail!("https:// needs --ca (the PEM of the CA that signed the server's certificate)"),
    };
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .with_context(|| format!("cannot connect to {}:{}", target.host, target.port))?;
    let _ = tcp.set_nodelay(true);
    let raw = if let Some(connector) = connector {
        let name = ServerName::try_from(target.host.clone()).context("not a valid TLS server name")?;
        let tls = connector.connect(name, tcp).await.with_context(|| format!("TLS handshake with {}", target.host))?;
        exchange(tls, request.as_bytes()).await?
    } else {
        exchange(tcp, request.as_bytes()).await?
    };
    parse_response(&raw).with_context(|| format!("GET {url}"))
}

fn tls_connector(ca: &Path) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let pem = std::fs::read(ca).with_context(|| format!("cannot read --ca {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.with_context(|| format!("--ca {}", ca.display()))?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "--ca {}: no certificate in the file", ca.display());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Sends `request` and reads until the peer closes (bounded). A TLS peer
/// that closes without close_notify after a complete answer is fine: the
/// framing (`Content-Length` or chunks) says whether the body is whole.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    stream.write_all(request).await.context("cannot send the request")?;
    stream.flush().await?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                anyhow::ensure!(raw.len() <= MAX_RESPONSE_BYTES, "answer larger than {MAX_RESPONSE_BYTES} bytes");
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).context("cannot read the answer"),
        }
    }
    Ok(raw)
}

/// An http:// or https:// URL: scheme, host (IPv6 without brackets), port, path.
#[derive(Debug, PartialEq)]
struct Url {
    https: bool,
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
}

impl Url {
    fn parse(url: &str) -> anyhow::Result<Url> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            anyhow::bail!("{url:?}: not an http:// or https:// URL");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        anyhow::ensure!(!authority.contains('@'), "{url:?}: user info in a URL is not supported; use --token");
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').with_context(|| format!("{url:?}: unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        anyhow::ensure!(!host.is_empty(), "{url:?}: no host");
        let port = match port {
            Some(p) => p.parse().with_context(|| format!("{url:?}: bad port {p:?}"))?,
            None => default_port,
        };
        let path = path.split('#').next().unwrap_or("/").to_string();
        Ok(Url { https, host: host.to_string(), port, path })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == if self.https { 443 } else { 80 } { host } else { format!("{host}:{}", self.port) }
    }
}

/// Status, content type and body of a whole HTTP/1.1 answer.
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").context("the answer has no complete head")?;
    let head = std::str::from_utf8(&raw[..head_end]).context("the answer's head is not UTF-8")?;
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    anyhow::ensure!(version.starts_with("HTTP/1."), "not an HTTP/1.x answer: {status_line:?}");
    let status: u16 =
        parts.next().unwrap_or_default().parse().with_context(|| format!("bad status line {status_line:?}"))?;
    let (mut content_type, mut content_length, mut chunked) = (String::new(), None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.to_string(),
            "content-length" => {
                content_length = Some(value.parse::<usize>().with_context(|| format!("bad Content-Length {value:?}"))?)
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().split(',').any(|c| c.trim() == "chunked"),
            _ => {}
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(length) = content_length {
        anyhow::ensure!(body.len() >= length, "body cut short: {} of {length} bytes", body.len());
        body[..length].to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, content_type, body))
}

/// A chunked body's content (trailers ignored); an error when it is cut short.
fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").context("chunked body cut short (no size line)")?;
        let line = std::str::from_utf8(&rest[..line_end]).context("chunk size line is not UTF-8")?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).with_context(|| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        anyhow::ensure!(rest.len() >= size + 2, "chunked body cut short");
        body.extend_from_slice(&rest[..size]);
        anyhow::ensure!(&rest[size..size + 2] == b"\r\n", "chunk not followed by CRLF");
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_ports_paths_and_ipv6() {
        let u = Url::parse("http://127.0.0.1:8080/v1/eta").unwrap();
        assert_eq!(u, Url { https: false, host: "127.0.0.1".into(), port: 8080, path: "/v1/eta".into() });
        assert_eq!(u.host_header(), "127.0.0.1:8080");
        let u = Url::parse("https://lastmile.example").unwrap();
        assert_eq!((u.port, u.path.as_str(), u.host_header().as_str()), (443, "/", "lastmile.example"));
        let u = Url::parse("http://[::1]:9/x?y=1#frag").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 9, "/x?y=1"));
        assert_eq!(u.host_header(), "[::1]:9");
        for bad in ["ftp://x", "127.0.0.1:8080", "http://:80/", "http://h:port/", "http://u@h/"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_read_by_length_chunks_or_to_the_end() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}extra";
        assert_eq!(parse_response(by_length).unwrap(), (200, "application/json".into(), b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n4;x=y\r\nab\r\n\r\n3\r\ncde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, String::new(), b"ab\r\ncde".to_vec()));
        let to_end = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(parse_response(to_end).unwrap().2, b"all of it");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn get_sends_the_token_and_reads_a_chunked_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "request cut short");
                request.extend_from_slice(&buf[..n]);
            }
            let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
                          5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n";
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let (status, content_type, body) = get(&format!("http://{addr}/v1/eta"), Some("s3cret"), None).await.unwrap();
        assert_eq!((status, content_type.as_str(), body.as_slice()), (200, "application/json", &b"{\"a\":1}"[..]));
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /v1/eta HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nAuthorization: Bearer s3cret\r\n"), "{request}");
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
        assert!(request.contains(&format!("\r\nHost: {addr}\r\n")), "{request}");
    }

    #[tokio::test]
    async fn https_without_a_ca_is_refused_before_connecting() {
        let e = get("https://127.0.0.1:1/v1/eta", None, None).await.unwrap_err();
        assert!(format!("{e:#}").contains("needs --ca"), "{e:#}");
    }
}
