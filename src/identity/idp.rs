//! The identity provider's admin API: after Warden links a user, it tells
//! the provider the canonical id, which then rides in the provider's tokens
//! as `external_id` (Clerk: `PATCH /v1/users/{id}` on the Backend API).
//!
//! Called only after the linking transaction committed, in the background,
//! retried with backoff; setting the same value twice is harmless, so
//! retries are safe. A failure is logged and counted, never fatal: the
//! database mapping stays the source of truth.

use std::time::Duration;

/// Where the admin API is and how to authenticate.
#[derive(Clone)]
pub struct IdpAdminSettings {
    /// Base URL, e.g. `https://api.clerk.com`.
    pub base_url: String,
    /// Secret key (sent as a bearer token; never logged).
    pub secret: String,
}

impl std::fmt::Debug for IdpAdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpAdminSettings")
            .field("base_url", &self.base_url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Attempts per update.
const ATTEMPTS: u32 = 4;

/// The admin API client.
pub struct IdpAdmin {
    settings: IdpAdminSettings,
    client: reqwest::Client,
}

impl IdpAdmin {
    /// A client for `settings`.
    pub fn new(settings: IdpAdminSettings) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        IdpAdmin { settings, client }
    }

    async fn patch_once(&self, subject: &str, user_id: &str) -> Result<(), String> {
        let url = format!(
            "{}/v1/users/{}",
            self.settings.base_url.trim_end_matches('/'),
            urlencode(subject)
        );
        let response = self
            .client
            .patch(&url)
            .bearer_auth(&self.settings.secret)
            .json(&serde_json::json!({ "external_id": user_id }))
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("status {}", response.status()))
        }
    }

    /// Sets `external_id` = `user_id` on the provider's user `subject`,
    /// retrying with backoff. Runs in the background.
    pub fn set_external_id(self: &std::sync::Arc<Self>, subject: String, user_id: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(250);
            for attempt in 1..=ATTEMPTS {
                match this.patch_once(&subject, &user_id).await {
                    Ok(()) => {
                        metrics::counter!("warden_idp_updates_total", "result" => "ok")
                            .increment(1);
                        tracing::info!(user = %user_id, "external_id set at the identity provider");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(user = %user_id, attempt, error = %e, "cannot set external_id at the identity provider");
                    }
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            metrics::counter!("warden_idp_updates_total", "result" => "failed").increment(1);
        });
    }
}

/// Percent-encodes a path segment.
fn urlencode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
