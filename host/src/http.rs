//! The `http` sink: the WFM's upload API (docs/upload-api.md). One POST per outbox batch to
//! `<base_url>/external-systems/<endpoint>`, with `Authorization: Bearer <key>` and the
//! batch's `Idempotency-Key`; the response decides what becomes of the batch. TLS through
//! rustls.

use crate::{
    config::HttpUpload,
    secret::Secret,
    store::OutboxBatch,
    upload::{Delivery, Sink},
};
use std::time::Duration;

/// The most of a refusal's response body kept with a quarantined batch.
const MAX_RESPONSE_BYTES: usize = 4096;

pub struct HttpSink {
    client: reqwest::blocking::Client,
    base_url: String,
    api_key: Secret,
    concurrency: usize,
}

impl HttpSink {
    pub fn new(upload: &HttpUpload) -> anyhow::Result<HttpSink> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(upload.timeout_secs))
            .connect_timeout(Duration::from_secs(upload.timeout_secs.min(30)))
            .user_agent(concat!("acdlink/", env!("CARGO_PKG_VERSION")))
            // A redirect would turn the POST into a GET somewhere else: report it instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(HttpSink {
            client,
            base_url: upload.base_url.clone(),
            api_key: upload.api_key.clone(),
            concurrency: upload.concurrency as usize,
        })
    }
}

impl Sink for HttpSink {
    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn deliver(&self, batch: &OutboxBatch) -> Delivery {
        let url = format!("{}/external-systems/{}", self.base_url, batch.endpoint);
        let response = self
            .client
            .post(&url)
            .bearer_auth(self.api_key.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &batch.idempotency_key)
            .body(batch.body.clone())
            .send();
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                return Delivery::Retry {
                    error: format!("POST {url}: {error}"),
                    retry_after_secs: None,
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            return Delivery::Delivered;
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let retry_after_secs = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(retry_after_secs);
        let mut text = response.text().unwrap_or_default();
        if text.len() > MAX_RESPONSE_BYTES {
            let mut end = MAX_RESPONSE_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        let code = status.as_u16();
        match code {
            401 | 403 => Delivery::Stop {
                error: format!("POST {url}: {status}: {text}"),
            },
            // The endpoint is not there or moved: the configuration is wrong, not the batch.
            300..=399 | 404 | 405 => Delivery::Stop {
                error: format!(
                    "POST {url}: {status}: check upload.base_url{}",
                    match &location {
                        Some(location) => format!(" (redirected to {location})"),
                        None => String::new(),
                    }
                ),
            },
            408 | 429 | 500..=599 => Delivery::Retry {
                error: format!("POST {url}: {status}"),
                retry_after_secs,
            },
            _ => Delivery::Quarantine {
                status: Some(code),
                response: text,
            },
        }
    }
}

/// `Retry-After` as delay-seconds or as an HTTP date (RFC 9110 section 10.2.3); a date in
/// the past means now.
fn retry_after_secs(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let secs = at.duration_since(jiff::Timestamp::now()).as_secs();
    Some(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(super::retry_after_secs(" 120 "), Some(120));
        let in_a_minute = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(61);
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&in_a_minute)
            .unwrap();
        assert!(date.ends_with("GMT"), "{date}");
        let secs = super::retry_after_secs(&date).unwrap();
        assert!((55..=61).contains(&secs), "{date}: {secs}");
        assert_eq!(
            super::retry_after_secs("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0)
        );
        assert_eq!(super::retry_after_secs("soon"), None);
    }
}
