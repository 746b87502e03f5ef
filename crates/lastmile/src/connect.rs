//! How the binary's clients (report, watch, terminal, ...) reach a server:
//! address, bearer token and, for `https://` addresses, the CA to trust.

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

#[derive(Args, Clone)]
pub struct Target {
    /// Server address (https:// for a server with TLS).
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
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let mut endpoint =
            Endpoint::from_shared(self.addr.clone()).with_context(|| format!("bad address {}", self.addr))?;
        if self.addr.starts_with("https://") {
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

    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let channel = self.endpoint()?.connect().await.with_context(|| format!("cannot connect to {}", self.addr))?;
        Ok(InterceptedService::new(channel, self.bearer()?))
    }
}
