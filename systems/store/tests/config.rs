//! `selfman node`'s settings: the command line over a TOML file, and every mistake in the file
//! a clear error naming the key. Also the program's own answer to a bad file and `--help`.

use std::path::PathBuf;
use std::process::Command;

use selfman_store::cli::{settings, NodeArgs};

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("selfman-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn with_file(name: &str, text: &str) -> Result<selfman_store::cli::NodeSettings, String> {
    settings(&NodeArgs { config: Some(file(name, text)), ..NodeArgs::default() })
}

#[test]
fn a_file_holds_the_settings_and_the_command_line_wins() {
    let text = "listen = \"127.0.0.1:7100\"\nredis = \"127.0.0.1:7000\"\njoin = \"127.0.0.1:7101\"\n\
                host-id = 3\nposition = 1\nreplicas = 5\npassword = \"pw\"\nexit-on-stdin-eof = true\n";
    let s = with_file("full.toml", text).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:7100");
    assert_eq!(s.join.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:7101"));
    assert_eq!((s.host_id, s.position, s.replicas), (3, 1, 5));
    assert_eq!(s.password.as_deref(), Some("pw"));
    assert!(s.exit_on_stdin_eof);
    let args = NodeArgs {
        config: Some(file("full2.toml", text)),
        redis: Some("127.0.0.1:9000".parse().unwrap()),
        replicas: Some(4),
        ..NodeArgs::default()
    };
    let s = settings(&args).unwrap();
    assert_eq!((s.redis.to_string().as_str(), s.replicas), ("127.0.0.1:9000", 4));
}

#[test]
fn mistakes_name_the_key() {
    let cases = [
        (
            "unknown.toml",
            "listen = \"127.0.0.1:1\"\nredis = \"127.0.0.1:2\"\nreplica = 3\n",
            "replica",
        ),
        (
            "type.toml",
            "listen = \"127.0.0.1:1\"\nredis = \"127.0.0.1:2\"\nreplicas = \"four\"\n",
            "replicas",
        ),
        ("addr.toml", "listen = \"localhost\"\nredis = \"127.0.0.1:2\"\n", "`listen`"),
        (
            "range.toml",
            "listen = \"127.0.0.1:1\"\nredis = \"127.0.0.1:2\"\nreplicas = 0\n",
            "`replicas`",
        ),
        ("missing.toml", "listen = \"127.0.0.1:1\"\n", "`redis`"),
        ("syntax.toml", "listen = \n", "syntax.toml"),
    ];
    for (name, text, key) in cases {
        let e = with_file(name, text).expect_err(name);
        assert!(e.contains(key), "{name}: the error names {key}: {e}");
    }
    let e =
        settings(&NodeArgs { config: Some("/nonexistent/x.toml".into()), ..NodeArgs::default() });
    assert!(e.unwrap_err().contains("/nonexistent/x.toml"));
}

#[test]
fn the_program_refuses_a_bad_file_and_explains_itself() {
    let bad = file("bad.toml", "listen = \"127.0.0.1:0\"\nredis = \"127.0.0.1:0\"\nbogus = 1\n");
    let out = Command::new(env!("CARGO_BIN_EXE_selfman"))
        .args(["node", "--config"])
        .arg(&bad)
        .output()
        .expect("run selfman");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "{err}");
    let help = Command::new(env!("CARGO_BIN_EXE_selfman")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("node") && help.contains("cluster"), "{help}");
}
