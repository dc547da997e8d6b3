//! Who may use the server. Three rules, after the OWASP CSRF and DNS-rebinding advice:
//! the `Host` a request names must be one the server answers to (an IP address,
//! `localhost`, or a configured name), so a page on a rebound domain reaches nothing; an
//! API request that a browser marks as coming from another site (`Sec-Fetch-Site`,
//! `Origin`, `Referer`) is refused; and every job belongs to the client that made it, named
//! by an unguessable token (a `SameSite=Strict` cookie that the page gets, or an
//! `X-Client-Token` header for scripts), so one visitor can neither list nor touch another's;
//! behind access tokens, the jobs are the access token's.
//! A server reachable beyond this machine also needs an access token (`--token-file`):
//! `Authorization: Bearer …` from scripts, or a cookie the page gets once its user has
//! typed the token.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::{ApiError, AppState};

/// The cookie that carries a browser's client token.
pub const COOKIE: &str = "neural_style_client";
/// The header that carries a script's client token.
pub const TOKEN_HEADER: &str = "x-client-token";
/// How long a browser keeps its token (and so its gallery): a year.
const COOKIE_MAX_AGE_S: u64 = 365 * 24 * 3600;
/// Longest text of a refused header echoed back in an error.
const ECHO_MAX: usize = 80;

/// The host names answered besides IP addresses and `localhost`.
#[derive(Debug, Clone, Default)]
pub struct HostRule {
    names: Vec<String>,
}

impl HostRule {
    /// Answers IP addresses, `localhost`, and `names` (case-insensitive, without port).
    pub fn new(names: &[String]) -> Self {
        Self {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a `Host` header value (`name[:port]`, `[v6]:port`) is answered.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        name == "localhost"
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok()
            || self.names.contains(&name)
    }
}

/// The name part of `name[:port]` or `[v6][:port]`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// A client's text (a header, a field name) for an error message: at most [`ECHO_MAX`]
/// characters.
pub(crate) fn echo(value: &str) -> String {
    if value.chars().count() > ECHO_MAX {
        format!("{}…", value.chars().take(ECHO_MAX).collect::<String>())
    } else {
        value.to_string()
    }
}

/// The `scheme://authority` of a URL, or `None`.
fn authority(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// Refuses a request whose `Host` is not answered and, for the API, one a browser sent
/// from another site. The page itself may be opened from anywhere (a link to it).
pub fn check(rule: &HostRule, headers: &HeaderMap, api: bool) -> Result<(), ApiError> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "the request has no (readable) Host header",
        )
    })?;
    if !rule.allows(host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "host `{}` is not served here (start the server with --allow-host {} if it is yours)",
                echo(host),
                echo(host_name(host))
            ),
        ));
    }
    if !api {
        return Ok(());
    }
    let foreign = |from: &str| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "a request from {} is refused: this server answers only its own page",
                echo(from)
            ),
        )
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return Err(foreign(&format!("a {site} page")));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("an unreadable origin");
        if !authority(origin).is_some_and(|a| a.eq_ignore_ascii_case(host)) {
            return Err(foreign(origin));
        }
    } else if let Some(referer) = text(header::REFERER)
        && !authority(referer).is_some_and(|a| a.eq_ignore_ascii_case(host))
    {
        return Err(foreign(referer));
    }
    Ok(())
}

/// The middleware applying [`check`] to every request and, when the server has access
/// tokens, requiring one for the API (but for `POST /api/access`, which takes it).
pub async fn guard(
    State(s): State<std::sync::Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let api = path.starts_with("/api/");
    if let Err(e) = check(&s.hosts, request.headers(), api) {
        return e.into_response();
    }
    if api && !s.access.is_open() && path != ACCESS_PATH {
        match s.access.name_of(request.headers()) {
            Some(name) => {
                request
                    .extensions_mut()
                    .insert(AccessName(name.to_string()));
            }
            None => {
                let mut response = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "this server needs an access token: send `Authorization: Bearer TOKEN`, or type it on the page",
                )
                .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"neural-style\""),
                );
                return response;
            }
        }
    }
    next.run(request).await
}

/// The cookie that carries a browser's access token (set by `POST /api/access`).
pub const ACCESS_COOKIE: &str = "neural_style_access";
/// Where the page sends the access token its user typed.
pub const ACCESS_PATH: &str = "/api/access";

/// The name of the access token a request came with (a request extension).
#[derive(Debug, Clone)]
pub struct AccessName(pub String);

/// The access tokens of a server (`--token-file`): none means that the API is open to
/// every client that passes [`check`] (a server on loopback).
#[derive(Debug, Clone, Default)]
pub struct AccessTokens {
    /// (name, token)
    tokens: Vec<(String, String)>,
}

impl AccessTokens {
    /// Reads `NAME TOKEN` lines (blank lines and `#` comments skipped); a token is 16 to
    /// 128 letters, digits, `-` or `_`. The error names the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens: Vec<(String, String)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!("line {}: expected `NAME TOKEN`", n + 1));
            };
            if !valid_token(token) {
                return Err(format!(
                    "line {}: the token of `{}` must be 16 to 128 letters, digits, - or _",
                    n + 1,
                    echo(name)
                ));
            }
            if tokens.iter().any(|(other, t)| other == name || t == token) {
                return Err(format!(
                    "line {}: `{}` or its token is given twice",
                    n + 1,
                    echo(name)
                ));
            }
            tokens.push((name.to_string(), token.to_string()));
        }
        if tokens.is_empty() {
            return Err("no token in it (lines of `NAME TOKEN`)".to_string());
        }
        Ok(Self { tokens })
    }

    /// Whether the API needs no access token.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The name of the token given with `Authorization: Bearer`, else in the cookie.
    pub fn name_of(&self, headers: &HeaderMap) -> Option<&str> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_credentials);
        let given = bearer.or_else(|| cookie_value(headers, ACCESS_COOKIE))?;
        self.name_of_token(given)
    }

    /// The name of `given`, compared with every token in time that does not depend on
    /// where they differ.
    pub fn name_of_token(&self, given: &str) -> Option<&str> {
        let mut found = None;
        for (name, token) in &self.tokens {
            if constant_time_eq(token.as_bytes(), given.as_bytes()) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Set-Cookie` value that keeps a browser's access token.
pub fn access_cookie(token: &str) -> HeaderValue {
    // A valid token is letters, digits, - and _: always a valid header value.
    HeaderValue::from_str(&format!(
        "{ACCESS_COOKIE}={token}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of the cookie `name`.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// Whether `token` can name a client: 16 to 128 letters, digits, `-` or `_`.
pub fn valid_token(token: &str) -> bool {
    (16..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The credentials of an `Authorization` value of the Bearer scheme, whose name is
/// case-insensitive (RFC 9110, section 11.1): `Bearer`, `bearer` and `BEARER` alike.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// The client token of a request: the `X-Client-Token` header, else the cookie.
pub fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(TOKEN_HEADER) {
        return value
            .to_str()
            .ok()
            .filter(|t| valid_token(t))
            .map(str::to_string);
    }
    cookie_value(headers, COOKIE)
        .filter(|t| valid_token(t))
        .map(str::to_string)
}

/// A new token: 128 random bits from the thread's cryptographic generator, as hex.
pub fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The `Set-Cookie` value that gives a browser its token.
pub fn cookie(token: &str) -> HeaderValue {
    // The token is hex: always a valid header value.
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The client a job request comes from (the owner of the jobs it may see). Behind access
/// tokens (`--token-file`) it is the access token's name, whatever client token comes
/// with it: the jobs are the token holder's, in every browser of theirs, and a client
/// token copied from someone else opens nothing of theirs. On an open server it is the
/// client token.
#[derive(Debug, Clone)]
pub struct Client(pub String);

impl Client {
    /// The owner name of the holder of the access token `name`. A client token has no
    /// `:`, so the two never meet.
    fn of_access(name: &str) -> Self {
        Client(format!("access:{name}"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        if let Some(AccessName(name)) = parts.extensions.get::<AccessName>() {
            return Ok(Client::of_access(name));
        }
        token_of(&parts.headers).map(Client).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "no client token: open the page first (it sets one), or send an X-Client-Token header of 16-128 letters, digits, - or _ that you keep secret",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn hosts_are_ip_addresses_localhost_or_configured_names() {
        let rule = HostRule::new(&["Studio.lan".to_string()]);
        for ok in [
            "127.0.0.1:8080",
            "[::1]:80",
            "localhost:3",
            "LOCALHOST",
            "studio.lan:80",
            "10.0.0.2",
        ] {
            assert!(rule.allows(ok), "{ok}");
        }
        for no in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "",
        ] {
            assert!(!rule.allows(no), "{no}");
        }
    }

    #[test]
    fn cross_site_api_requests_are_refused_and_the_page_is_not() {
        let rule = HostRule::default();
        let host = ("host", "127.0.0.1:8080");
        let refused = [
            headers(&[host, ("origin", "http://evil.example")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("sec-fetch-site", "cross-site")]),
            headers(&[host, ("sec-fetch-site", "same-site")]),
            headers(&[host, ("referer", "http://evil.example/page")]),
            headers(&[("host", "rebound.example:8080")]),
        ];
        for h in &refused {
            assert_eq!(
                check(&rule, h, true).unwrap_err().status(),
                StatusCode::FORBIDDEN,
                "{h:?}"
            );
        }
        let from_elsewhere = headers(&[host, ("referer", "http://evil.example/")]);
        assert!(check(&rule, &from_elsewhere, false).is_ok());
        for h in [
            headers(&[host]),
            headers(&[
                host,
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
            ]),
            headers(&[host, ("referer", "http://127.0.0.1:8080/")]),
        ] {
            assert!(check(&rule, &h, true).is_ok(), "{h:?}");
        }
    }

    #[test]
    fn access_tokens_are_named_lines_and_come_from_bearer_or_cookie() {
        let tokens = AccessTokens::parse(
            "# studio keys\nalice 0123456789abcdef0123\n\nbob   fedcba9876543210fedc\n",
        )
        .unwrap();
        let bearer = headers(&[("authorization", "Bearer fedcba9876543210fedc")]);
        assert_eq!(tokens.name_of(&bearer), Some("bob"));
        // The scheme's name is case-insensitive (RFC 9110); the token is not.
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let value = format!("{scheme} fedcba9876543210fedc");
            let given = headers(&[("authorization", &value)]);
            assert_eq!(tokens.name_of(&given), Some("bob"), "{scheme}");
        }
        let upper = headers(&[("authorization", "Bearer FEDCBA9876543210FEDC")]);
        assert_eq!(tokens.name_of(&upper), None);
        let basic = headers(&[("authorization", "Basic fedcba9876543210fedc")]);
        assert_eq!(tokens.name_of(&basic), None);
        let cookie = format!("{ACCESS_COOKIE}=0123456789abcdef0123");
        assert_eq!(
            tokens.name_of(&headers(&[("cookie", &cookie)])),
            Some("alice")
        );
        let wrong = headers(&[("authorization", "Bearer 0123456789abcdef0124")]);
        assert_eq!(tokens.name_of(&wrong), None);
        assert_eq!(tokens.name_of(&headers(&[])), None);
        assert!(AccessTokens::default().is_open());
        for (bad, says) in [
            ("alice short", "line 1: the token of `alice`"),
            ("alice", "line 1: expected `NAME TOKEN`"),
            ("# nothing\n", "no token"),
            (
                "a 0123456789abcdef0123\na 0123456789abcdef9999",
                "line 2: `a`",
            ),
        ] {
            let e = AccessTokens::parse(bad).unwrap_err();
            assert!(e.starts_with(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn tokens_come_from_the_header_or_the_cookie() {
        let t = new_token();
        assert_eq!(t.len(), 32);
        let cookie = format!("a=b; {COOKIE}={t}; c=d");
        assert_eq!(token_of(&headers(&[("cookie", &cookie)])), Some(t.clone()));
        assert_eq!(token_of(&headers(&[("x-client-token", &t)])), Some(t));
        assert_eq!(token_of(&headers(&[("x-client-token", "short")])), None);
        assert_eq!(
            token_of(&headers(&[("cookie", "neural_style_client=../../x")])),
            None
        );
    }
}
