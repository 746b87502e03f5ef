//! Fair connection limits (issue 16): one client flooding a listener with
//! slow or idle connections holds at most its own share of it, and every
//! other client is still served.
//!
//! Loopback gives several client addresses: the flood binds its sockets to
//! 127.0.0.2 (Linux routes all of 127/8 to lo), the well-behaved client
//! connects from 127.0.0.1 as every other test does. The assertions are on
//! which connections were closed, which were served and in what order,
//! never on wall-clock figures; PATIENCE only stops a broken run from
//! hanging.

use std::net::SocketAddr;

use lastmile_server::LastmileConfig;
use lastmile_server::config::{ConfigSource, embedded_config_text};
use lastmile_suite::http::{get, read_head};
use lastmile_suite::{PATIENCE, TestServer, eventually, v1 as pb};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinSet;

const FLOODER: &str = "127.0.0.2";
const ANOTHER_FLOODER: &str = "127.0.0.3";

/// A TCP connection to `server` from `source` (port chosen by the kernel).
async fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{source}:0").parse().unwrap()).expect("bind the source address");
    tokio::time::timeout(PATIENCE, socket.connect(server)).await.expect("connect in time").expect("connect")
}

/// Waits until the server serves everything: until then the gRPC port is
/// served by the recovery phase (health only), whose connections are closed
/// when it ends, and the gateway does not accept. The gateway answering means
/// that phase is over; it takes no gRPC place.
async fn ready(server: &TestServer) {
    assert_eq!(get(server.http_addr, "/healthz").await.status, 200);
}

/// What the server did first with a flood connection.
enum Seen {
    /// It closed it (EOF, or a reset because the flood wrote to it).
    Closed,
    /// It sent something: the connection is open and served.
    Answered(OwnedReadHalf),
}

/// Opens `n` connections from `source`, writes `hello` on each, and watches
/// every one for the server's first move (peek: nothing is consumed).
async fn flood(source: &str, server: SocketAddr, n: usize, hello: &[u8]) -> Flood {
    let mut watching = JoinSet::new();
    let mut writers = Vec::with_capacity(n);
    for i in 0..n {
        let stream = connect_from(source, server).await;
        let (mut read, mut write) = stream.into_split();
        // A refused connection may already be closed: the write's outcome
        // does not matter, what the server does next does.
        let _ = write.write_all(hello).await;
        writers.push(Some(write));
        watching.spawn(async move {
            let mut byte = [0u8; 1];
            match read.peek(&mut byte).await {
                Ok(0) | Err(_) => (i, Seen::Closed),
                Ok(_) => (i, Seen::Answered(read)),
            }
        });
    }
    Flood { watching, writers }
}

struct Flood {
    watching: JoinSet<(usize, Seen)>,
    /// The flood's write halves, by connection: holding them keeps the
    /// connections open (from the client's side) for the whole test.
    writers: Vec<Option<OwnedWriteHalf>>,
}

impl Flood {
    /// The next connection the server acted on.
    async fn next(&mut self) -> (usize, Seen) {
        tokio::time::timeout(PATIENCE, self.watching.join_next())
            .await
            .expect("the server acted on a flood connection within PATIENCE")
            .expect("a connection is still watched")
            .expect("watch task")
    }

    /// Waits until the server has closed `n` of the connections; every one
    /// it acts on before that must be a close. Returns the closed ones.
    async fn until_closed(&mut self, n: usize) -> Vec<usize> {
        let mut closed = Vec::new();
        while closed.len() < n {
            match self.next().await {
                (i, Seen::Closed) => closed.push(i),
                (i, Seen::Answered(_)) => panic!("flood connection {i} was answered before {n} were closed"),
            }
        }
        closed
    }
}

fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The flood: one client trickles more connections than its bound
/// (and than `http.max_connections`), each with half a request head. The
/// server closes those beyond the bound at once; another client's requests
/// are then answered while the flood's connections are still open, and the
/// flood's own connections within its bound are still served afterwards.
#[tokio::test]
async fn a_slow_connection_flood_from_one_address_leaves_another_served() {
    const PER_CLIENT: usize = 8;
    const FLOOD: usize = 40;
    let server = TestServer::start_edited(|c| {
        c.http.max_connections = 16;
        c.http.max_connections_per_client = PER_CLIENT;
        // Far beyond the test: no held connection is closed by the timeout.
        c.http.header_read_timeout_ms = 600_000;
    })
    .await;
    ready(&server).await;
    let addr = server.http_addr;
    let half_head = format!("GET /v1/ping HTTP/1.1\r\nhost: {addr}\r\n");
    let mut flood = flood(FLOODER, addr, FLOOD, half_head.as_bytes()).await;
    assert!(FLOOD > server.config.http.max_connections, "the flood alone would fill the listener");

    // Every connection beyond the bound is closed, none within it.
    let closed = flood.until_closed(FLOOD - PER_CLIENT).await;
    let held: Vec<usize> = (0..FLOOD).filter(|i| !closed.contains(i)).collect();
    assert_eq!(held.len(), PER_CLIENT);

    // With the flood's connections open and still inside their heads,
    // another address is served, on fresh connections, more than once.
    for _ in 0..3 {
        let ping = get(addr, "/v1/ping").await;
        assert_eq!(ping.status, 200, "{}", ping.text());
    }
    assert!(flood.watching.try_join_next().is_none(), "no held flood connection was closed or answered meanwhile");

    // The flood's connections within its bound were kept and are served
    // when their heads are complete: bounded, not punished.
    for &i in &held {
        let write = flood.writers[i].as_mut().unwrap();
        write.write_all(b"connection: close\r\n\r\n").await.unwrap();
    }
    for _ in 0..PER_CLIENT {
        let (i, seen) = flood.next().await;
        let Seen::Answered(read) = seen else { panic!("held flood connection {i} was closed") };
        let stream = read.reunite(flood.writers[i].take().unwrap()).unwrap();
        let (status, _) = read_head(&mut BufReader::new(stream)).await;
        assert_eq!(status, 200, "held flood connection {i}");
    }

    let page = get(addr, "/metrics").await.text();
    assert_eq!(
        sample(&page, "lastmile_limit_hits_total{limit=\"http.max_connections_per_client\"}"),
        Some((FLOOD - PER_CLIENT) as f64),
        "{page}"
    );
    server.shutdown().await;
}

/// HTTP/2's client preface and an empty SETTINGS frame: an idle gRPC
/// connection, as a client that opens connections and never calls.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Sends an HTTP/2 PING on `stream` and reads frames until its ACK: the
/// connection is open and its server answers.
async fn h2_ping(stream: &mut TcpStream) {
    let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 3, 5, 1, 0, 0, 0, 0];
    stream.write_all(&ping).await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut header = [0u8; 9];
            stream.read_exact(&mut header).await.expect("an HTTP/2 frame");
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; length];
            stream.read_exact(&mut payload).await.expect("its payload");
            if header[3] == 6 && header[4] & 1 == 1 {
                assert_eq!(payload, ping[9..], "the ACK of our PING");
                return;
            }
        }
    })
    .await
    .expect("PING answered within PATIENCE");
}

/// The same on the gRPC listener: idle HTTP/2 connections from one address
/// beyond `server.max_connections_per_client` are closed at once; a Ping
/// from another address is answered while the others stay open and served.
#[tokio::test]
async fn an_idle_grpc_connection_flood_from_one_address_leaves_another_served() {
    const PER_CLIENT: usize = 4;
    const FLOOD: usize = 12;
    let server = TestServer::start_edited(|c| {
        c.server.max_connections = 64;
        c.server.max_connections_per_client = PER_CLIENT;
    })
    .await;
    ready(&server).await;
    let mut flood = flood(FLOODER, server.addr, FLOOD, H2_PREFACE).await;
    // The server answers a connection it keeps with its SETTINGS; it closes
    // the others unread. All twelve are decided either way.
    let (mut closed, mut held) = (Vec::new(), Vec::new());
    for _ in 0..FLOOD {
        match flood.next().await {
            (i, Seen::Closed) => closed.push(i),
            (i, Seen::Answered(read)) => held.push((i, read)),
        }
    }
    assert_eq!((closed.len(), held.len()), (FLOOD - PER_CLIENT, PER_CLIENT));

    let mut client = server.client().await;
    client.ping(pb::PingRequest {}).await.expect("Ping from another address");

    // The held connections are still open and served after that Ping.
    for (i, read) in held {
        let mut stream = read.reunite(flood.writers[i].take().unwrap()).unwrap();
        h2_ping(&mut stream).await;
    }
    let page = get(server.http_addr, "/metrics").await.text();
    assert_eq!(
        sample(&page, "lastmile_limit_hits_total{limit=\"server.max_connections_per_client\"}"),
        Some((FLOOD - PER_CLIENT) as f64),
        "{page}"
    );
    server.shutdown().await;
}

/// `server.max_connections` bounds all clients together: with its places
/// taken (by two addresses, each within its own bound), a new connection is
/// closed at once, whoever it is from; when a connection closes, its place
/// is given back and the next client is served.
#[tokio::test]
async fn beyond_server_max_connections_a_connection_is_closed_until_a_place_frees() {
    let server = TestServer::start_edited(|c| {
        c.server.max_connections = 6;
        c.server.max_connections_per_client = 4;
    })
    .await;
    ready(&server).await;
    let mut first = flood(FLOODER, server.addr, 4, H2_PREFACE).await;
    let mut kept = Vec::new();
    for _ in 0..4 {
        let (i, seen) = first.next().await;
        let Seen::Answered(read) = seen else { panic!("connection {i} was closed within both bounds") };
        kept.push(read.reunite(first.writers[i].take().unwrap()).unwrap());
    }
    let mut second = flood(ANOTHER_FLOODER, server.addr, 4, H2_PREFACE).await;
    let (mut answered, mut closed) = (0, 0);
    for _ in 0..4 {
        match second.next().await {
            (_, Seen::Answered(_)) => answered += 1,
            (_, Seen::Closed) => closed += 1,
        }
    }
    assert_eq!((answered, closed), (2, 2), "two places were left");
    // Full: a third address is closed at once too.
    let mut third = flood("127.0.0.1", server.addr, 1, H2_PREFACE).await;
    assert!(matches!(third.next().await, (_, Seen::Closed)), "no place left for anyone");

    // The first flood's connections are still open and served; then they
    // leave, their places come back and a Ping is served.
    for stream in &mut kept {
        h2_ping(stream).await;
    }
    drop(kept);
    let endpoint = server.endpoint();
    eventually(|| {
        let endpoint = endpoint.clone();
        async move {
            let channel = tonic::transport::Channel::from_shared(endpoint).unwrap().connect().await.ok()?;
            let mut client = pb::dispatch_client::DispatchClient::new(channel);
            client.ping(pb::PingRequest {}).await.ok()
        }
    })
    .await;
    let page = get(server.http_addr, "/metrics").await.text();
    assert!(sample(&page, "lastmile_limit_hits_total{limit=\"server.max_connections\"}") >= Some(3.0), "{page}");
    // Raw connections never answer the drain's GOAWAY: close them first, or
    // shutdown waits for HTTP/2 keepalive to give up on them.
    drop((second, third));
    server.shutdown().await;
}

/// Each per-client bound is at least 1 and at most its listener's total;
/// the refusal names the key. A config written before these keys existed
/// gets their defaults.
#[test]
fn the_per_client_bounds_are_checked_at_start() {
    let parse = |text: &str| LastmileConfig::parse(text, ConfigSource::Embedded);
    let text = embedded_config_text();
    let config = parse(text).unwrap();
    assert_eq!(
        (
            config.http.max_connections_per_client,
            config.server.max_connections_per_client,
            config.server.max_connections
        ),
        (64, 256, 4096)
    );
    for (from, to, key) in [
        ("max_connections_per_client = 64", "max_connections_per_client = 257", "http.max_connections_per_client"),
        ("max_connections_per_client = 64", "max_connections_per_client = 0", "http.max_connections_per_client"),
        ("max_connections_per_client = 256", "max_connections_per_client = 4097", "server.max_connections_per_client"),
        ("max_connections = 4096", "max_connections = 0", "server.max_connections"),
    ] {
        assert_eq!(text.matches(from).count(), 1, "{from}");
        let err = parse(&text.replace(from, to)).unwrap_err().to_string();
        assert!(err.contains(key), "{to}: {err}");
    }
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("max_connections_per_client") && *l != "max_connections = 4096")
        .collect::<Vec<_>>()
        .join("\n");
    let config = parse(&without).unwrap();
    assert_eq!(
        (
            config.http.max_connections_per_client,
            config.server.max_connections_per_client,
            config.server.max_connections
        ),
        (64, 256, 4096)
    );
}
