//! The `[webhooks]` section: where status changes are pushed, with which
//! secret, and the bounds of each endpoint's queue and retries. Unknown keys
//! are refused; [`WebhooksConfig::validate`] names the key of the first bad
//! value.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file name of the dead-letter log in the journal's data directory when
/// `webhooks.dead_letter_path` is not set.
pub const DEFAULT_DEAD_LETTER_FILE: &str = "webhook-dead-letters.jsonl";

/// The feed event type never sent to an endpoint whose `events` list is
/// empty: positions are many and only a map wants them.
pub const EXCLUDED_BY_DEFAULT: &str = "UNIT_POSITION";

/// Bounds on the configurable values, so a typo cannot ask for a queue of a
/// billion deliveries or a retry loop of a million attempts.
const MAX_QUEUE_CAPACITY: usize = 1_000_000;
const MAX_ATTEMPTS: u32 = 100;
const MAX_NAME_BYTES: usize = 64;

/// `[webhooks]`: optional; absent = no endpoints.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// The dead-letter log (JSON Lines), relative to the working directory.
    /// Absent: `webhook-dead-letters.jsonl` in the journal's `data_dir`;
    /// with the memory backend, dead letters are kept in memory only.
    #[serde(default)]
    pub dead_letter_path: Option<PathBuf>,
    /// Dead letters kept (memory and file); one more drops the oldest and
    /// counts it in `dead_letters_dropped`.
    #[serde(default = "default_max_dead_letters_kept")]
    pub max_dead_letters_kept: usize,
    /// At shutdown, each endpoint goes on delivering what it has queued for at
    /// most this long; what is left is dead-lettered with reason `shutdown`.
    #[serde(default = "default_shutdown_flush_ms")]
    pub shutdown_flush_ms: u64,
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// `[[webhooks.endpoints]]`: one receiver. (Its `Debug` hides the secret
/// and the URL's credentials and query.)
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Unique; names the endpoint in stats, logs and dead letters
    /// (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// `http://host[:port]/path` or `https://...` (then `ca_path` is required).
    pub url: String,
    /// For https:// only: a PEM file of the CA certificate(s) to trust for
    /// this endpoint (this build has no system root store), relative to the
    /// working directory. Read at start.
    #[serde(default)]
    pub ca_path: Option<String>,
    /// The HMAC-SHA256 key, in the file. Exactly one of `secret` and
    /// `secret_env`.
    #[serde(default)]
    pub secret: Option<String>,
    /// The name of an environment variable holding the HMAC-SHA256 key, read
    /// once at start (keeps the key out of the file).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Event type names to send (`INCIDENT_REPORTED`, `TIER_BREACHED`, ...:
    /// `EventType` of the proto without its `EVENT_TYPE_` prefix). Empty: all
    /// but `UNIT_POSITION`.
    #[serde(default)]
    pub events: Vec<String>,
    /// Deliveries waiting for this endpoint; one more is dead-lettered at once
    /// with reason `queue_full` (dispatch never waits for an endpoint).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// One attempt (connect, send, response head and up to 64 KiB of body).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per delivery (first + retries) before it is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Retry n waits a uniformly random time in
    /// [0, min(backoff_max_ms, backoff_initial_ms * 2^(n-1))] ("full jitter").
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("name", &self.name)
            .field("url", &redacted_url(&self.url))
            .field("ca_path", &self.ca_path)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_env", &self.secret_env)
            .field("events", &self.events)
            .field("queue_capacity", &self.queue_capacity)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_initial_ms", &self.backoff_initial_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .finish()
    }
}

/// `url` without credentials (`user:pass@`) or query (`?token=...`): what
/// may go to logs.
pub fn redacted_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

#[test]
fn urls_in_logs_carry_no_credentials() {
    assert_eq!(redacted_url("https://u:p@h.example:8443/a/b?token=x#f"), "https://h.example:8443/a/b");
    assert_eq!(redacted_url("http://h/hook"), "http://h/hook");
}

fn default_max_dead_letters_kept() -> usize {
    10_000
}
fn default_shutdown_flush_ms() -> u64 {
    2_000
}
fn default_queue_capacity() -> usize {
    1024
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_max_attempts() -> u32 {
    5
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    60_000
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            dead_letter_path: None,
            max_dead_letters_kept: default_max_dead_letters_kept(),
            shutdown_flush_ms: default_shutdown_flush_ms(),
            endpoints: Vec::new(),
        }
    }
}

impl EndpointConfig {
    /// An endpoint with the default bounds (for tests and examples).
    pub fn new(name: &str, url: &str, secret: &str) -> Self {
        EndpointConfig {
            name: name.to_string(),
            url: url.to_string(),
            ca_path: None,
            secret: Some(secret.to_string()),
            secret_env: None,
            events: Vec::new(),
            queue_capacity: default_queue_capacity(),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_max_attempts(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
        }
    }

    /// Whether an event of this type goes to this endpoint.
    pub fn wants(&self, event_type: &str) -> bool {
        if self.events.is_empty() {
            event_type != EXCLUDED_BY_DEFAULT
        } else {
            self.events.iter().any(|e| e == event_type)
        }
    }
}

/// A bad value: the key (`webhooks.endpoints[0].url`) and what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct WebhookConfigError {
    pub key: String,
    pub problem: String,
}

/// Reads an environment variable: the process environment in production, a
/// map in tests.
pub type EnvReader<'a> = &'a dyn Fn(&str) -> Option<String>;

/// An owned [`EnvReader`].
pub type BoxedEnvReader = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Whether `name` is a feed event type (without the `EVENT_TYPE_` prefix).
pub fn is_event_type(name: &str) -> bool {
    name != "UNSPECIFIED" && lastmile_proto::v1::EventType::from_str_name(&format!("EVENT_TYPE_{name}")).is_some()
}

impl WebhooksConfig {
    /// Checks every value; `secret_env` variables must be set (read through
    /// `env`). Errors name the key.
    pub fn validate(&self, env: EnvReader<'_>) -> Result<(), WebhookConfigError> {
        let invalid = |key: String, problem: &str| Err(WebhookConfigError { key, problem: problem.to_string() });
        if self.max_dead_letters_kept == 0 {
            return invalid("webhooks.max_dead_letters_kept".into(), "must be greater than 0");
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let key = |field: &str| format!("webhooks.endpoints[{i}].{field}");
            if e.name.is_empty() || e.name.len() > MAX_NAME_BYTES {
                return invalid(key("name"), "must be 1 to 64 bytes");
            }
            if !e.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                return invalid(key("name"), "may hold only letters, digits, '-', '_' and '.'");
            }
            if self.endpoints[..i].iter().any(|other| other.name == e.name) {
                return invalid(key("name"), "is used by another endpoint");
            }
            match parse_http_url(&e.url) {
                Err(problem) => return invalid(key("url"), &problem),
                Ok(uri) if uri.scheme_str() == Some("https") && e.ca_path.is_none() => {
                    return invalid(key("ca_path"), "is required for an https:// url (no system root store)");
                }
                Ok(uri) if uri.scheme_str() == Some("http") && e.ca_path.is_some() => {
                    return invalid(key("ca_path"), "is only for https:// urls");
                }
                Ok(_) => {}
            }
            match (&e.secret, &e.secret_env) {
                (Some(_), Some(_)) | (None, None) => {
                    return invalid(key("secret"), "give exactly one of secret and secret_env");
                }
                (Some(s), None) if s.is_empty() => return invalid(key("secret"), "must not be empty"),
                (None, Some(var)) if env(var).is_none_or(|v| v.is_empty()) => {
                    return invalid(key("secret_env"), &format!("environment variable {var} is not set or empty"));
                }
                _ => {}
            }
            if let Some(bad) = e.events.iter().find(|name| !is_event_type(name)) {
                return invalid(
                    key("events"),
                    &format!("{bad:?} is not an event type (INCIDENT_REPORTED, TIER_BREACHED, ...)"),
                );
            }
            if e.queue_capacity == 0 || e.queue_capacity > MAX_QUEUE_CAPACITY {
                return invalid(key("queue_capacity"), "must be 1 to 1000000");
            }
            if e.timeout_ms == 0 {
                return invalid(key("timeout_ms"), "must be greater than 0");
            }
            if e.max_attempts == 0 || e.max_attempts > MAX_ATTEMPTS {
                return invalid(key("max_attempts"), "must be 1 to 100");
            }
            if e.backoff_initial_ms == 0 {
                return invalid(key("backoff_initial_ms"), "must be greater than 0");
            }
            if e.backoff_max_ms < e.backoff_initial_ms {
                return invalid(key("backoff_max_ms"), "must not be less than backoff_initial_ms");
            }
        }
        Ok(())
    }

    /// Where dead letters are written, given `journal.data_dir` (empty = in
    /// memory): `dead_letter_path` if set, else the default file in the data
    /// directory, else none (kept in memory only).
    pub fn dead_letter_file(&self, journal_data_dir: Option<&Path>) -> Option<PathBuf> {
        match &self.dead_letter_path {
            Some(path) => Some(path.clone()),
            None => journal_data_dir.map(|dir| dir.join(DEFAULT_DEAD_LETTER_FILE)),
        }
    }
}

/// An `http://` or `https://` URL with a host; anything else is refused
/// with the reason.
pub(crate) fn parse_http_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must start with http:// or https://".into());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(uri)
}
