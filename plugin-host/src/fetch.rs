//! Outbound HTTPS for plugins (`paca.fetch`) and for the marketplace, with
//! SSRF protection:
//! - HTTPS only; no proxies; no redirects (a 3xx goes back to the caller);
//! - the host must be in the plugin's `allowedOutboundDomains` (exact, or
//!   `*`);
//! - every address the name resolves to is checked *in the resolver the
//!   connection uses*, so the address connected to is the address checked
//!   (no DNS-rebinding window): loopback, private, link-local, CGNAT,
//!   multicast, unspecified and IPv4-mapped forms of those are refused;
//!   IP-literal URLs are checked the same way;
//! - bounded response size and time.
//!
//! Tests may allow loopback (and add a test CA) only through
//! [`FetchPolicy::allow_loopback_for_tests`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Default)]
pub struct FetchPolicy {
    /// Test-only: permit 127.0.0.0/8 and ::1 (a loopback TLS stand-in).
    pub allow_loopback_for_tests: bool,
    /// Test-only: an extra trusted root certificate (PEM).
    pub extra_root_pem: Option<Vec<u8>>,
    pub max_response_bytes: usize,
    pub timeout: Duration,
}

impl FetchPolicy {
    pub fn standard() -> Self {
        Self {
            allow_loopback_for_tests: false,
            extra_root_pem: None,
            max_response_bytes: 50 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Whether an address may be connected to.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                return allow_loopback;
            }
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                return allow_loopback;
            }
            if let Some(v4) = v6.to_ipv4_mapped() {
                return address_allowed(IpAddr::V4(v4), allow_loopback);
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

struct SafeResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for SafeResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| address_allowed(a.ip(), allow_loopback))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

pub struct Fetcher {
    client: reqwest::Client,
    policy: FetchPolicy,
}

#[derive(Deserialize)]
struct PluginRequest {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Result<Arc<Self>, String> {
        if policy.allow_loopback_for_tests {
            tracing::warn!("TEST-ONLY setting active: plugin fetch may reach loopback addresses");
        }
        // reqwest is built without a crypto provider (one process-wide
        // choice, ring); the server installs it at start, but the host can
        // be embedded (tests, bench) without the server.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(SafeResolver {
                allow_loopback: policy.allow_loopback_for_tests,
            }))
            .connect_timeout(Duration::from_secs(10))
            .user_agent("paca-rs-plugin-host");
        if let Some(pem) = &policy.extra_root_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| format!("test CA: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Arc::new(Self { client, policy }))
    }

    /// Checks scheme, host allowlist and IP literals before any I/O.
    fn check_url(
        &self,
        url: &str,
        allowed_hosts: Option<&[String]>,
    ) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid url: {e}"))?;
        if parsed.scheme() != "https" {
            return Err("only https URLs are allowed".into());
        }
        let host = parsed
            .host_str()
            .ok_or("url has no host")?
            .to_ascii_lowercase();
        if let Some(allowed) = allowed_hosts
            && !allowed
                .iter()
                .any(|h| h == "*" || h.eq_ignore_ascii_case(&host))
        {
            return Err(format!("host {host} is not in allowedOutboundDomains"));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>()
            && !address_allowed(ip, self.policy.allow_loopback_for_tests)
        {
            return Err(format!("address {ip} is not allowed"));
        }
        Ok(parsed)
    }

    /// `paca.fetch`: the request JSON in, `{status, body, headers}` or
    /// `{status: 0, error}` out.
    pub async fn plugin_fetch(
        &self,
        request: &[u8],
        allowed_hosts: &[String],
        left: Duration,
    ) -> Value {
        match self.plugin_fetch_inner(request, allowed_hosts, left).await {
            Ok(v) => v,
            Err(e) => json!({"status": 0, "error": e}),
        }
    }

    async fn plugin_fetch_inner(
        &self,
        request: &[u8],
        allowed_hosts: &[String],
        left: Duration,
    ) -> Result<Value, String> {
        let req: PluginRequest =
            serde_json::from_slice(request).map_err(|e| format!("invalid fetch request: {e}"))?;
        let url = self.check_url(&req.url, Some(allowed_hosts))?;
        let method = reqwest::Method::from_bytes(
            req.method
                .as_deref()
                .unwrap_or("GET")
                .to_ascii_uppercase()
                .as_bytes(),
        )
        .map_err(|_| "invalid method".to_owned())?;
        let mut builder = self
            .client
            .request(method, url)
            .timeout(self.policy.timeout.min(left));
        for (name, value) in &req.headers {
            if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            builder = builder.header(name, value);
        }
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let (status, headers, body) = self.send(builder).await?;
        Ok(json!({
            "status": status,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))
    }

    async fn send(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<(u16, BTreeMap<String, String>, Vec<u8>), String> {
        let mut response = builder.send().await.map_err(describe)?;
        let status = response.status().as_u16();
        let mut headers = BTreeMap::new();
        for (name, value) in response.headers() {
            if let Ok(v) = value.to_str() {
                headers
                    .entry(name.as_str().to_owned())
                    .or_insert_with(|| v.to_owned());
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > self.policy.max_response_bytes {
                return Err(format!(
                    "response exceeds {} bytes",
                    self.policy.max_response_bytes
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    /// A GET for the marketplace (catalog and artifacts): same address
    /// rules, any host, bounded by `max_bytes`.
    pub async fn download(
        &self,
        url: &str,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let url = self.check_url(url, None)?;
        let mut response = self
            .client
            .get(url.clone())
            .timeout(timeout)
            .send()
            .await
            .map_err(describe)?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > max_bytes {
                return Err(format!("{url} exceeds {max_bytes} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn describe(error: reqwest::Error) -> String {
    use std::error::Error;
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::",
            "224.0.0.1",
        ] {
            assert!(
                !address_allowed(bad.parse().unwrap(), false),
                "{bad} allowed"
            );
        }
        for good in ["93.184.216.34", "2606:4700::1111", "1.1.1.1"] {
            assert!(
                address_allowed(good.parse().unwrap(), false),
                "{good} refused"
            );
        }
        assert!(address_allowed("127.0.0.1".parse().unwrap(), true));
        assert!(!address_allowed("10.0.0.1".parse().unwrap(), true));
    }

    #[tokio::test]
    async fn urls_are_checked_before_any_io() {
        let fetcher = Fetcher::new(FetchPolicy::standard()).unwrap();
        let allowed = vec!["api.example.com".to_owned()];
        for (url, why) in [
            ("http://api.example.com/x", "https"),
            ("https://evil.example.com/x", "allowedOutboundDomains"),
            ("https://127.0.0.1/x", "allowedOutboundDomains"),
        ] {
            let out = fetcher
                .plugin_fetch(
                    json!({"url": url}).to_string().as_bytes(),
                    &allowed,
                    Duration::from_secs(1),
                )
                .await;
            assert_eq!(out["status"], 0, "{url}");
            assert!(out["error"].as_str().unwrap().contains(why), "{url}: {out}");
        }
        let star = vec!["*".to_owned()];
        let out = fetcher
            .plugin_fetch(
                json!({"url": "https://127.0.0.1/x"}).to_string().as_bytes(),
                &star,
                Duration::from_secs(1),
            )
            .await;
        assert!(
            out["error"].as_str().unwrap().contains("not allowed"),
            "{out}"
        );
        // A name resolving to loopback is refused by the resolver.
        let out = fetcher
            .plugin_fetch(
                json!({"url": "https://localhost/x"}).to_string().as_bytes(),
                &star,
                Duration::from_secs(2),
            )
            .await;
        assert!(
            out["error"].as_str().unwrap().contains("no public address"),
            "{out}"
        );
    }
}
