//! Fair connection limits for the listeners: how many connections one client
//! may hold open at once (`http.max_connections_per_client`,
//! `server.max_connections_per_client`) and, for gRPC, all clients together
//! (`server.max_connections`).
//!
//! Each accepted connection asks [`ConnLimit::try_acquire`] for a place by
//! its source address and keeps the [`ConnGuard`] for as long as it is open
//! (for tonic, inside [`Counted`], the stream type it serves); dropping the
//! guard gives the place back. A connection over a bound is refused at once
//! by the accept loop, before any TLS or request byte is read, so a client
//! trickling sockets holds at most its own share of the listener.
//!
//! "A client" is a source IP address: an IPv4-mapped IPv6 address counts as
//! its IPv4 address, and IPv6 addresses count by their /64 prefix (one host
//! is usually given a whole /64 and may pick any address in it). Clients
//! behind one NAT or proxy share its address and so its bound.
//!
//! This module reads and writes no socket and knows neither HTTP nor gRPC
//! (beyond delegating tonic's [`Connected`] in [`Counted`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Open connections per client, and in all, on one listener. Cloning shares
/// the counts.
#[derive(Clone)]
pub struct ConnLimit {
    shared: Arc<Shared>,
}

struct Shared {
    per_client: usize,
    /// `None`: no bound on the sum here (the HTTP gateway bounds it with its
    /// own semaphore, where a connection waits rather than being refused).
    total: Option<usize>,
    /// A `std::sync::Mutex` rather than a tokio one or a sharded map: it is
    /// held for one hash-map update per accepted or closed connection, never
    /// across an await, and no other lock is taken inside it.
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// A client has an entry only while it has a connection open (removed at
    /// 0), so the map holds at most as many entries as there are open
    /// connections: its memory is bounded by the listener's own bound.
    by_client: HashMap<IpAddr, usize>,
    open: usize,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its client already had `per_client` connections open.
    PerClient,
    /// All clients together already had `total` connections open.
    Total,
}

/// One connection's place; given back when dropped.
pub struct ConnGuard {
    shared: Arc<Shared>,
    client: IpAddr,
}

/// The client an address belongs to (see the module docs).
pub fn client_of(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        v4 => v4,
    }
}

impl ConnLimit {
    /// At most `per_client` connections per client and, if given, `total`
    /// in all. Both must be at least 1 (the config validation says so).
    pub fn new(per_client: usize, total: Option<usize>) -> Self {
        assert!(per_client >= 1 && total.is_none_or(|t| t >= 1), "connection bounds are at least 1");
        ConnLimit { shared: Arc::new(Shared { per_client, total, counts: Mutex::default() }) }
    }

    /// A place for a connection from `peer`, or why there is none.
    pub fn try_acquire(&self, peer: IpAddr) -> Result<ConnGuard, Refused> {
        let client = client_of(peer);
        let mut counts = self.shared.lock();
        if self.shared.total.is_some_and(|total| counts.open >= total) {
            return Err(Refused::Total);
        }
        let held = counts.by_client.entry(client).or_insert(0);
        if *held >= self.shared.per_client {
            return Err(Refused::PerClient);
        }
        *held += 1;
        counts.open += 1;
        Ok(ConnGuard { shared: self.shared.clone(), client })
    }

    /// Connections open now from `peer`'s client.
    pub fn open_from(&self, peer: IpAddr) -> usize {
        self.shared.lock().by_client.get(&client_of(peer)).copied().unwrap_or(0)
    }

    /// Connections open now, and the clients holding them.
    pub fn open(&self) -> (usize, usize) {
        let counts = self.shared.lock();
        (counts.open, counts.by_client.len())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // No invariant spans a panic here: every update is complete or not made.
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut counts = self.shared.lock();
        let held = counts.by_client.get_mut(&self.client);
        debug_assert!(held.as_ref().is_some_and(|h| **h > 0), "a guard's client has a count");
        if let Some(held) = held {
            *held -= 1;
            if *held == 0 {
                counts.by_client.remove(&self.client);
            }
        }
        counts.open -= 1;
    }
}

/// A stream that holds its connection's place: the place is given back when
/// the connection is dropped (closed), however its server ends it. Reads,
/// writes and tonic's connection info are the inner stream's.
pub struct Counted<S> {
    stream: S,
    _place: ConnGuard,
}

impl<S> Counted<S> {
    pub fn new(stream: S, place: ConnGuard) -> Self {
        Counted { stream, _place: place }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for Counted<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_at_its_bound_is_refused_and_others_are_not() {
        let limit = ConnLimit::new(2, None);
        let a1 = limit.try_acquire(ip("10.0.0.1")).unwrap();
        let _a2 = limit.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(limit.try_acquire(ip("10.0.0.1")).err(), Some(Refused::PerClient));
        let _b = limit.try_acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(limit.open(), (3, 2));
        drop(a1);
        assert_eq!(limit.open_from(ip("10.0.0.1")), 1);
        let _a3 = limit.try_acquire(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn the_total_bound_refuses_everyone_until_a_place_is_given_back() {
        let limit = ConnLimit::new(2, Some(3));
        let a = limit.try_acquire(ip("10.0.0.1")).unwrap();
        let _b = limit.try_acquire(ip("10.0.0.2")).unwrap();
        let _c = limit.try_acquire(ip("10.0.0.3")).unwrap();
        assert_eq!(limit.try_acquire(ip("10.0.0.4")).err(), Some(Refused::Total));
        drop(a);
        let _d = limit.try_acquire(ip("10.0.0.4")).unwrap();
        // A refusal takes nothing: no entry is left for a refused client.
        assert_eq!(limit.try_acquire(ip("10.0.0.5")).err(), Some(Refused::Total));
        assert_eq!(limit.open(), (3, 3));
    }

    #[test]
    fn entries_are_removed_at_zero_so_memory_follows_open_connections() {
        let limit = ConnLimit::new(4, None);
        let guards: Vec<_> = (0..200u32).map(|i| limit.try_acquire(IpAddr::from(i.to_be_bytes())).unwrap()).collect();
        assert_eq!(limit.open(), (200, 200));
        drop(guards);
        assert_eq!(limit.open(), (0, 0));
    }

    #[test]
    fn mapped_ipv4_is_ipv4_and_ipv6_counts_by_its_64_prefix() {
        let limit = ConnLimit::new(1, None);
        let _v4 = limit.try_acquire(ip("192.0.2.7")).unwrap();
        assert_eq!(limit.try_acquire(ip("::ffff:192.0.2.7")).err(), Some(Refused::PerClient));
        let _v6 = limit.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(limit.try_acquire(ip("2001:db8:1:2:ffff::9")).err(), Some(Refused::PerClient));
        let _other = limit.try_acquire(ip("2001:db8:1:3::1")).unwrap();
        assert_eq!(client_of(ip("2001:db8:1:2:abcd::1")), ip("2001:db8:1:2::"));
    }
}
