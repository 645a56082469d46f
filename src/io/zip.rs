//! A small reader for the zip archives `torch.save` writes: central directory (with ZIP64
//! fields), stored and deflated entries, CRC-32 checked. Works on the whole file in memory, so
//! every offset is bounds-checked against the buffer instead of trusted.

use crate::error::{HeparError, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
const ZIP64_END_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_END_OF_CENTRAL_DIRECTORY: u32 = 0x0606_4b50;
const CENTRAL_DIRECTORY_ENTRY: u32 = 0x0201_4b50;
const LOCAL_FILE_HEADER: u32 = 0x0403_4b50;
const ZIP64_EXTRA_FIELD: u16 = 0x0001;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATE: u16 = 8;

#[derive(Debug, Clone)]
struct Entry {
    method: u16,
    crc32: u32,
    compressed_size: u64,
    uncompressed_size: u64,
    local_header_offset: u64,
    encrypted: bool,
}

/// A zip archive held in memory, its entries by name in directory order.
pub struct ZipArchive<'a> {
    path: PathBuf,
    bytes: &'a [u8],
    names: Vec<String>,
    entries: HashMap<String, Entry>,
}

/// Little-endian field reads that fail (instead of panicking) past the end of the buffer.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at(bytes: &'a [u8], pos: usize) -> Cursor<'a> {
        Cursor { bytes, pos }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
    }
}

impl<'a> ZipArchive<'a> {
    /// Reads the central directory of `bytes`; `path` only names the file in errors.
    pub fn parse(path: &Path, bytes: &'a [u8]) -> Result<ZipArchive<'a>> {
        let fail = |msg: String| HeparError::format(path, msg);
        let eocd = find_end_of_central_directory(bytes).ok_or_else(|| {
            fail(
                "not a zip archive (no end-of-central-directory record; the file is truncated, \
                  or is a legacy non-zip torch.save file)"
                    .into(),
            )
        })?;
        let mut c = Cursor::at(bytes, eocd + 4);
        let truncated = || fail("end-of-central-directory record is truncated".into());
        let _disk = c.u16().ok_or_else(truncated)?;
        let _cd_disk = c.u16().ok_or_else(truncated)?;
        let _entries_here = c.u16().ok_or_else(truncated)?;
        let mut entry_count = c.u16().ok_or_else(truncated)? as u64;
        let mut cd_size = c.u32().ok_or_else(truncated)? as u64;
        let mut cd_offset = c.u32().ok_or_else(truncated)? as u64;

        if entry_count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
            let (count, size, offset) = read_zip64_end(bytes, eocd).ok_or_else(|| {
                fail("ZIP64 end-of-central-directory record is missing or corrupt".into())
            })?;
            entry_count = count;
            cd_size = size;
            cd_offset = offset;
        }
        let cd_end = cd_offset.checked_add(cd_size).filter(|&e| e <= bytes.len() as u64).ok_or_else(|| {
            fail(format!(
                "central directory (offset {cd_offset}, {cd_size} bytes) lies outside the {}-byte file",
                bytes.len()
            ))
        })?;

        let mut names = Vec::new();
        let mut entries = HashMap::new();
        let mut c = Cursor::at(&bytes[..cd_end as usize], cd_offset as usize);
        for i in 0..entry_count {
            let bad = |what: &str| fail(format!("central directory entry {i}: {what}"));
            if c.u32() != Some(CENTRAL_DIRECTORY_ENTRY) {
                return Err(bad("bad signature or truncated"));
            }
            let fixed = c.take(42).ok_or_else(|| bad("truncated"))?;
            let mut f = Cursor::at(fixed, 0);
            let (_made_by, _needed) = (f.u16(), f.u16());
            let flags = f.u16().unwrap_or(0);
            let method = f.u16().unwrap_or(0);
            let (_time, _date) = (f.u16(), f.u16());
            let crc32 = f.u32().unwrap_or(0);
            let mut compressed_size = f.u32().unwrap_or(0) as u64;
            let mut uncompressed_size = f.u32().unwrap_or(0) as u64;
            let name_len = f.u16().unwrap_or(0) as usize;
            let extra_len = f.u16().unwrap_or(0) as usize;
            let comment_len = f.u16().unwrap_or(0) as usize;
            let (_disk_start, _internal) = (f.u16(), f.u16());
            let _external = f.u32();
            let mut local_header_offset = f.u32().unwrap_or(0) as u64;
            let name = c.take(name_len).ok_or_else(|| bad("name truncated"))?;
            let name = String::from_utf8_lossy(name).into_owned();
            let extra = c
                .take(extra_len)
                .ok_or_else(|| bad("extra field truncated"))?;
            c.take(comment_len)
                .ok_or_else(|| bad("comment truncated"))?;

            // ZIP64: the 64-bit values replace, in this order, those stored as 0xFFFFFFFF.
            if let Some(mut z) = find_extra_field(extra, ZIP64_EXTRA_FIELD) {
                let z64 = |z: &mut Cursor, v: &mut u64| -> Result<()> {
                    if *v == 0xFFFF_FFFF {
                        *v = z.u64().ok_or_else(|| bad("ZIP64 extra field truncated"))?;
                    }
                    Ok(())
                };
                z64(&mut z, &mut uncompressed_size)?;
                z64(&mut z, &mut compressed_size)?;
                z64(&mut z, &mut local_header_offset)?;
            }
            let entry = Entry {
                method,
                crc32,
                compressed_size,
                uncompressed_size,
                local_header_offset,
                encrypted: flags & 1 != 0,
            };
            if entries.insert(name.clone(), entry).is_some() {
                return Err(fail(format!(
                    "entry '{name}' appears twice in the central directory"
                )));
            }
            names.push(name);
        }
        Ok(ZipArchive {
            path: path.to_path_buf(),
            bytes,
            names,
            entries,
        })
    }

    /// Entry names in central-directory order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The uncompressed content of `name`, checked against its CRC-32; borrowed when stored.
    pub fn read(&self, name: &str) -> Result<Cow<'a, [u8]>> {
        let fail =
            |msg: String| HeparError::format(&self.path, format!("zip entry '{name}': {msg}"));
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| fail("not in the archive".into()))?;
        if entry.encrypted {
            return Err(fail("is encrypted".into()));
        }
        let mut c = Cursor::at(
            self.bytes,
            usize::try_from(entry.local_header_offset).unwrap_or(usize::MAX),
        );
        if c.u32() != Some(LOCAL_FILE_HEADER) {
            return Err(fail(format!(
                "no local header at offset {}",
                entry.local_header_offset
            )));
        }
        let fixed = c
            .take(26)
            .ok_or_else(|| fail("local header truncated".into()))?;
        let name_len = u16::from_le_bytes([fixed[22], fixed[23]]) as usize;
        let extra_len = u16::from_le_bytes([fixed[24], fixed[25]]) as usize;
        c.take(name_len + extra_len)
            .ok_or_else(|| fail("local header truncated".into()))?;
        let size = usize::try_from(entry.compressed_size).unwrap_or(usize::MAX);
        let raw = c.take(size).ok_or_else(|| {
            fail(format!(
                "its {} bytes run past the end of the {}-byte file (truncated?)",
                size,
                self.bytes.len()
            ))
        })?;
        let content: Cow<'a, [u8]> = match entry.method {
            METHOD_STORED => {
                if entry.compressed_size != entry.uncompressed_size {
                    return Err(fail(
                        "stored entry with different compressed and uncompressed sizes".into(),
                    ));
                }
                Cow::Borrowed(raw)
            }
            METHOD_DEFLATE => {
                // Read at most one byte more than declared so a lying header cannot make us
                // inflate without bound.
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(raw)
                    .take(entry.uncompressed_size.saturating_add(1))
                    .read_to_end(&mut out)
                    .map_err(|e| fail(format!("deflate stream is corrupt: {e}")))?;
                if out.len() as u64 != entry.uncompressed_size {
                    return Err(fail(format!(
                        "inflates to {} bytes, the directory says {}",
                        out.len(),
                        entry.uncompressed_size
                    )));
                }
                Cow::Owned(out)
            }
            other => return Err(fail(format!("unsupported compression method {other}"))),
        };
        let mut crc = flate2::Crc::new();
        crc.update(&content);
        if crc.sum() != entry.crc32 {
            return Err(fail(format!(
                "CRC-32 mismatch (stored {:08x}, computed {:08x}): the file is corrupt",
                entry.crc32,
                crc.sum()
            )));
        }
        Ok(content)
    }
}

fn find_end_of_central_directory(bytes: &[u8]) -> Option<usize> {
    const FIXED: usize = 22;
    if bytes.len() < FIXED {
        return None;
    }
    let last = bytes.len() - FIXED;
    let first = last.saturating_sub(u16::MAX as usize);
    (first..=last)
        .rev()
        .find(|&p| bytes[p..p + 4] == END_OF_CENTRAL_DIRECTORY.to_le_bytes())
}

fn read_zip64_end(bytes: &[u8], eocd: usize) -> Option<(u64, u64, u64)> {
    let mut loc = Cursor::at(bytes, eocd.checked_sub(20)?);
    if loc.u32()? != ZIP64_END_LOCATOR {
        return None;
    }
    let _disk = loc.u32()?;
    let record = usize::try_from(loc.u64()?).ok()?;
    let mut r = Cursor::at(bytes, record);
    if r.u32()? != ZIP64_END_OF_CENTRAL_DIRECTORY {
        return None;
    }
    let _size = r.u64()?;
    let (_made_by, _needed) = (r.u16()?, r.u16()?);
    let (_disk, _cd_disk) = (r.u32()?, r.u32()?);
    let _entries_here = r.u64()?;
    Some((r.u64()?, r.u64()?, r.u64()?))
}

fn find_extra_field(extra: &[u8], id: u16) -> Option<Cursor<'_>> {
    let mut c = Cursor::at(extra, 0);
    while let (Some(field_id), Some(len)) = (c.u16(), c.u16()) {
        let body = c.take(len as usize)?;
        if field_id == id {
            return Some(Cursor::at(body, 0));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::test_support::ZipBuilder;

    #[test]
    fn reads_stored_and_deflated_entries() {
        let mut zip = ZipBuilder::new();
        zip.add_stored("a/one", b"hello");
        zip.add_deflated("a/two", &[7u8; 1000]);
        let bytes = zip.finish();
        let archive = ZipArchive::parse(Path::new("t.zip"), &bytes).unwrap();
        assert_eq!(archive.names(), &["a/one".to_string(), "a/two".to_string()]);
        assert_eq!(&*archive.read("a/one").unwrap(), b"hello");
        assert_eq!(&*archive.read("a/two").unwrap(), &[7u8; 1000][..]);
        let err = archive.read("a/three").unwrap_err().to_string();
        assert!(err.contains("t.zip") && err.contains("'a/three'"), "{err}");
    }

    #[test]
    fn reads_zip64_directories() {
        let mut zip = ZipBuilder::new_zip64();
        zip.add_stored("big/data.pkl", b"pickle bytes");
        zip.add_deflated("big/data/0", &[3u8; 5000]);
        let bytes = zip.finish();
        let archive = ZipArchive::parse(Path::new("z64.zip"), &bytes).unwrap();
        assert_eq!(&*archive.read("big/data.pkl").unwrap(), b"pickle bytes");
        assert_eq!(&*archive.read("big/data/0").unwrap(), &[3u8; 5000][..]);
        for len in 0..bytes.len() {
            if let Ok(a) = ZipArchive::parse(Path::new("t"), &bytes[..len]) {
                assert!(
                    a.read("big/data/0").is_err(),
                    "truncated to {len} bytes and still read"
                );
            }
        }
    }

    #[test]
    fn detects_corrupt_content_by_crc() {
        let mut zip = ZipBuilder::new();
        zip.add_stored("x", b"payload");
        let mut bytes = zip.finish();
        let at = bytes.windows(7).position(|w| w == b"payload").unwrap();
        bytes[at] ^= 0x40;
        let archive = ZipArchive::parse(Path::new("c.zip"), &bytes).unwrap();
        let err = archive.read("x").unwrap_err().to_string();
        assert!(err.contains("CRC-32 mismatch"), "{err}");
    }

    #[test]
    fn truncations_and_flips_never_panic() {
        let mut zip = ZipBuilder::new();
        zip.add_stored("d/data.pkl", &[1, 2, 3, 4, 5, 6, 7, 8]);
        zip.add_deflated(
            "d/data/0",
            &(0..=255u8).cycle().take(3000).collect::<Vec<_>>(),
        );
        let bytes = zip.finish();
        for len in 0..bytes.len() {
            if let Ok(a) = ZipArchive::parse(Path::new("t"), &bytes[..len]) {
                for n in a.names().to_vec() {
                    let _ = a.read(&n);
                }
            }
        }
        for pos in 0..bytes.len() {
            let mut b = bytes.clone();
            b[pos] ^= 0xA5;
            if let Ok(a) = ZipArchive::parse(Path::new("t"), &b) {
                for n in a.names().to_vec() {
                    let _ = a.read(&n);
                }
            }
        }
    }
}
