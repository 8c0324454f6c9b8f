//! Unpacking plugin tarballs safely (PLUGIN-ABI.md §6 limits): `.tar.gz`
//! only, regular files and directories only (no links, devices or FIFOs),
//! no absolute paths or `..`, at most 10,000 entries, 50 MiB per file and
//! 200 MiB unpacked in total (a gzip bomb stops there).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

pub const MAX_DOWNLOAD_BYTES: usize = 100 << 20;
pub const MAX_FILE_BYTES: u64 = 50 << 20;
pub const MAX_ENTRIES: usize = 10_000;
pub const MAX_TOTAL_BYTES: u64 = 200 << 20;

/// A path inside the archive, as a safe relative path.
fn safe_relative(path: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "archive entry {} escapes the archive (absolute path or '..')",
                    path.display()
                ));
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Unpacks `gz` into `dest` (which must exist and be empty).
pub fn unpack_tar_gz(gz: &[u8], dest: &Path) -> Result<Vec<PathBuf>, String> {
    let decoder = flate2::read::GzDecoder::new(gz);
    let mut archive = tar::Archive::new(decoder);
    let mut files = Vec::new();
    let mut total = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar.gz archive: {e}"))?;
    for (count, entry) in entries.enumerate() {
        if count >= MAX_ENTRIES {
            return Err(format!("archive has more than {MAX_ENTRIES} entries"));
        }
        let mut entry = entry.map_err(|e| format!("corrupt archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad entry path: {e}"))?
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
        {
            continue;
        }
        let Some(relative) = safe_relative(&path)? else {
            continue;
        };
        let target = dest.join(&relative);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
            continue;
        }
        if !kind.is_file() {
            return Err(format!(
                "archive entry {} is not a regular file or directory (links are refused)",
                path.display()
            ));
        }
        let size = entry.header().size().map_err(|e| e.to_string())?;
        if size > MAX_FILE_BYTES {
            return Err(format!(
                "archive entry {} exceeds {MAX_FILE_BYTES} bytes",
                path.display()
            ));
        }
        total += size;
        if total > MAX_TOTAL_BYTES {
            return Err(format!(
                "archive unpacks to more than {MAX_TOTAL_BYTES} bytes"
            ));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut data = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if data.len() as u64 > MAX_FILE_BYTES {
            return Err(format!(
                "archive entry {} exceeds {MAX_FILE_BYTES} bytes",
                path.display()
            ));
        }
        std::fs::write(&target, &data).map_err(|e| e.to_string())?;
        files.push(relative);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // Bypass the builder's own path checks to craft hostile names.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn unpacks_plain_files() {
        let dir = std::env::temp_dir().join(format!("paca-archive-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = unpack_tar_gz(
            &tar_gz(&[("./a/b.txt", b"hi"), ("plugin.json", b"{}")]),
            &dir,
        )
        .unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(std::fs::read(dir.join("a/b.txt")).unwrap(), b"hi");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_traversal_and_absolute_paths() {
        for bad in ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt"] {
            let dir = std::env::temp_dir().join(format!("paca-archive-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let error = unpack_tar_gz(&tar_gz(&[(bad, b"x")]), &dir).unwrap_err();
            assert!(error.contains("escapes"), "{bad}: {error}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn refuses_symlinks() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "link", "/etc/passwd")
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let dir = std::env::temp_dir().join(format!("paca-archive-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let error = unpack_tar_gz(&gz.finish().unwrap(), &dir).unwrap_err();
        assert!(error.contains("links are refused"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
