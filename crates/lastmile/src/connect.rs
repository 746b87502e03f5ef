//! How the binary's clients (report, watch, terminal, ...) reach a server:
//! address, bearer token and, for `https://` addresses, the CA to trust.
//!
//! `--addr a,b,c` names the nodes of a cluster: a client connects to the
//! one that leads ([`find_leader`]): it asks each in turn (a Ping), and a
//! standby's refusal names the leader, which it asks next. During a
//! takeover nobody leads for a few seconds, so it keeps asking for up to
//! [`LEADER_WAIT`]. The terminal and `watch` reconnect that way after a
//! lost connection, so they follow a failover.

use anyhow::Context;
use clap::Args;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// A channel that sends the caller's bearer token with every call.
pub type Conn = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to every request (nothing without a token).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    pub fn none() -> Self {
        Bearer(None)
    }

    /// `channel` with no token (a server with auth off).
    pub fn wrap_plain(channel: Channel) -> Conn {
        InterceptedService::new(channel, Bearer::none())
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// How long a client looks for a leader among several addresses.
pub const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Args, Clone)]
pub struct Target {
    /// Server address (https:// for a server with TLS); several,
    /// comma-separated, for the nodes of a cluster (the leader is used).
    #[arg(long, default_value = "http://127.0.0.1:50051", global = true)]
    pub addr: String,
    /// Bearer token, for a server with [auth] on.
    #[arg(long, env = "LASTMILE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// PEM file of the CA that signed the server's certificate (https:// addresses).
    #[arg(long, env = "LASTMILE_CA", global = true)]
    pub ca: Option<std::path::PathBuf>,
}

impl Target {
    /// The addresses `--addr` lists.
    pub fn addresses(&self) -> Vec<String> {
        addresses(&self.addr)
    }

    fn endpoint_of(&self, addr: &str) -> anyhow::Result<Endpoint> {
        let mut endpoint = Endpoint::from_shared(addr.to_string()).with_context(|| format!("bad address {addr}"))?;
        if addr.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca {
                let pem = std::fs::read_to_string(ca).with_context(|| format!("cannot read --ca {}", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        Ok(endpoint)
    }

    pub fn bearer(&self) -> anyhow::Result<Bearer> {
        match &self.token {
            None => Ok(Bearer::none()),
            Some(token) => {
                Ok(Bearer(Some(format!("Bearer {token}").parse().context("the token must be printable ASCII")?)))
            }
        }
    }

    /// A connection to the server, or to the leader of the nodes listed.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let addrs = self.addresses();
        if let [one] = addrs.as_slice() {
            let channel = self.endpoint_of(one)?.connect().await.with_context(|| format!("cannot connect to {one}"))?;
            return Ok(InterceptedService::new(channel, self.bearer()?));
        }
        let bearer = self.bearer()?;
        let leader = find_leader(&addrs, |addr| self.endpoint_of(addr), bearer.clone()).await?;
        let channel =
            self.endpoint_of(&leader)?.connect().await.with_context(|| format!("cannot connect to {leader}"))?;
        Ok(InterceptedService::new(channel, bearer))
    }
}

/// `a,b,c` as addresses, each with a scheme (`http://` if it has none).
pub fn addresses(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| if a.contains("://") { a.to_string() } else { format!("http://{a}") })
        .collect()
}

/// The address among `addrs` (or named by a standby's refusal) whose
/// server answers Ping: the leader. Asks each in turn, then again, for at
/// most [`LEADER_WAIT`].
pub async fn find_leader(
    addrs: &[String],
    endpoint: impl Fn(&str) -> anyhow::Result<Endpoint>,
    bearer: Bearer,
) -> anyhow::Result<String> {
    use lastmile_proto::v1::dispatch_client::DispatchClient;
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    let mut last = String::from("no answer");
    loop {
        let mut queue: std::collections::VecDeque<String> = addrs.iter().cloned().collect();
        let mut asked = std::collections::BTreeSet::new();
        while let Some(addr) = queue.pop_front() {
            if !asked.insert(addr.clone()) {
                continue;
            }
            let connected = tokio::time::timeout(std::time::Duration::from_secs(2), endpoint(&addr)?.connect()).await;
            let channel = match connected {
                Ok(Ok(channel)) => channel,
                Ok(Err(e)) => {
                    last = format!("{addr}: {e}");
                    continue;
                }
                Err(_) => {
                    last = format!("{addr}: no answer within 2 s");
                    continue;
                }
            };
            let mut client = DispatchClient::new(InterceptedService::new(channel, bearer.clone()));
            match client.ping(lastmile_proto::v1::PingRequest::default()).await {
                Ok(_) => return Ok(addr),
                Err(status) => {
                    last = format!("{addr}: {}", status.message());
                    // A standby names the leader: ask it next.
                    if let Some(leader) = status.metadata().get("lastmile-leader").and_then(|v| v.to_str().ok()) {
                        let scheme = if addr.starts_with("https://") { "https://" } else { "http://" };
                        queue.push_front(format!("{scheme}{leader}"));
                    }
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("no leader among {} within {} s (last: {last})", addrs.join(","), LEADER_WAIT.as_secs());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
