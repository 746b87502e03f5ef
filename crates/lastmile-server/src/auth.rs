//! Who may do what: bearer tokens from the configuration, each with a role
//! (and, for a terminal, the one unit it speaks for), and a per-token rate
//! limit.
//!
//! Every adapter turns the caller's `authorization` value into a [`Caller`]
//! ([`Auth::authenticate`]); every operation of the application layer then
//! starts with [`Auth::authorize`]: one table ([`Role::allows`]) says which
//! role may call which operation. Health and metrics stay open. Tokens are kept only as
//! SHA-256 digests: the configuration holds `token_sha256` (or names an
//! environment variable holding the token), so a leaked config file does not
//! leak a credential.
//!
//! Answers: no or malformed `authorization` -> UNAUTHENTICATED; a token not
//! configured -> UNAUTHENTICATED; a role not allowed, or a terminal acting
//! for another unit -> PERMISSION_DENIED; over the token's rate ->
//! RESOURCE_EXHAUSTED. Every refusal is counted (see [`AuthCounters`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::error::{AppError, ErrorCode};

/// What a token may do.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The district command centre: every Dispatch operation but UpsertUnit.
    Dispatcher,
    /// The upstream command system: report, get, list, watch; no overrides.
    Integration,
    /// One responder terminal: its own unit's UnitTerminal calls only.
    Terminal,
    /// Fleet and configuration: UpsertUnit, unit reads, webhook dead letters,
    /// the compliance reports and the ETA's status.
    Admin,
    /// The district's management: the compliance reports and the ETA's
    /// status, nothing else.
    Report,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Dispatcher => "dispatcher",
            Role::Integration => "integration",
            Role::Terminal => "terminal",
            Role::Admin => "admin",
            Role::Report => "report",
        }
    }

    /// The one table of who may call what.
    pub fn allows(self, op: Operation) -> bool {
        use Operation::*;
        match self {
            Role::Dispatcher => matches!(
                op,
                ReportIncident
                    | GetIncident
                    | ListIncidents
                    | CloseIncident
                    | PreviewDispatch
                    | ListUnits
                    | GetUnit
                    | SetUnitStatus
                    | Ping
                    | WatchEvents
                    | AssignUnit
                    | ReleaseUnit
                    | GetIncidentTimeline
                    | ConfirmArrival
                    | ReadComplianceReport
                    | GetEtaStatus
            ),
            Role::Integration => {
                matches!(op, ReportIncident | GetIncident | ListIncidents | WatchEvents | Ping | GetIncidentTimeline)
            }
            Role::Terminal => matches!(op, Subscribe | Acknowledge | ReportStatus | ReportPosition | Ping),
            Role::Admin => matches!(
                op,
                UpsertUnit
                    | GetUnit
                    | ListUnits
                    | Ping
                    | ReadDeadLetters
                    | ReplayDeadLetters
                    | ReadComplianceReport
                    | GetEtaStatus
            ),
            Role::Report => matches!(op, ReadComplianceReport | GetEtaStatus | Ping),
        }
    }
}

/// Every operation a caller can ask for, by its RPC name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    ReportIncident,
    GetIncident,
    ListIncidents,
    CloseIncident,
    PreviewDispatch,
    ListUnits,
    GetUnit,
    UpsertUnit,
    SetUnitStatus,
    Ping,
    WatchEvents,
    AssignUnit,
    ReleaseUnit,
    GetIncidentTimeline,
    ConfirmArrival,
    Subscribe,
    Acknowledge,
    ReportStatus,
    ReportPosition,
    ReadDeadLetters,
    ReplayDeadLetters,
    /// `GET /v1/reports/compliance` (the gateway's; not a Dispatch RPC).
    ReadComplianceReport,
    /// `GET /v1/eta`.
    GetEtaStatus,
}

impl Operation {
    pub const ALL: [Operation; 23] = [
        Operation::ReportIncident,
        Operation::GetIncident,
        Operation::ListIncidents,
        Operation::CloseIncident,
        Operation::PreviewDispatch,
        Operation::ListUnits,
        Operation::GetUnit,
        Operation::UpsertUnit,
        Operation::SetUnitStatus,
        Operation::Ping,
        Operation::WatchEvents,
        Operation::AssignUnit,
        Operation::ReleaseUnit,
        Operation::GetIncidentTimeline,
        Operation::ConfirmArrival,
        Operation::Subscribe,
        Operation::Acknowledge,
        Operation::ReportStatus,
        Operation::ReportPosition,
        Operation::ReadDeadLetters,
        Operation::ReplayDeadLetters,
        Operation::ReadComplianceReport,
        Operation::GetEtaStatus,
    ];
}

/// The `[auth]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Off: every call is allowed (the quick start, on loopback only; the
    /// server refuses to start with auth off on any other address).
    pub enabled: bool,
    /// A token's sustained calls per second, unless the token sets its own.
    pub default_rate_per_s: f64,
    /// Calls a token may make at once above its rate (bucket size).
    pub default_burst: u32,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { enabled: false, default_rate_per_s: 50.0, default_burst: 100, tokens: Vec::new() }
    }
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in logs and metrics (never the token itself).
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the bearer token (`lastmile token-hash` prints it).
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// Or: the environment variable holding the token itself.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Required for role "terminal" (the unit it speaks for); refused otherwise.
    #[serde(default)]
    pub unit_id: Option<String>,
    #[serde(default)]
    pub rate_per_s: Option<f64>,
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A configuration problem: the key and what is wrong.
#[derive(Debug)]
pub struct AuthConfigError {
    pub key: String,
    pub problem: String,
}

fn config_error(key: impl Into<String>, problem: impl Into<String>) -> AuthConfigError {
    AuthConfigError { key: key.into(), problem: problem.into() }
}

/// The hex SHA-256 of a token, as `token_sha256` wants it.
pub fn token_sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Who is calling.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// For a terminal: the unit it speaks for.
    pub unit_id: Option<String>,
    bucket: Mutex<Bucket>,
}

impl Principal {
    /// Spends one call of this token's rate (for each message of a stream;
    /// the stream's opening took one already). False when over the rate.
    pub fn take(&self) -> bool {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner()).take(Instant::now())
    }

    /// PERMISSION_DENIED unless this caller may act for `unit_id` (only
    /// terminals are bound to a unit; the role table has already said whether
    /// the operation is theirs).
    pub fn may_act_for(&self, unit_id: &str) -> Result<(), AppError> {
        match &self.unit_id {
            Some(own) if own != unit_id => Err(AppError::new(
                ErrorCode::PermissionDenied,
                format!("token '{}' speaks for unit {own}, not for unit {unit_id}", self.name),
            )),
            _ => Ok(()),
        }
    }
}

/// A token bucket: `rate_per_s` sustained, `burst` at once.
#[derive(Debug)]
struct Bucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate_per_s: f64, burst: u32) -> Self {
        Bucket { rate_per_s, burst: burst as f64, tokens: burst as f64, last: Instant::now() }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed_s = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed_s * self.rate_per_s).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Refusals, by reason (exported as metrics).
#[derive(Debug, Default)]
pub struct AuthCounters {
    pub unauthenticated: AtomicU64,
    pub permission_denied: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// The token table, built once at start.
pub struct Auth {
    enabled: bool,
    by_digest: HashMap<[u8; 32], Arc<Principal>>,
    pub counters: AuthCounters,
}

impl Auth {
    /// Auth off: every call allowed.
    pub fn disabled() -> Self {
        Auth { enabled: false, by_digest: HashMap::new(), counters: AuthCounters::default() }
    }

    /// Builds the table, reading `token_env` variables through `env` (so
    /// tests can inject them).
    pub fn from_config(config: &AuthConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self, AuthConfigError> {
        if !(config.default_rate_per_s.is_finite() && config.default_rate_per_s > 0.0) {
            return Err(config_error("auth.default_rate_per_s", "must be a number greater than 0"));
        }
        if config.default_burst == 0 {
            return Err(config_error("auth.default_burst", "must be greater than 0"));
        }
        if config.enabled && config.tokens.is_empty() {
            return Err(config_error("auth.tokens", "auth is enabled but no token is configured"));
        }
        let mut by_digest = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, token) in config.tokens.iter().enumerate() {
            let key = |field: &str| format!("auth.tokens[{i}].{field}");
            if token.name.trim().is_empty() {
                return Err(config_error(key("name"), "must not be empty"));
            }
            if !names.insert(token.name.clone()) {
                return Err(config_error(key("name"), format!("'{}' is used by two tokens", token.name)));
            }
            let digest = match (&token.token_sha256, &token.token_env) {
                (Some(hex), None) => parse_hex_digest(&hex.to_ascii_lowercase())
                    .ok_or_else(|| config_error(key("token_sha256"), "must be 64 hex digits (a SHA-256)"))?,
                (None, Some(var)) => {
                    let value = env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        config_error(key("token_env"), format!("environment variable {var} is not set"))
                    })?;
                    Sha256::digest(value.as_bytes()).into()
                }
                _ => return Err(config_error(key("token_sha256"), "set exactly one of token_sha256 and token_env")),
            };
            match (token.role, &token.unit_id) {
                (Role::Terminal, None) => {
                    return Err(config_error(key("unit_id"), "a terminal token must name its unit"));
                }
                (Role::Terminal, Some(unit)) if unit.is_empty() => {
                    return Err(config_error(key("unit_id"), "must not be empty"));
                }
                (role, Some(_)) if role != Role::Terminal => {
                    return Err(config_error(key("unit_id"), "only a terminal token is bound to a unit"));
                }
                _ => {}
            }
            let rate = token.rate_per_s.unwrap_or(config.default_rate_per_s);
            if !(rate.is_finite() && rate > 0.0) {
                return Err(config_error(key("rate_per_s"), "must be a number greater than 0"));
            }
            let burst = token.burst.unwrap_or(config.default_burst);
            if burst == 0 {
                return Err(config_error(key("burst"), "must be greater than 0"));
            }
            let principal = Arc::new(Principal {
                name: token.name.clone(),
                role: token.role,
                unit_id: token.unit_id.clone(),
                bucket: Mutex::new(Bucket::new(rate, burst)),
            });
            if by_digest.insert(digest, principal).is_some() {
                return Err(config_error(key("token_sha256"), "the same token is configured twice"));
            }
        }
        Ok(Auth { enabled: config.enabled, by_digest, counters: AuthCounters::default() })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Who presents this `authorization` value (`Bearer TOKEN`): a configured
    /// token's principal, or anyone when auth is off. UNAUTHENTICATED
    /// (counted) saying what is missing or wrong. Every adapter calls this
    /// once per call (gRPC metadata and HTTP headers are the same bytes);
    /// what the caller may do is [`Auth::authorize`]'s.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Caller, AppError> {
        if !self.enabled {
            return Ok(Caller::anyone());
        }
        self.principal(authorization).map(|p| Caller(Some(p.clone())))
    }

    /// The configured token an `authorization` value presents.
    fn principal(&self, authorization: Option<&[u8]>) -> Result<&Arc<Principal>, AppError> {
        let refuse = |message: &str| {
            self.counters.unauthenticated.fetch_add(1, Ordering::Relaxed);
            Err(AppError::new(ErrorCode::Unauthenticated, message))
        };
        let Some(value) = authorization else {
            return refuse("missing authorization: send 'authorization: Bearer <token>'");
        };
        // The scheme is case-insensitive (RFC 7235); the token is not.
        let token = match std::str::from_utf8(value).ok().and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        }) {
            Some(token) if !token.trim().is_empty() => token.trim(),
            _ => return refuse("malformed authorization: expected 'Bearer <token>'"),
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        match self.by_digest.get(&digest) {
            Some(principal) => Ok(principal),
            None => refuse("unknown bearer token"),
        }
    }

    /// May `caller` call `op` now: its role allows it (the table is
    /// [`Role::allows`]) and it is within its token's rate (one call spent).
    /// Auth off: always.
    pub fn authorize(&self, caller: &Caller, op: Operation) -> Result<(), AppError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(principal) = &caller.0 else {
            self.counters.unauthenticated.fetch_add(1, Ordering::Relaxed);
            return Err(AppError::new(ErrorCode::Unauthenticated, "no bearer token"));
        };
        if !principal.role.allows(op) {
            self.counters.permission_denied.fetch_add(1, Ordering::Relaxed);
            return Err(AppError::new(
                ErrorCode::PermissionDenied,
                format!("token '{}' (role {}) may not call {op:?}", principal.name, principal.role.name()),
            ));
        }
        if !principal.take() {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err(AppError::exhausted(format!("rate limit of token '{}' exceeded: retry later", principal.name))
                .with_retry_after_s(1));
        }
        Ok(())
    }

    /// PERMISSION_DENIED (counted) when `caller` is a terminal token bound to
    /// another unit than `unit_id`. Other callers: fine (the role table has
    /// already said whether the operation is theirs).
    pub fn acting_for(&self, caller: &Caller, unit_id: &str) -> Result<(), AppError> {
        match &caller.0 {
            Some(principal) => principal.may_act_for(unit_id).inspect_err(|_| {
                self.counters.permission_denied.fetch_add(1, Ordering::Relaxed);
            }),
            None => Ok(()),
        }
    }

    /// One more message of a stream opened by `caller`: RESOURCE_EXHAUSTED
    /// (counted) when over the token's rate. Auth off: always fine.
    pub fn take_message(&self, caller: &Caller) -> Result<(), AppError> {
        match &caller.0 {
            Some(p) if !p.take() => {
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                Err(AppError::exhausted(format!(
                    "rate limit of token '{}' exceeded within the stream: retry later",
                    p.name
                ))
                .with_retry_after_s(1))
            }
            _ => Ok(()),
        }
    }
}

/// Who is calling, as the application sees it: the principal of a
/// configured token, or anyone (auth off). Made only by
/// [`Auth::authenticate`], so holding one means the token was checked.
#[derive(Clone, Debug)]
pub struct Caller(Option<Arc<Principal>>);

impl Caller {
    /// Auth off: every call is allowed.
    pub fn anyone() -> Self {
        Caller(None)
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_deref()
    }

    /// The role's name, or `anyone` (auth off).
    pub fn role_name(&self) -> &'static str {
        self.0.as_ref().map(|p| p.role.name()).unwrap_or("anyone")
    }

    /// For logs: the token's name, or `anyone`.
    pub fn name(&self) -> &str {
        self.0.as_ref().map(|p| p.name.as_str()).unwrap_or("anyone")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(tokens: Vec<TokenConfig>) -> AuthConfig {
        AuthConfig { enabled: true, default_rate_per_s: 1.0, default_burst: 2, tokens }
    }

    fn token(name: &str, role: Role, secret: &str, unit: Option<&str>) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            role,
            token_sha256: Some(token_sha256_hex(secret)),
            token_env: None,
            unit_id: unit.map(String::from),
            rate_per_s: None,
            burst: None,
        }
    }

    fn bearer(secret: &str) -> Vec<u8> {
        format!("Bearer {secret}").into_bytes()
    }

    #[tokio::test(start_paused = true)]
    async fn roles_units_and_rates_are_enforced() {
        let auth = Auth::from_config(
            &config(vec![
                token("desk", Role::Dispatcher, "s-desk", None),
                token("t1", Role::Terminal, "s-t1", Some("u1")),
            ]),
            |_| None,
        )
        .unwrap();
        let check =
            |header: Option<&[u8]>, op| auth.authenticate(header).and_then(|c| auth.authorize(&c, op).map(|()| c));
        for header in [None, Some(&b"Basic x"[..]), Some(b"Bearer"), Some(&bearer("nope"))] {
            assert_eq!(check(header, Operation::Ping).unwrap_err().code, ErrorCode::Unauthenticated);
        }
        let desk = check(Some(b"bearer s-desk"), Operation::CloseIncident).unwrap();
        assert_eq!(desk.name(), "desk");
        let err = check(Some(&bearer("s-desk")), Operation::UpsertUnit).unwrap_err();
        assert_eq!(err.code, ErrorCode::PermissionDenied);
        // Burst 2 (one spent above), rate 1/s: one more now, then refused, then one a second later.
        check(Some(&bearer("s-desk")), Operation::Ping).unwrap();
        let err = check(Some(&bearer("s-desk")), Operation::Ping).unwrap_err();
        assert_eq!((err.code, err.retry_after_s), (ErrorCode::ResourceExhausted, Some(1)));
        tokio::time::advance(Duration::from_millis(1001)).await;
        check(Some(&bearer("s-desk")), Operation::Ping).unwrap();
        let t1 = check(Some(&bearer("s-t1")), Operation::Acknowledge).unwrap();
        assert!(auth.acting_for(&t1, "u1").is_ok());
        assert_eq!(auth.acting_for(&t1, "u2").unwrap_err().code, ErrorCode::PermissionDenied);
        assert!(auth.acting_for(&desk, "u2").is_ok());
        assert_eq!(auth.counters.unauthenticated.load(Ordering::Relaxed), 4);
        assert_eq!(auth.counters.permission_denied.load(Ordering::Relaxed), 2);
        assert_eq!(auth.counters.rate_limited.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn bad_token_configs_name_the_key() {
        let err = |tokens: Vec<TokenConfig>| Auth::from_config(&config(tokens), |_| None).err().unwrap().key;
        assert_eq!(err(vec![]), "auth.tokens");
        assert_eq!(err(vec![token("t", Role::Terminal, "x", None)]), "auth.tokens[0].unit_id");
        assert_eq!(err(vec![token("d", Role::Dispatcher, "x", Some("u1"))]), "auth.tokens[0].unit_id");
        let mut bad_hex = token("d", Role::Dispatcher, "x", None);
        bad_hex.token_sha256 = Some("abc".into());
        assert_eq!(err(vec![bad_hex]), "auth.tokens[0].token_sha256");
        assert_eq!(
            err(vec![token("a", Role::Admin, "x", None), token("a", Role::Admin, "y", None)]),
            "auth.tokens[1].name"
        );
        assert_eq!(
            err(vec![token("a", Role::Admin, "x", None), token("b", Role::Admin, "x", None)]),
            "auth.tokens[1].token_sha256"
        );
        let mut from_env = token("e", Role::Integration, "x", None);
        from_env.token_sha256 = None;
        from_env.token_env = Some("LASTMILE_TEST_TOKEN".into());
        assert_eq!(err(vec![from_env.clone()]), "auth.tokens[0].token_env");
        let auth =
            Auth::from_config(&config(vec![from_env]), |v| (v == "LASTMILE_TEST_TOKEN").then(|| "tok".into())).unwrap();
        let caller = auth.authenticate(Some(&bearer("tok"))).unwrap();
        assert!(auth.authorize(&caller, Operation::ReportIncident).is_ok());
    }

    #[test]
    fn every_role_has_ping_and_no_role_has_everything() {
        for role in [Role::Dispatcher, Role::Integration, Role::Terminal, Role::Admin] {
            assert!(role.allows(Operation::Ping));
            assert!(Operation::ALL.iter().any(|op| !role.allows(*op)), "{role:?}");
        }
    }
}
