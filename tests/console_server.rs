//! The console's server side, over real HTTP: its page and files carry a
//! policy that keeps the browser on this listener; a dispatcher signs in
//! once and the session cookie authenticates the API and the live feed;
//! cookie writes need the console's header; writes from another origin are
//! refused; the map data and a tier's candidates are served.

use lastmile_server::auth::token_sha256_hex;
use lastmile_suite::http::{HttpResponse, Sse, get, http};
use lastmile_suite::{TestServer, config_on_disk, paging_units};
use serde_json::{Value, json};

const DESK: &str = "console-desk-secret";

fn with_auth(text: String) -> String {
    format!(
        "{text}\n[auth]\nenabled = true\ndefault_rate_per_s = 10000.0\ndefault_burst = 10000\n\
         [[auth.tokens]]\nname = \"desk\"\nrole = \"dispatcher\"\ntoken_sha256 = \"{}\"\n",
        token_sha256_hex(DESK)
    )
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> HttpResponse {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if bytes.is_some() {
        all.push(("content-type", "application/json"));
    }
    http(server.http_addr, method, path, &all, bytes.as_deref()).await
}

fn report() -> Value {
    json!({"external_id": "console-1", "location": {"lat": 28.58, "lng": 121.37}, "kind": "FIRE", "severity": 1})
}

#[tokio::test]
async fn a_signed_in_session_authenticates_the_api_and_the_feed_and_writes_need_the_console_header() {
    let server = TestServer::start_with(config_on_disk(&paging_units(), with_auth)).await;
    let session = get(server.http_addr, "/console/session").await.json();
    assert_eq!((session["auth"].clone(), session["signed_in"].clone()), (json!(true), json!(false)));
    assert_eq!(session["time_zone"], "Asia/Shanghai");
    assert_eq!(get(server.http_addr, "/v1/incidents").await.status, 401, "no credentials");

    let wrong = send(&server, "POST", "/console/session", &[], Some(json!({"token": "nope"}))).await;
    assert_eq!(wrong.status, 401);
    let signed_in = send(&server, "POST", "/console/session", &[], Some(json!({"token": DESK}))).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    let cookie_header = signed_in.header("set-cookie").unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie_header.contains(attribute), "{cookie_header}");
    }
    let cookie = cookie_header.split(';').next().unwrap().to_string();
    let with_cookie = [("cookie", cookie.as_str())];

    let session = send(&server, "GET", "/console/session", &with_cookie, None).await.json();
    assert_eq!((session["name"].clone(), session["role"].clone()), (json!("desk"), json!("dispatcher")));
    assert_eq!(send(&server, "GET", "/v1/incidents", &with_cookie, None).await.status, 200);
    let no_header = send(&server, "POST", "/v1/incidents", &with_cookie, Some(report())).await;
    assert_eq!(no_header.status, 403, "a cookie write without the console's header");
    assert!(no_header.json()["error"]["message"].as_str().unwrap().contains("X-Lastmile-Console"));
    let console = [("cookie", cookie.as_str()), ("x-lastmile-console", "1")];
    let reported = send(&server, "POST", "/v1/incidents", &console, Some(report())).await;
    assert_eq!(reported.status, 201, "{}", reported.text());

    // Another site's page making the browser post here is refused, whatever it carries.
    let foreign = [("cookie", cookie.as_str()), ("x-lastmile-console", "1"), ("origin", "http://evil.example")];
    let close = send(&server, "POST", "/v1/incidents/inc-000001/close", &foreign, None).await;
    assert_eq!(close.status, 403, "{}", close.text());
    let own_origin = format!("http://{}", server.http_addr);
    let same = [("cookie", cookie.as_str()), ("x-lastmile-console", "1"), ("origin", own_origin.as_str())];
    let candidates = send(&server, "GET", "/v1/incidents/inc-000001/candidates?tier=TIER_3&limit=2", &same, None).await;
    assert_eq!(candidates.status, 200, "{}", candidates.text());
    let found = candidates.json()["candidates"].as_array().unwrap().clone();
    assert!(!found.is_empty() && found.len() <= 2, "{found:?}");
    assert!(found.windows(2).all(|w| w[0]["eta_s"].as_u64() <= w[1]["eta_s"].as_u64()), "{found:?}");

    // The live feed, authenticated by the cookie alone (what EventSource sends).
    let mut feed = Sse::open(server.http_addr, "/v1/events?after_seq=1", &with_cookie).await;
    assert!(feed.next().await.is_some());

    let map = send(&server, "GET", "/console/map", &with_cookie, None).await;
    assert_eq!(map.status, 200);
    let map = map.json();
    assert_eq!(map["grid"]["features"].as_array().unwrap().len(), 636);
    assert!(map["towns"].as_array().unwrap().len() >= 10);
    assert_eq!(get(server.http_addr, "/console/map").await.status, 401, "the map is not for strangers");

    // Signed out: the cookie no longer authenticates.
    assert_eq!(send(&server, "DELETE", "/console/session", &console, None).await.status, 200);
    assert_eq!(send(&server, "GET", "/v1/incidents", &with_cookie, None).await.status, 401);
    server.shutdown().await;
}

#[tokio::test]
async fn the_page_and_its_files_keep_the_browser_on_this_listener() {
    let server = TestServer::start().await;
    let page = get(server.http_addr, "/").await;
    if lastmile_server::http::console::file("index.html").is_none() {
        assert_eq!(page.status, 404, "a build without console files says so");
        return;
    }
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    for (name, _) in lastmile_server::http::console::FILES {
        let served = get(server.http_addr, &format!("/{name}")).await;
        assert_eq!(served.status, 200, "{name}");
        assert_eq!(served.body, lastmile_server::http::console::file(name).unwrap(), "{name}");
    }
    // With auth off the console needs no sign-in.
    let session = get(server.http_addr, "/console/session").await.json();
    assert_eq!((session["signed_in"].clone(), session["role"].clone()), (json!(true), json!("anyone")));
    server.shutdown().await;
}
