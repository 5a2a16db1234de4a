//! A [`Generator`] backed by an OpenAI-compatible chat-completions server (a local LLM server
//! such as llama.cpp's, vLLM or Ollama): `POST {base_url}/chat/completions`. The API key is read
//! from the environment only and never printed; errors quote the server's status and a short,
//! key-free excerpt of its answer.

use std::time::Duration;

use rampart_core::error::{Error, Result};
use rampart_core::text::augment::Generator;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The environment variable the API key is read from.
pub const API_KEY_VAR: &str = "RAMPART_LLM_API_KEY";

pub const ABSTRACT_PROMPT: &str = "You are given an occupational accident report whose event type is \
\"{class}\". Write its abstract: one or two sentences that keep only the facts that decide the event \
type (what the worker was doing, what happened, the injury), without names, dates or places.\n\n\
Report:\n{report}\n\nAbstract:";

pub const EXPAND_PROMPT: &str = "Here are abstracts of real occupational accident reports of the event \
type \"{class}\":\n{abstracts}\n\nWrite one new, realistic accident report of the same event type in \
the style of an OSHA investigation summary: a short title, then three to six sentences. Combine and \
vary the details; do not copy the abstracts. Answer with the report only.";

/// Version of the built-in prompts; custom prompts are versioned by their hash.
pub const PROMPT_VERSION: &str = "abex-chat-v1";

pub struct ChatGenerator {
    agent: ureq::Agent,
    url: String,
    model: String,
    api_key: Option<String>,
    abstract_prompt: String,
    expand_prompt: String,
    prompt_version: String,
    retries: usize,
    temperature: f32,
}

pub struct ChatSettings {
    pub base_url: String,
    pub model: String,
    pub abstract_prompt: Option<String>,
    pub expand_prompt: Option<String>,
    pub timeout: Duration,
    pub retries: usize,
    pub temperature: f32,
}

impl ChatGenerator {
    pub fn new(s: ChatSettings) -> Result<Self> {
        let base = s.base_url.trim_end_matches('/');
        let api_key = std::env::var(API_KEY_VAR).ok().filter(|k| !k.is_empty());
        check_url(base, api_key.is_some())?;
        for (name, p, needs) in [
            (
                "abstract prompt",
                &s.abstract_prompt,
                ["{report}", "{class}"],
            ),
            (
                "expand prompt",
                &s.expand_prompt,
                ["{abstracts}", "{class}"],
            ),
        ] {
            if let Some(p) = p
                && let Some(missing) = needs.iter().find(|n| !p.contains(*n))
            {
                return Err(Error::invalid(
                    name,
                    format!("the template has no {missing} placeholder"),
                ));
            }
        }
        let custom = s.abstract_prompt.is_some() || s.expand_prompt.is_some();
        let abstract_prompt = s.abstract_prompt.unwrap_or_else(|| ABSTRACT_PROMPT.into());
        let expand_prompt = s.expand_prompt.unwrap_or_else(|| EXPAND_PROMPT.into());
        let prompt_version = if custom {
            let mut h = Sha256::new();
            h.update(&abstract_prompt);
            h.update([0]);
            h.update(&expand_prompt);
            format!("custom-{:.12x}", h.finalize())
        } else {
            PROMPT_VERSION.into()
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(s.timeout))
            .http_status_as_error(false)
            .build();
        Ok(Self {
            agent: ureq::Agent::new_with_config(config),
            url: format!("{base}/chat/completions"),
            model: s.model,
            api_key,
            abstract_prompt,
            expand_prompt,
            prompt_version,
            retries: s.retries,
            temperature: s.temperature,
        })
    }

    /// One chat completion, retried on transport errors, 429 and 5xx with jittered exponential
    /// backoff (or the server's Retry-After), reading at most 1 MB of answer.
    fn complete(&self, prompt: &str, seed: u64) -> Result<String> {
        let body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.temperature,
            "seed": seed,
        })
        .to_string();
        let mut last = String::new();
        // The server's Retry-After, when it sent one, replaces the next backoff.
        let mut wait: Option<Duration> = None;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(wait.take().unwrap_or_else(|| backoff(attempt, seed)));
            }
            let mut request = self
                .agent
                .post(&self.url)
                .header("content-type", "application/json");
            if let Some(key) = &self.api_key {
                request = request.header("authorization", &format!("Bearer {key}"));
            }
            let mut response = match request.send(body.as_bytes()) {
                Ok(r) => r,
                Err(e) => {
                    last = format!("request to {} failed: {e}", self.url);
                    continue;
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)));
            let text = match response
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .read_to_string()
            {
                Ok(t) => t,
                Err(e) => {
                    last = format!(
                        "{}: unreadable answer (larger than {MAX_ANSWER_BYTES} bytes, or cut off): {e}",
                        self.url
                    );
                    continue;
                }
            };
            if status == 429 || status >= 500 {
                last = format!("{} answered HTTP {status}: {}", self.url, excerpt(&text));
                wait = retry_after;
                continue;
            }
            if status != 200 {
                return Err(Error::invalid(
                    "LLM server",
                    format!("{} answered HTTP {status}: {}", self.url, excerpt(&text)),
                ));
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                Error::invalid(
                    "LLM server",
                    format!("answer is not JSON ({e}): {}", excerpt(&text)),
                )
            })?;
            return v["choices"][0]["message"]["content"]
                .as_str()
                .map(|s| s.trim().to_string())
                .ok_or_else(|| {
                    Error::invalid(
                        "LLM server",
                        format!("no choices[0].message.content in {}", excerpt(&text)),
                    )
                });
        }
        Err(Error::invalid(
            "LLM server",
            format!("gave up after {} attempts: {last}", self.retries + 1),
        ))
    }
}

/// The largest answer read from the server.
const MAX_ANSWER_BYTES: u64 = 1 << 20;
/// The longest Retry-After honoured; a server asking for more is waited on this long.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// Refuses URLs that cannot work or would leak the key: not http(s), https in a build without
/// TLS, or an API key over plain http to a host other than this machine.
fn check_url(base: &str, with_key: bool) -> Result<()> {
    let bad = |m: String| Err(Error::invalid("--base-url", m));
    let (scheme, rest) = match base.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        _ => {
            return bad(format!(
                "expected an http:// or https:// URL, got \"{base}\""
            ));
        }
    };
    if scheme == "https" && !cfg!(feature = "tls") {
        return bad(
            "this build has no TLS: build with `--features tls` for https:// servers".into(),
        );
    }
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if scheme == "http" && with_key && !loopback {
        return bad(format!(
            "refusing to send ${API_KEY_VAR} over plain http:// to {host}: use https:// or a server on this machine"
        ));
    }
    Ok(())
}

/// Exponential backoff from 200 ms, capped at 10 s, with jitter (half to all of it), so that
/// concurrent workers do not retry in lock-step.
fn backoff(attempt: usize, seed: u64) -> Duration {
    let cap = (200u64 << (attempt.saturating_sub(1)).min(6)).min(10_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut x = seed ^ nanos ^ ((attempt as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    Duration::from_millis(cap / 2 + x % (cap / 2 + 1))
}

fn excerpt(s: &str) -> String {
    let s: String = s.chars().take(200).collect();
    s.replace('\n', " ")
}

impl Generator for ChatGenerator {
    fn name(&self) -> String {
        format!("chat:{}", self.model)
    }

    fn prompt_version(&self) -> String {
        self.prompt_version.clone()
    }

    fn abstract_report(&self, report: &str, class: &str) -> Result<String> {
        let prompt = self
            .abstract_prompt
            .replace("{class}", class)
            .replace("{report}", report);
        self.complete(&prompt, 0)
    }

    fn expand(&self, abstracts: &[&str], class: &str, seed: u64) -> Result<String> {
        let list: String = abstracts.iter().map(|a| format!("- {a}\n")).collect();
        let prompt = self
            .expand_prompt
            .replace("{class}", class)
            .replace("{abstracts}", &list);
        self.complete(&prompt, seed)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;

    /// One scripted answer: status, extra headers, body; `None` stalls (accepts, never answers).
    type Answer = Option<(u16, &'static str, String)>;

    /// A loopback server that gives the scripted answers in order (the last one repeats).
    fn server(answers: Vec<Answer>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                match answers[n.min(answers.len() - 1)].clone() {
                    None => held.push(stream),
                    Some((status, headers, body)) => {
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(reply.as_bytes());
                        let _ = stream.write_all(body.as_bytes());
                    }
                }
            }
        });
        url
    }

    fn ok_body(text: &str) -> String {
        json!({"choices": [{"message": {"content": text}}]}).to_string()
    }

    fn client(url: &str, retries: usize) -> ChatGenerator {
        ChatGenerator::new(ChatSettings {
            base_url: url.into(),
            model: "m".into(),
            abstract_prompt: None,
            expand_prompt: None,
            timeout: Duration::from_millis(1500),
            retries,
            temperature: 0.7,
        })
        .unwrap()
    }

    #[test]
    fn honours_retry_after_and_retries_server_errors() {
        let url = server(vec![
            Some((429, "retry-after: 1\r\n", "{}".into())),
            Some((500, "", "oops".into())),
            Some((200, "", ok_body("fine"))),
        ]);
        let t0 = Instant::now();
        assert_eq!(client(&url, 3).complete("p", 1).unwrap(), "fine");
        assert!(
            t0.elapsed() >= Duration::from_millis(950),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn bad_answers_are_clear_errors() {
        let cases: Vec<(Answer, &str)> = vec![
            (Some((200, "", "not json at all".into())), "not JSON"),
            (Some((200, "", "{\"choices\": [".into())), "not JSON"),
            (
                Some((200, "", "{\"answer\": 42}".into())),
                "no choices[0].message.content",
            ),
            (Some((400, "", "{\"error\":\"bad\"}".into())), "HTTP 400"),
            (Some((200, "", "x".repeat(2 << 20))), "larger than"),
            (None, "gave up after 2 attempts"),
        ];
        for (answer, needle) in cases {
            let url = server(vec![answer]);
            let err = client(&url, 1).complete("p", 1).unwrap_err().to_string();
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        }
    }

    #[test]
    fn refuses_urls_that_would_leak_the_key_or_cannot_work() {
        assert!(check_url("http://127.0.0.1:8080/v1", true).is_ok());
        assert!(check_url("http://localhost/v1", true).is_ok());
        assert!(check_url("http://[::1]:9/v1", true).is_ok());
        assert!(check_url("http://10.1.2.3/v1", false).is_ok());
        let leak = check_url("http://10.1.2.3/v1", true)
            .unwrap_err()
            .to_string();
        assert!(leak.contains("refusing to send"), "{leak}");
        let leak = check_url("http://example.invalid:80/v1", true)
            .unwrap_err()
            .to_string();
        assert!(leak.contains("example.invalid"), "{leak}");
        assert!(check_url("ftp://x", false).is_err());
        if !cfg!(feature = "tls") {
            let tls = check_url("https://example.invalid/v1", false)
                .unwrap_err()
                .to_string();
            assert!(tls.contains("no TLS"), "{tls}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for attempt in 1..12 {
            let cap = (200u64 << (attempt - 1).min(6)).min(10_000);
            let d = backoff(attempt, 7).as_millis() as u64;
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {attempt}: {d} ms of {cap}"
            );
        }
    }
}
