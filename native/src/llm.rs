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
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::invalid(
                "--base-url",
                format!("expected an http:// or https:// URL, got \"{base}\""),
            ));
        }
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
            api_key: std::env::var(API_KEY_VAR).ok().filter(|k| !k.is_empty()),
            abstract_prompt,
            expand_prompt,
            prompt_version,
            retries: s.retries,
            temperature: s.temperature,
        })
    }

    /// One chat completion, retried on transport errors, 429 and 5xx with exponential backoff.
    fn complete(&self, prompt: &str, seed: u64) -> Result<String> {
        let body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.temperature,
            "seed": seed,
        })
        .to_string();
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 << (attempt - 1).min(6)));
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
            let text = response.body_mut().read_to_string().unwrap_or_default();
            if status == 429 || status >= 500 {
                last = format!("{} answered HTTP {status}: {}", self.url, excerpt(&text));
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
