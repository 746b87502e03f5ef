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
    assert!(err.contains("tls.key_path"), "{err}");
}
