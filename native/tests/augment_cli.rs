//! `rampart augment` end to end: the offline generator on a small training file, and the chat
//! generator against a real HTTP server on loopback started here (an OpenAI-compatible
//! `/v1/chat/completions` stand-in): requests carry the model, the prompts and the API key from
//! the environment; a 503 is retried; the key never appears in the output; a 400 and a
//! server that is not there fail with clear errors.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{expect_failure, expect_ok};

const KEY: &str = "sk-test-0123456789abcdef";

fn train_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut rows = Vec::new();
    let reports = [
        (
            "FIRES AND EXPLOSIONS",
            "A tank exploded during welding. Vapors ignited in the tank. Two workers were burned.",
        ),
        (
            "FIRES AND EXPLOSIONS",
            "Fire broke out in the paint booth. Solvent vapors ignited. The employee was burned.",
        ),
        (
            "FIRES AND EXPLOSIONS",
            "A dust explosion shook the mill. Grain dust ignited near a motor. Three workers were hurt.",
        ),
        (
            "FALLS,SLIPS,TRIPS",
            "Worker falls from ladder. He was painting. The ladder slipped.",
        ),
    ];
    for (i, (class, text)) in reports.iter().enumerate() {
        rows.push(serde_json::json!({"id": i, "title": text, "summary": "", "gold": class}));
    }
    let path = dir.join("train.json");
    std::fs::write(&path, serde_json::to_string(&rows).unwrap()).unwrap();
    path
}

fn rampart(args: &[&str], key: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rampart"));
    c.args(args).env_remove("RAMPART_LLM_API_KEY");
    if let Some(k) = key {
        c.env("RAMPART_LLM_API_KEY", k);
    }
    c.output().unwrap()
}

fn read_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn offline_generator_writes_jsonl_with_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_file(dir.path());
    let out = dir.path().join("gen.jsonl");
    let args = [
        "augment",
        "--data",
        train.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--class",
        "fires and explosions",
        "--target",
        "8",
        "--json",
    ];
    let summary: serde_json::Value =
        serde_json::from_str(&expect_ok(&args, rampart(&args, None))).unwrap();
    let lines = read_lines(&out);
    assert_eq!(summary["generated"].as_u64().unwrap() as usize, lines.len());
    assert!(!lines.is_empty() && lines.len() <= 5);
    for l in &lines {
        assert_eq!(l["label"], "FIRES AND EXPLOSIONS");
        assert_eq!(l["prompt_version"], "offline-v1");
        assert!(!l["sources"].as_array().unwrap().is_empty());
    }
    let bad = [
        "augment",
        "--data",
        train.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--class",
        "SPACE ACCIDENTS",
    ];
    expect_failure(&bad, rampart(&bad, None), "unknown class");
}

/// (authorization header, body) of every request the server saw.
type Requests = Arc<Mutex<Vec<(String, String)>>>;

/// A one-thread HTTP/1.1 server answering chat completions; the first request gets a 503.
fn chat_server(status_after_first: u16) -> (String, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let (mut len, mut auth) = (0usize, String::new());
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap(),
                    "authorization" => auth = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            log.lock().unwrap().push((auth, body.clone()));
            let request: serde_json::Value = serde_json::from_str(&body).unwrap();
            let prompt = request["messages"][0]["content"]
                .as_str()
                .unwrap()
                .to_string();
            let (status, answer) = if n == 0 {
                (503, "{\"error\":\"warming up\"}".to_string())
            } else if status_after_first != 200 {
                (
                    status_after_first,
                    "{\"error\":\"bad request\"}".to_string(),
                )
            } else {
                let content = if prompt.contains("Abstract:") {
                    format!("Abstract number {n}: vapors ignited and a worker was burned.")
                } else {
                    format!(
                        "Generated report {n}. A fire started while welding and burned a worker."
                    )
                };
                (200, serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]}).to_string())
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, seen)
}

#[test]
fn chat_generator_against_a_loopback_server() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_file(dir.path());
    let out = dir.path().join("chat.jsonl");
    let (url, seen) = chat_server(200);
    let args = [
        "augment",
        "--generator",
        "chat",
        "--base-url",
        &url,
        "--model",
        "tiny-llm",
        "--data",
        train.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--class",
        "4",
        "--target",
        "6",
        "--concurrency",
        "2",
        "--retries",
        "2",
    ];
    let run = rampart(&args, Some(KEY));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    expect_ok(&args, run);
    assert!(!printed.contains(KEY), "the API key was printed");
    let lines = read_lines(&out);
    assert_eq!(lines.len(), 3, "6 − 3 originals");
    for l in &lines {
        assert_eq!(l["generator"], "chat:tiny-llm");
        assert_eq!(l["prompt_version"], "abex-chat-v1");
        assert!(l["text"].as_str().unwrap().starts_with("Generated report"));
        assert!(
            l["abstracts"][0]
                .as_str()
                .unwrap()
                .starts_with("Abstract number")
        );
    }
    let seen = seen.lock().unwrap();
    // 3 abstracts + 3 expansions + the refused first request.
    assert_eq!(seen.len(), 7);
    for (auth, body) in seen.iter() {
        assert_eq!(auth, &format!("Bearer {KEY}"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["model"], "tiny-llm");
        assert!(
            v["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("FIRES AND EXPLOSIONS")
        );
    }
    // No key in the environment: no authorization header.
    let (url2, seen2) = chat_server(200);
    let args2 = [
        "augment",
        "--generator",
        "chat",
        "--base-url",
        &url2,
        "--data",
        train.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--class",
        "4",
        "--target",
        "4",
        "--overwrite",
    ];
    expect_ok(&args2, rampart(&args2, None));
    assert!(
        seen2
            .lock()
            .unwrap()
            .iter()
            .all(|(auth, _)| auth.is_empty())
    );
}

#[test]
fn chat_generator_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_file(dir.path());
    let out = dir.path().join("x.jsonl");
    let (url, _) = chat_server(400);
    let t = train.to_str().unwrap();
    let o = out.to_str().unwrap();
    let args = [
        "augment",
        "--generator",
        "chat",
        "--base-url",
        &url,
        "--data",
        t,
        "--out",
        o,
        "--class",
        "4",
        "--target",
        "5",
    ];
    let run = rampart(&args, Some(KEY));
    assert!(!String::from_utf8_lossy(&run.stderr).contains(KEY));
    expect_failure(&args, run, "HTTP 400");
    assert!(!out.exists(), "nothing is written when every call fails");
    // Nobody listening on the port: retried, then a clear error.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let args = [
        "augment",
        "--generator",
        "chat",
        "--base-url",
        &dead,
        "--data",
        t,
        "--out",
        o,
        "--class",
        "4",
        "--target",
        "5",
        "--retries",
        "1",
    ];
    expect_failure(&args, rampart(&args, None), "gave up after 2 attempts");
    let args = [
        "augment",
        "--generator",
        "chat",
        "--base-url",
        "ftp://x",
        "--data",
        t,
        "--out",
        o,
    ];
    expect_failure(&args, rampart(&args, None), "http:// or https://");
}

/// A chat server whose answer depends only on the request (a hash of its body), so that two
/// runs get the same answers; each answer takes `delay` and connections are served at once.
fn deterministic_server(delay: std::time::Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                // FNV-1a of the body: the same request, the same answer.
                let hash = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
                });
                let prompt = String::from_utf8_lossy(&body);
                let content = if prompt.contains("Abstract:") {
                    format!("Abstract {hash:x}: vapors ignited and a worker was burned.")
                } else {
                    format!("Report {hash:x}. A fire started while welding and burned a worker.")
                };
                std::thread::sleep(delay);
                let answer = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]}).to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    url
}

/// A small xorshift for the kill points; its seed is printed so that a failure can be rerun.
fn kill_points(n: usize, range: std::ops::Range<usize>) -> Vec<usize> {
    let seed = std::env::var("RAMPART_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill points from RAMPART_KILL_SEED={seed}");
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            range.start + (s % (range.end - range.start) as u64) as usize
        })
        .collect()
}

fn lines_in(path: &std::path::Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// kill -9 at three random points of a chat augmentation, `--resume` after each: the output
/// is byte for byte the uninterrupted run's, every report exactly once.
#[test]
fn augment_killed_three_times_resumes_to_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_file(dir.path());
    let url = deterministic_server(std::time::Duration::from_millis(25));
    let args = |out: &std::path::Path| -> Vec<String> {
        [
            "augment",
            "--generator",
            "chat",
            "--base-url",
            &url,
            "--data",
            train.to_str().unwrap(),
            "--class",
            "fires and explosions",
            "--target",
            "40",
            "--concurrency",
            "2",
            "--retries",
            "0",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let whole = dir.path().join("whole.jsonl");
    let a = args(&whole);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    expect_ok(&a, rampart(&a, None));
    let expected = std::fs::read_to_string(&whole).unwrap();
    let n = expected.lines().count();
    assert!(n >= 20, "only {n} reports");

    let out = dir.path().join("gen.jsonl");
    let base = args(&out);
    let mut resume: Vec<&str> = base.iter().map(String::as_str).collect();
    resume.push("--resume");
    // Answers are journaled as they arrive (reports are accepted a round of calls at a time):
    // the kill points are counted in answers.
    let calls = dir.path().join("gen.jsonl.calls");
    let mut killed = 0;
    let mut points = kill_points(3, 1..n - 2);
    // Later kills must find more answers than the earlier runs left.
    points.sort_unstable();
    for at in points {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(&resume)
            .env_remove("RAMPART_LLM_API_KEY")
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while lines_in(&calls) < at + 1 && start.elapsed().as_secs() < 60 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.kill().unwrap();
        if !child.wait().unwrap().success() {
            killed += 1;
        }
    }
    assert!(killed >= 2, "the runs finished before they could be killed");
    expect_ok(&resume, rampart(&resume, None));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    let ids: std::collections::HashSet<String> = read_lines(&out)
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), n, "a report appears twice");
    assert!(!dir.path().join("gen.jsonl.calls").exists());

    // A finished output is kept: a fresh run and a resume are both refused.
    let fresh: Vec<&str> = base.iter().map(String::as_str).collect();
    expect_failure(&fresh, rampart(&fresh, None), "pass --resume");
    expect_failure(&resume, rampart(&resume, None), "has no journal");
}
