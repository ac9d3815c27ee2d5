//! Tier 1 fuzzing, bounded: the config parser and `lbctl`'s argument parser take mutated and
//! random input and answer with a value or an error, never a panic.
use std::process::Command;

use lb_userspace::model::config::Config;
use proptest::prelude::*;

const GOOD: &str = r#"[lbd]
instance = "edge1"
interfaces = ["eth1"]
drain_timeout_s = 30

[[vip]]
name = "web"
addr = "192.0.2.10"
port = 80
proto = "tcp"
mode = "nat"
[vip.health]
kind = "tcp"
rise = 2
[vip.weights]
policy = "resource"
slow_start_s = 10
[vip.pool]
provider = "netns"
min = 2
max = 6
network = "10.201.0.0/24"

[[vip.backend]]
addr = "10.0.0.2"
port = 8080
weight = 2
"#;

/// One edit to a config text: cut a range, insert text, or swap a byte.
#[derive(Debug, Clone)]
enum Edit {
    Cut(usize, usize),
    Insert(usize, String),
    Byte(usize, u8),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (0..GOOD.len(), 0..40usize).prop_map(|(at, n)| Edit::Cut(at, n)),
        (0..GOOD.len(), "[\\[\\]=\"a-z0-9._:/\\n -]{0,24}").prop_map(|(at, s)| Edit::Insert(at, s)),
        (0..GOOD.len(), any::<u8>()).prop_map(|(at, b)| Edit::Byte(at, b)),
    ];
    proptest::collection::vec(edit, 1..6)
}

fn apply(edits: &[Edit]) -> String {
    let mut b = GOOD.as_bytes().to_vec();
    for e in edits {
        match e {
            Edit::Cut(at, n) => {
                let at = (*at).min(b.len());
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            Edit::Insert(at, s) => {
                let at = (*at).min(b.len());
                b.splice(at..at, s.bytes());
            }
            Edit::Byte(at, v) => {
                if let Some(x) = b.get_mut(*at) {
                    *x = *v;
                }
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_configs_parse_or_fail_cleanly(edits in edits()) {
        let text = apply(&edits);
        // Either outcome is fine; a panic fails the test. A parsed config must also validate
        // without panicking (parse validates already; validating twice is harmless).
        if let Ok(cfg) = Config::parse(&text) {
            let _ = cfg.validate();
        }
    }

    #[test]
    fn random_text_never_panics_the_config_parser(text in "\\PC{0,400}") {
        let _ = Config::parse(&text);
    }
}

/// Words `lbctl` arguments are drawn from: real subcommands and flags, and junk.
const WORDS: &[&str] = &[
    "status",
    "vip",
    "backend",
    "stats",
    "plan",
    "vm",
    "list",
    "add",
    "remove",
    "weight",
    "drain",
    "create",
    "delete",
    "completions",
    "--vip",
    "--weight",
    "--json",
    "--watch",
    "--count",
    "--interval",
    "--pool",
    "--cpu-limit",
    "--apply",
    "--addr",
    "--port",
    "--proto",
    "--mode",
    "--name",
    "web",
    "10.0.0.2:8080",
    "[::1]:80",
    "192.0.2.1",
    "80",
    "0",
    "-1",
    "65536",
    "99999999999999999999",
    "tcp",
    "udp",
    "nat",
    "dsr",
    "bash",
    "",
    "--",
    "-",
    "x=y",
    "\u{1f600}",
    "nan",
    "1e9",
    "--help",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_lbctl_arguments_get_an_answer_or_an_error_never_a_panic(
        picks in proptest::collection::vec(0..WORDS.len(), 0..7)
    ) {
        let args: Vec<&str> = picks.iter().map(|&i| WORDS[i]).collect();
        let out = Command::new(tests::bin("lbctl"))
            .arg("--socket")
            .arg("/nonexistent/lbd-fuzz.sock")
            .args(&args)
            .output()
            .expect("run lbctl");
        // 0 (help, completions), 1 (no lbd at that socket, bad value) or 2 (usage): all fine.
        // 101 is a Rust panic; no code at all is a signal.
        let code = out.status.code();
        prop_assert!(matches!(code, Some(0..=2)), "lbctl {:?} exited {:?}: {}", args, code,
            String::from_utf8_lossy(&out.stderr));
        if code != Some(0) {
            prop_assert!(!out.stderr.is_empty(), "lbctl {:?} failed silently", args);
        }
    }
}
