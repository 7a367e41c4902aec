//! The JSON lines sink: one file, fsynced per batch, rotated by size.

use super::ExportError;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// Runs file work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, ExportError> + Send + 'static,
) -> Result<T, ExportError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExportError::File {
            action: "write",
            path: path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?
}

// ---- JSON lines ---------------------------------------------------------

pub(super) struct JsonlFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: std::fs::File,
    size: u64,
    /// Where the batch being written starts in the current file.
    batch_start: u64,
}

impl JsonlFile {
    pub(super) fn open(
        path: PathBuf,
        max_bytes: u64,
        keep: usize,
    ) -> Result<JsonlFile, ExportError> {
        let fail = |action, source| ExportError::File {
            action,
            path: path.clone(),
            source,
        };
        let mut file = open_append(&path).map_err(|e| fail("open", e))?;
        let mut size = file.metadata().map_err(|e| fail("open", e))?.len();
        // A crash may have cut the last line short: end it, so the next
        // record starts on a line of its own.
        if size > 0 {
            let mut last = [0u8; 1];
            let mut reader = std::fs::File::open(&path).map_err(|e| fail("open", e))?;
            reader
                .seek(io::SeekFrom::End(-1))
                .and_then(|_| reader.read_exact(&mut last))
                .map_err(|e| fail("read", e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|e| fail("write", e))?;
                size += 1;
            }
        }
        Ok(JsonlFile {
            path,
            max_bytes,
            keep,
            file,
            size,
            batch_start: size,
        })
    }

    pub(super) fn write_batch(&mut self, lines: &[Vec<u8>]) -> Result<(), ExportError> {
        self.batch_start = self.size;
        let result = self.write_lines(lines);
        if result.is_err() {
            // Drop what this batch left in the current file (maybe a torn
            // line) so the retry starts clean; records already rotated
            // out are kept, and sent again (at-least-once).
            let _ = self.file.set_len(self.batch_start);
            self.size = self.batch_start;
        }
        result
    }

    fn write_lines(&mut self, lines: &[Vec<u8>]) -> Result<(), ExportError> {
        let mut buffer = Vec::new();
        for line in lines {
            let len = line.len() as u64;
            if self.size + buffer.len() as u64 > 0
                && self.size + buffer.len() as u64 + len > self.max_bytes
            {
                self.flush(&mut buffer)?;
                self.rotate()?;
            }
            buffer.extend_from_slice(line);
        }
        self.flush(&mut buffer)?;
        self.file.sync_data().map_err(|e| self.fail("sync", e))
    }

    fn flush(&mut self, buffer: &mut Vec<u8>) -> Result<(), ExportError> {
        self.file
            .write_all(buffer)
            .map_err(|e| self.fail("write", e))?;
        self.size += buffer.len() as u64;
        buffer.clear();
        Ok(())
    }

    /// `file` → `file.1`, `file.1` → `file.2` …, the oldest beyond `keep`
    /// deleted; then a new empty `file`.
    fn rotate(&mut self) -> Result<(), ExportError> {
        self.file.sync_data().map_err(|e| self.fail("sync", e))?;
        if self.keep == 0 {
            remove_if_exists(&self.path).map_err(|e| self.fail("remove", e))?;
        } else {
            let oldest = numbered(&self.path, self.keep);
            remove_if_exists(&oldest).map_err(|e| self.fail_at("remove", &oldest, e))?;
            for n in (1..self.keep).rev() {
                let from = numbered(&self.path, n);
                rename_if_exists(&from, &numbered(&self.path, n + 1))
                    .map_err(|e| self.fail_at("rotate", &from, e))?;
            }
            std::fs::rename(&self.path, numbered(&self.path, 1))
                .map_err(|e| self.fail("rotate", e))?;
        }
        self.file = open_append(&self.path).map_err(|e| self.fail("open", e))?;
        self.size = 0;
        self.batch_start = 0;
        // Make the renames durable before records go to the new file.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.fail_at("sync", dir, e))?;
        }
        Ok(())
    }

    fn fail(&self, action: &'static str, source: io::Error) -> ExportError {
        self.fail_at(action, &self.path, source)
    }

    fn fail_at(&self, action: &'static str, path: &Path, source: io::Error) -> ExportError {
        ExportError::File {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(super) fn open_append(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    // Audit records hold statements and parameters: owner only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

pub(super) fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

pub(super) fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
