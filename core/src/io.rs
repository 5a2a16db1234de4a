//! Bytes on disk: whole-file reads, atomic writes, and the sealed container (magic, version,
//! a JSON header, binary sections, a SHA-256) that bundles and checkpoints share.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Reads a whole file; a missing one is [`Error::MissingFile`], any other failure
/// [`Error::Io`], both naming the path.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    if !path.exists() {
        return Err(Error::MissingFile { path: path.into() });
    }
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

/// Writes `bytes` to `path` so that a reader never sees a half-written file: the data go to
/// a temporary file in the same folder, are flushed to disk, then renamed over `path`.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        // Closed at the end of this block, before the rename.
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    // The rename is durable only once the folder's entry is on disk too.
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    remove_stale_temporaries(dir, &name);
    Ok(())
}

/// Removes temporary files that earlier writers of `name` left behind when they were killed
/// between creating and renaming them (the pid in the name no longer runs). Best effort: a
/// temporary that cannot be removed is only clutter.
fn remove_stale_temporaries(dir: &std::path::Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let alive = match pid.parse::<u32>() {
            Ok(p) if p == std::process::id() => true,
            // Where /proc is missing nothing is known to be dead: keep it.
            Ok(p) => {
                !std::path::Path::new("/proc/self").exists()
                    || std::path::Path::new(&format!("/proc/{p}")).exists()
            }
            Err(_) => true,
        };
        if !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A sealed container: magic, version, a JSON header and binary sections, and a SHA-256.
/// Shared by bundles and training checkpoints.
pub fn seal(magic: &[u8; 8], version: u32, header: &[u8], sections: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(64 + header.len() + sections.iter().map(|s| s.len() + 8).sum::<usize>());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    for part in std::iter::once(header).chain(sections.iter().copied()) {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part);
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Opens a container written by [`seal`]: checks magic, checksum and version, and returns
/// the header and `n_sections` sections.
pub fn unseal<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    version: u32,
    n_sections: usize,
    what: &str,
) -> std::result::Result<(&'a [u8], Vec<&'a [u8]>), String> {
    if bytes.len() < 8 + 4 + 32 {
        return Err(format!("{what} is truncated ({} bytes)", bytes.len()));
    }
    if &bytes[..8] != magic {
        return Err(format!("not a {what} (wrong magic bytes)"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(format!(
            "{what} is corrupt or truncated (checksum mismatch)"
        ));
    }
    let found = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(format!(
            "{what} has format version {found}, this build reads version {version}"
        ));
    }
    let mut at = 12;
    let mut take = || -> std::result::Result<&'a [u8], String> {
        let len_bytes = body
            .get(at..at + 8)
            .ok_or_else(|| format!("{what} is truncated"))?;
        // A length beyond the address space (wasm is 32-bit) cannot be present either.
        let len = usize::try_from(u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")))
            .map_err(|_| format!("{what} is truncated"))?;
        let part = body
            .get(at + 8..at.saturating_add(8).saturating_add(len))
            .ok_or_else(|| format!("{what} is truncated"))?;
        at += 8 + len;
        Ok(part)
    };
    let header = take()?;
    let sections = (0..n_sections)
        .map(|_| take())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // Bytes after the last section are damage (or a forgery), never data.
    if at != body.len() {
        return Err(format!(
            "{what} is corrupt: {} unexpected bytes after its sections",
            body.len() - at
        ));
    }
    Ok((header, sections))
}
