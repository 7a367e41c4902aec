//! Exporter tests: the JSON lines sink and its rotation.

use super::*;

pub(super) fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The files of a rotated set, oldest first.
fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..1000)
        .map(|n| numbered(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

#[tokio::test]
async fn jsonl_rotation_keeps_every_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let config = SinkConfig::Jsonl {
        path: path.clone(),
        max_bytes: 1000,
        keep: 100,
    };
    let records: Vec<ExportRecord> = (1..=60).map(|s| record(s, "allow")).collect();
    let mut sink = Sink::open(&config).await.unwrap();
    for batch in records[..40].chunks(7) {
        sink.send(batch).await.unwrap();
    }
    // A restart: the sink is opened again on the same files.
    drop(sink);
    let mut sink = Sink::open(&config).await.unwrap();
    for batch in records[40..].chunks(7) {
        sink.send(batch).await.unwrap();
    }

    let files = rotated_files(&path);
    assert!(files.len() > 5, "{files:?}");
    let mut all = Vec::new();
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size <= 1000, "{} has {size} bytes", file.display());
        all.extend(read_jsonl(file));
    }
    assert_eq!(seqs(&all), (1..=60).collect::<Vec<_>>());
    assert_eq!(all[0], export_object(&records[0]));
}

#[tokio::test]
async fn jsonl_rotation_honours_keep() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let config = SinkConfig::Jsonl {
        path: path.clone(),
        max_bytes: 700,
        keep: 2,
    };
    let mut sink = Sink::open(&config).await.unwrap();
    let records: Vec<ExportRecord> = (1..=50).map(|s| record(s, "deny")).collect();
    for batch in records.chunks(3) {
        sink.send(batch).await.unwrap();
    }
    assert!(numbered(&path, 2).exists());
    assert!(!numbered(&path, 3).exists());
    let files = rotated_files(&path);
    assert_eq!(files.len(), 3);
    let all: Vec<Value> = files.iter().flat_map(|f| read_jsonl(f)).collect();
    let tail = seqs(&all);
    assert_eq!(*tail.last().unwrap(), 50);
    assert!(tail.windows(2).all(|w| w[1] == w[0] + 1), "{tail:?}");
}
