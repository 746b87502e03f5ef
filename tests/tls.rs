//! TLS on the listeners: a client that trusts the test CA completes the
//! handshake and is served; a plain-text client is not.

use std::path::PathBuf;

use lastmile_suite::v1 as pb;
use lastmile_suite::{TestServer, config_on_disk, paging_units};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

fn tls_section() -> String {
    format!(
        "\n[tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        fixture("server.pem").display(),
        fixture("server.key").display()
    )
}

#[tokio::test]
async fn grpc_over_tls_handshakes_and_plain_text_is_refused() {
    let server = TestServer::start_with(config_on_disk(&paging_units(), |c| c + &tls_section())).await;
    let ca = std::fs::read_to_string(fixture("ca.pem")).unwrap();
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS handshake with the test CA");
    let mut client = pb::dispatch_client::DispatchClient::new(channel);
    client.ping(pb::PingRequest {}).await.expect("served over TLS");
    let units = client.list_units(pb::ListUnitsRequest::default()).await.unwrap().into_inner();
    assert_eq!(units.units.len(), 6);

    // Plain HTTP/2 to the TLS port: no answer is served.
    let plain = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await;
    if let Ok(plain) = plain {
        let answer = pb::dispatch_client::DispatchClient::new(plain).ping(pb::PingRequest {}).await;
        assert!(answer.is_err(), "a plain-text call must not be served: {answer:?}");
    }

    // A client that does not trust the CA fails the handshake.
    let untrusted = Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(ClientTlsConfig::new().domain_name("localhost"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = untrusted {
        let answer = pb::dispatch_client::DispatchClient::new(channel).ping(pb::PingRequest {}).await;
        assert!(answer.is_err(), "an untrusting client must not be served: {answer:?}");
    }
}

#[test]
fn tls_needs_both_cert_and_key() {
    let text = lastmile_server::config::embedded_config_text().to_string()
        + &format!("\n[tls]\ncert_path = \"{}\"\n", fixture("server.pem").display());
    let err = lastmile_server::LastmileConfig::parse(&text, lastmile_server::config::ConfigSource::Embedded)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[tls]") && err.contains("missing field `key_path`"), "{err}");
}

#[tokio::test]
async fn the_http_gateway_over_tls_handshakes_with_the_test_ca() {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

    let server = TestServer::start_with(config_on_disk(&paging_units(), |c| c + &tls_section())).await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(server.http_addr).await.unwrap();
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake");
    let answer = lastmile_suite::http::http_over(tls, server.http_addr, "GET", "/v1/units", &[], None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["units"].as_array().unwrap().len(), 6);

    // Plain HTTP to the TLS port gets no HTTP answer.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut plain = tokio::net::TcpStream::connect(server.http_addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(lastmile_suite::PATIENCE, plain.read_to_end(&mut reply)).await;
    assert!(
        !reply.starts_with(b"HTTP/1.1 200"),
        "plain text must not be served: {:?}",
        String::from_utf8_lossy(&reply)
    );
}
