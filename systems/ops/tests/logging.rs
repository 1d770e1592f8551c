//! The node programs' logger: JSON lines that parse, the filter applied, bad settings named.
//! (One test per binary: a process has one logger.)

use std::io::Write;
use std::sync::{Arc, Mutex};

use selfman_ops::logging::{filter, init_with_writer, LogFormat};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn json_lines_filtered_by_level_and_target() {
    assert!("yaml".parse::<LogFormat>().unwrap_err().to_string().contains("neither"));
    assert!(filter(Some("info,=bad=")).unwrap_err().to_string().contains("bad log filter"));

    let sink = Sink::default();
    let out = sink.clone();
    init_with_writer(LogFormat::Json, Some("info,noisy=error"), move || out.clone()).unwrap();
    let span = tracing::info_span!("tx", id = 42);
    let _g = span.enter();
    tracing::info!(peer = "127.0.0.1:4000", "connected");
    tracing::debug!("not shown: below info");
    tracing::warn!(target: "noisy", "not shown: noisy is error only");
    tracing::error!(target: "noisy", code = 7, "shown");
    assert!(
        init_with_writer(LogFormat::Text, None, std::io::sink).is_err(),
        "one logger per process"
    );

    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[0]["fields"]["message"], "connected");
    assert_eq!(lines[0]["fields"]["peer"], "127.0.0.1:4000");
    assert_eq!(lines[0]["span"]["id"], 42, "the current span's fields");
    assert_eq!(lines[1]["target"], "noisy");
    assert_eq!(lines[1]["fields"]["code"], 7);
}
