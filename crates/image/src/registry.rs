//! Talking to one registry endpoint through `oci-client`: client set-up,
//! credentials, retries with back-off, and error messages a user can act on.

use crate::auth::{self, AuthError};
use crate::registries::Endpoint;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// A failed registry exchange, worded for the user.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    /// One line: what the registry or the network said.
    pub message: String,
    /// Worth trying again (network trouble, 5xx, 429).
    pub transient: bool,
}

impl RegistryError {
    /// The same error, said of one blob.
    pub fn about_blob(self, digest: &crate::Digest) -> Self {
        Self {
            message: format!("blob {digest}: {}", self.message),
            transient: self.transient,
        }
    }

    pub(crate) fn new(message: impl Into<String>, transient: bool) -> Self {
        Self {
            message: message.into(),
            transient,
        }
    }
}

/// Time limits and retry counts for registry requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    /// Bound on one whole small request (manifest, config, token).
    pub request_timeout: Duration,
    /// Tries per request, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub backoff: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            attempts: 4,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A client bound to one endpoint with its credentials.
pub struct Session {
    /// The oci-client client.
    pub client: Client,
    /// What to send.
    pub auth: RegistryAuth,
    /// The reference on this endpoint.
    pub reference: Reference,
    /// Time limits and retries.
    pub limits: Limits,
}

impl Session {
    /// Set up a session for `endpoint`, with credentials from `auth_files`.
    pub async fn open(
        endpoint: &Endpoint,
        auth_files: &[PathBuf],
        limits: &Limits,
    ) -> Result<Self, RegistryError> {
        let reference = endpoint.reference.clone();
        let registry = reference.resolve_registry().to_string();
        let protocol = if endpoint.insecure {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            platform_resolver: None,
            connect_timeout: Some(limits.connect_timeout),
            read_timeout: Some(limits.read_timeout),
            user_agent: concat!("podrun/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        });
        let creds = auth::lookup(auth_files, reference.registry(), reference.repository())
            .map_err(|e: AuthError| RegistryError::new(format!("credentials: {e}"), false))?;
        let auth = match creds {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        let session = Self {
            client,
            auth,
            reference,
            limits: limits.clone(),
        };
        if !matches!(session.auth, RegistryAuth::Anonymous) {
            // oci-client swallows a failed token request and goes on anonymously;
            // asking first turns wrong credentials into a clear error.
            session
                .retry(|| {
                    session
                        .client
                        .auth(&session.reference, &session.auth, RegistryOperation::Pull)
                })
                .await?;
        }
        Ok(session)
    }

    /// The host this session talks to.
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// Run `op` once, bounded by the request timeout.
    pub async fn once<T, F, Fut>(&self, op: F) -> Result<T, RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        match tokio::time::timeout(self.limits.request_timeout, op()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(describe(&e, self.registry())),
            Err(_) => Err(RegistryError::new(
                format!(
                    "no answer from {} within {:?}",
                    self.registry(),
                    self.limits.request_timeout
                ),
                true,
            )),
        }
    }

    /// Run `op` with the request timeout, retrying transient failures with back-off.
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let mut wait = self.limits.backoff;
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(self.limits.request_timeout, op()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => describe(&e, self.registry()),
                Err(_) => RegistryError::new(
                    format!(
                        "no answer from {} within {:?}",
                        self.registry(),
                        self.limits.request_timeout
                    ),
                    true,
                ),
            };
            if !result.transient || attempt >= self.limits.attempts {
                return Err(result);
            }
            tracing::debug!(attempt, "retrying after: {}", result.message);
            tokio::time::sleep(wait).await;
            wait *= 2;
            attempt += 1;
        }
    }
}

/// Turn an oci-client error into one line and a retry verdict.
pub fn describe(e: &OciDistributionError, registry: &str) -> RegistryError {
    use OciDistributionError as E;
    match e {
        E::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope.errors.iter().map(|e| format!("{:?}", e.code)).collect();
            let transient = codes.iter().any(|c| c.eq_ignore_ascii_case("toomanyrequests"));
            let messages: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| {
                    if e.message.is_empty() {
                        format!("{:?}", e.code).to_lowercase()
                    } else {
                        e.message.clone()
                    }
                })
                .collect();
            RegistryError::new(messages.join("; "), transient)
        }
        E::ServerError { code, message, .. } => {
            let first = message.lines().next().unwrap_or("").trim();
            let text = match *code {
                404 => "not found".to_string(),
                429 => "too many requests".to_string(),
                _ if first.is_empty() => format!("registry answered HTTP {code}"),
                _ => format!("registry answered HTTP {code}: {first}"),
            };
            RegistryError::new(text, *code >= 500 || *code == 429)
        }
        E::UnauthorizedError { .. } => RegistryError::new(
            format!("unauthorized: missing or wrong credentials for {registry} (podrun login {registry})"),
            false,
        ),
        E::AuthenticationFailure(reason) => RegistryError::new(
            format!("authentication to {registry} failed: {}", token_error(reason)),
            false,
        ),
        E::DigestError(oci_client::errors::DigestError::VerificationError { expected, actual }) => {
            RegistryError::new(format!("blob {expected}: digest mismatch (got {actual})"), false)
        }
        E::ImageManifestNotFoundError(_) => RegistryError::new("manifest unknown", false),
        E::RequestError(err) => describe_reqwest(err, registry),
        E::IoError(err) => RegistryError::new(chain(err), true),
        other => RegistryError::new(other.to_string(), false),
    }
}

fn describe_reqwest(err: &reqwest::Error, registry: &str) -> RegistryError {
    let cause = chain(err);
    if err.is_timeout() {
        RegistryError::new(format!("{registry}: timed out: {cause}"), true)
    } else if err.is_connect() {
        RegistryError::new(format!("cannot connect to {registry}: {cause}"), true)
    } else {
        RegistryError::new(format!("{registry}: {cause}"), true)
    }
}

/// What a token server's error body says: the messages of an OCI error
/// envelope, or its first line.
fn token_error(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(env) if !env.errors.is_empty() => env
            .errors
            .iter()
            .map(|e| {
                if e.message.is_empty() {
                    e.code.to_lowercase()
                } else {
                    e.message.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => body.lines().next().unwrap_or("").trim().to_string(),
    }
}

/// The deepest causes of an error, joined, without repeating reqwest's URL noise.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    // The last two causes say the most ("connection refused", "os error 111").
    let keep = parts.len().saturating_sub(2);
    parts[keep..].join(": ")
}

/// Check credentials the way `docker login` does: ask `/v2/` and, if the
/// registry challenges, answer the challenge (Basic, or a Bearer token request).
pub async fn check_login(
    registry: &str,
    insecure: bool,
    creds: &crate::auth::Credentials,
    limits: &Limits,
) -> Result<(), RegistryError> {
    let scheme = if insecure { "http" } else { "https" };
    let host = if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    };
    let http = reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.request_timeout)
        .build()
        .map_err(|e| RegistryError::new(chain(&e), false))?;
    let net = |e: reqwest::Error| describe_reqwest(&e, registry);
    let url = format!("{scheme}://{host}/v2/");
    let first = http.get(&url).send().await.map_err(net)?;
    if first.status().is_success() {
        return Ok(());
    }
    let challenge = first
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let answer = if let Some(params) = challenge.strip_prefix("Bearer ") {
        let realm = param(params, "realm").ok_or_else(|| {
            RegistryError::new(format!("{registry}: Bearer challenge without realm"), false)
        })?;
        let mut req = http.get(realm);
        if let Some(service) = param(params, "service") {
            req = req.query(&[("service", service)]);
        }
        req.basic_auth(&creds.username, Some(&creds.password))
            .send()
            .await
            .map_err(net)?
    } else {
        http.get(&url)
            .basic_auth(&creds.username, Some(&creds.password))
            .send()
            .await
            .map_err(net)?
    };
    match answer.status() {
        s if s.is_success() => Ok(()),
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
            Err(RegistryError::new(
                format!("login to {registry}: wrong user name or password"),
                false,
            ))
        }
        s => Err(RegistryError::new(
            format!("login to {registry}: registry answered HTTP {s}"),
            s.is_server_error(),
        )),
    }
}

/// One `key="value"` parameter of a WWW-Authenticate challenge.
fn param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    params.split(',').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })
}
