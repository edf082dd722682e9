//! Content-addressed screenshot files: `screenshots/<sha256>.png`.
//!
//! A file's name is the SHA-256 of its bytes, so a file is never overwritten with different
//! content and verify can re-hash it without consulting anything else.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::journal::sync_dir;
use super::record::sha256_hex;
use super::{PngInfo, StoreError};

/// Directory of the screenshots inside the data directory.
pub const SCREENSHOTS: &str = "screenshots";

/// Path of the screenshot with this hash.
pub fn path_for(data_dir: &Path, sha256: &str) -> PathBuf {
    data_dir.join(SCREENSHOTS).join(format!("{sha256}.png"))
}

/// Decodes `png` (refusing anything that is not a PNG), then stores it durably: temp file,
/// fsync, rename to its hash name, fsync the directory. Idempotent: an existing intact file
/// is left alone; an existing file whose bytes no longer match is replaced by the good bytes.
pub fn put(data_dir: &Path, png: &[u8]) -> Result<PngInfo, StoreError> {
    let image = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .map_err(|e| StoreError::NotPng(e.to_string()))?;
    let blank = is_blank(&image);
    let sha256 = sha256_hex(png);
    let dir = data_dir.join(SCREENSHOTS);
    let path = path_for(data_dir, &sha256);
    let info = PngInfo {
        sha256: sha256.clone(),
        bytes: png.len() as u64,
        width: image.width(),
        height: image.height(),
        blank,
        path: path.clone(),
    };
    if let Ok((existing, _)) = hash_file(&path) {
        if existing == sha256 {
            return Ok(info);
        }
        tracing::warn!(path = %path.display(), "stored screenshot no longer matches its name; rewriting it");
    }
    write_read_only(&dir, &path, png)?;
    Ok(info)
}

/// Writes `bytes` durably as the read-only file `path` in `dir`: a temp file, fsync, mode
/// 0444 (evidence is not edited in place), rename, fsync the directory.
pub(super) fn write_read_only(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o444));
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    sync_dir(dir)
}

fn is_blank(image: &image::DynamicImage) -> bool {
    let bpp = image.color().bytes_per_pixel() as usize;
    let bytes = image.as_bytes();
    match bytes.get(..bpp) {
        Some(first) if bpp > 0 => bytes.chunks_exact(bpp).all(|px| px == first),
        _ => true,
    }
}

/// SHA-256 (hex) and length of a file, streamed in 1 MiB blocks.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}
