//! A strict reference receiver of the WFM upload API on loopback, for end-to-end tests. It
//! validates every body against the contract (docs/upload-api.md), requires the Bearer key
//! and an Idempotency-Key, applies a batch once per Idempotency-Key, records what it
//! applied, and can be told to fail.

use serde_json::Value;
use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

/// One scripted answer instead of the normal one.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status (and an optional `Retry-After` in seconds).
    Status(u16, Option<u64>),
    /// Answer normally after a pause.
    Slow(Duration),
    /// Close the connection without answering.
    Drop,
}

/// What the receiver has seen and applied.
#[derive(Debug, Default)]
pub struct Received {
    /// Applied items per endpoint, by natural key: how many times each was applied.
    pub applications: BTreeMap<String, BTreeMap<String, usize>>,
    /// The last applied item per endpoint and natural key.
    pub items: BTreeMap<String, BTreeMap<String, Value>>,
    /// Requests answered 2xx for an Idempotency-Key already applied.
    pub n_replays: usize,
    /// Requests refused as invalid, with the reason.
    pub invalid: Vec<String>,
    pub n_requests: usize,
}

struct Shared {
    received: Received,
    applied_keys: HashSet<String>,
    faults: VecDeque<Fault>,
    /// Bodies containing this text are refused with 400.
    refuse_containing: Option<String>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub const API_KEY: &str = "test-key-123";

impl Receiver {
    pub fn start() -> Receiver {
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind a loopback port"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let shared = Arc::new(Mutex::new(Shared {
            received: Received::default(),
            applied_keys: HashSet::new(),
            faults: VecDeque::new(),
            refuse_containing: None,
        }));
        let thread = {
            let server = Arc::clone(&server);
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    handle(request, &shared);
                }
            })
        };
        Receiver {
            base_url: format!("http://127.0.0.1:{port}"),
            shared,
            server,
            thread: Some(thread),
        }
    }

    /// The next requests get these answers, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.lock().unwrap().faults.extend(faults);
    }

    /// Refuse (400) every body that contains `text`.
    pub fn refuse_bodies_containing(&self, text: &str) {
        self.shared.lock().unwrap().refuse_containing = Some(text.to_string());
    }

    /// Takes every valid body again (the WFM's problem was fixed).
    pub fn stop_refusing(&self) {
        self.shared.lock().unwrap().refuse_containing = None;
    }

    /// Runs `look` on what was received so far.
    pub fn with<T>(&self, look: impl FnOnce(&Received) -> T) -> T {
        look(&self.shared.lock().unwrap().received)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn respond(request: tiny_http::Request, status: u16, body: &str, retry_after: Option<u64>) {
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Some(seconds) = retry_after {
        response.add_header(
            tiny_http::Header::from_bytes("Retry-After", seconds.to_string())
                .expect("a valid header"),
        );
    }
    let _ = request.respond(response);
}

fn handle(mut request: tiny_http::Request, shared: &Mutex<Shared>) {
    let fault = {
        let mut shared = shared.lock().unwrap();
        shared.received.n_requests += 1;
        shared.faults.pop_front()
    };
    match fault {
        Some(Fault::Status(status, retry_after)) => {
            return respond(
                request,
                status,
                "{\"error\":\"scripted failure\"}",
                retry_after,
            )
        }
        Some(Fault::Drop) => {
            // Dropping the request unanswered closes the connection.
            drop(request.into_writer());
            return;
        }
        Some(Fault::Slow(pause)) => std::thread::sleep(pause),
        None => {}
    }
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|header| header.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|header| header.value.as_str().to_string())
    };
    if header("Authorization").as_deref() != Some(&format!("Bearer {API_KEY}")) {
        return respond(request, 401, "{\"error\":\"bad key\"}", None);
    }
    let Some(idempotency_key) = header("Idempotency-Key") else {
        return invalid(request, shared, "no Idempotency-Key".to_string());
    };
    let endpoint = match request.url().strip_prefix("/external-systems/") {
        Some(endpoint @ ("queue-intervals" | "contact-events" | "agent-statuses")) => {
            endpoint.to_string()
        }
        _ => return respond(request, 404, "{\"error\":\"unknown endpoint\"}", None),
    };
    if request.method() != &tiny_http::Method::Post {
        return respond(request, 405, "{\"error\":\"POST only\"}", None);
    }
    let mut text = String::new();
    if std::io::Read::read_to_string(request.as_reader(), &mut text).is_err() {
        return invalid(request, shared, "body is not UTF-8".to_string());
    }
    if let Some(refused) = shared.lock().unwrap().refuse_containing.clone() {
        if text.contains(&refused) {
            return respond(
                request,
                400,
                &format!("{{\"error\":\"refused: contains {refused}\"}}"),
                None,
            );
        }
    }
    let body: Value = match serde_json::from_str(&text) {
        Ok(body) => body,
        Err(error) => return invalid(request, shared, format!("body is not JSON: {error}")),
    };
    let items = match validate(&endpoint, &body) {
        Ok(items) => items,
        Err(problem) => return invalid(request, shared, problem),
    };
    let mut shared_state = shared.lock().unwrap();
    if !shared_state.applied_keys.insert(idempotency_key) {
        shared_state.received.n_replays += 1;
        drop(shared_state);
        return respond(request, 200, "{\"status\":\"already applied\"}", None);
    }
    for (key, item) in items {
        *shared_state
            .received
            .applications
            .entry(endpoint.clone())
            .or_default()
            .entry(key.clone())
            .or_default() += 1;
        shared_state
            .received
            .items
            .entry(endpoint.clone())
            .or_default()
            .insert(key, item);
    }
    drop(shared_state);
    respond(request, 200, "{\"status\":\"ok\"}", None)
}

fn invalid(request: tiny_http::Request, shared: &Mutex<Shared>, problem: String) {
    shared
        .lock()
        .unwrap()
        .received
        .invalid
        .push(problem.clone());
    respond(
        request,
        422,
        &serde_json::json!({ "error": problem }).to_string(),
        None,
    );
}

const CHANNELS: [&str; 6] = [
    "calls",
    "chats",
    "emails",
    "social_media",
    "documents",
    "cases",
];

/// Checks a body against the contract; returns each item with its natural key.
fn validate(endpoint: &str, body: &Value) -> Result<Vec<(String, Value)>, String> {
    let meta = body.get("meta").ok_or("no meta")?;
    if !meta
        .get("integrationConfigurationId")
        .is_some_and(Value::is_i64)
    {
        return Err("meta.integrationConfigurationId must be an integer".to_string());
    }
    if meta
        .get("externalSystem")
        .is_some_and(|system| !system.is_string())
    {
        return Err("meta.externalSystem must be a string".to_string());
    }
    let data = body
        .get("data")
        .and_then(Value::as_array)
        .ok_or("data must be an array")?;
    if data.is_empty() {
        return Err("data is empty".to_string());
    }
    data.iter()
        .enumerate()
        .map(|(index, item)| {
            validate_item(endpoint, item).map_err(|problem| format!("data[{index}]: {problem}"))
        })
        .collect()
}

fn string<'a>(item: &'a Value, key: &str) -> Result<&'a str, String> {
    match item.get(key).and_then(Value::as_str) {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(format!("{key} must be a non-empty string")),
    }
}

fn timestamp(item: &Value, key: &str) -> Result<String, String> {
    let text = string(item, key)?;
    if !text.ends_with('Z') || text.parse::<jiff::Timestamp>().is_err() {
        return Err(format!(
            "{key} must be an RFC 3339 UTC time ending in Z, found {text:?}"
        ));
    }
    Ok(text.to_string())
}

fn count(item: &Value, key: &str) -> Result<u64, String> {
    item.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{key} must be a whole number >= 0"))
}

fn channel(item: &Value) -> Result<String, String> {
    let channel = string(item, "channel")?;
    if CHANNELS.contains(&channel) {
        Ok(channel.to_string())
    } else {
        Err(format!(
            "channel must be one of {CHANNELS:?}, found {channel:?}"
        ))
    }
}

fn validate_item(endpoint: &str, item: &Value) -> Result<(String, Value), String> {
    let key = match endpoint {
        "queue-intervals" => {
            let queue = string(item, "queueIdentifier")?;
            string(item, "queueName")?;
            let time = timestamp(item, "timestamp")?;
            let channel = channel(item)?;
            let minutes = count(item, "intervalMinutes")?;
            if ![15, 30, 60].contains(&minutes) {
                return Err(format!(
                    "intervalMinutes must be 15, 30 or 60, found {minutes}"
                ));
            }
            let offered = count(item, "offered")?;
            let handled = count(item, "handled")?;
            let abandoned = count(item, "abandoned")?;
            if handled + abandoned > offered {
                return Err(format!(
                    "handled {handled} + abandoned {abandoned} exceed offered {offered}"
                ));
            }
            if !item
                .get("handlingTime")
                .and_then(Value::as_f64)
                .is_some_and(|seconds| seconds >= 0.0)
            {
                return Err("handlingTime must be a number >= 0".to_string());
            }
            format!("{queue}|{channel}|{time}")
        }
        "contact-events" => {
            let properties = item.get("properties").ok_or("no properties")?;
            for flag in ["offered", "handled"] {
                if !properties.get(flag).is_some_and(Value::is_boolean) {
                    return Err(format!("properties.{flag} must be a boolean"));
                }
            }
            let queue = string(item, "queueIdentifier")?;
            string(item, "queueName")?;
            let time = timestamp(item, "timestamp")?;
            channel(item)?;
            match item.get("contactIdentifier").and_then(Value::as_str) {
                Some(contact) => format!("{queue}|{contact}"),
                None => format!("{queue}|{time}|{item}"),
            }
        }
        "agent-statuses" => {
            let agent = string(item, "agentIdentifier")?;
            string(item, "activityIdentifier")?;
            let start = timestamp(item, "startTime")?;
            if item.get("endTime").is_some() {
                let end = timestamp(item, "endTime")?;
                if end < start {
                    return Err(format!("endTime {end} is before startTime {start}"));
                }
            }
            format!("{agent}|{start}")
        }
        _ => unreachable!("endpoints are checked before validation"),
    };
    Ok((key, item.clone()))
}
