//! Reading one file out of a zip archive (a Python wheel): the central
//! directory at the end names each member with its sizes, method and where
//! its local header is; stored and deflated members are read. No ZIP64 (a
//! wheel llmclis takes is far below 4 GiB) and no encryption.

use std::io::Read;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

const EOCD: u32 = 0x0605_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

/// The bytes of `name` in the archive `zip`.
pub fn read_member(zip: &[u8], name: &str) -> Result<Vec<u8>, String> {
    // The end record is the last 22 bytes, plus a comment of up to 64 KiB.
    let floor = zip.len().saturating_sub(22 + 65_535);
    let eocd = (floor..zip.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(zip, i) == Some(EOCD))
        .ok_or("not a zip archive (no end of central directory)")?;
    let entries = u16_at(zip, eocd + 10).ok_or("a cut-off zip")? as usize;
    let mut at = u32_at(zip, eocd + 16).ok_or("a cut-off zip")? as usize;
    for _ in 0..entries {
        if u32_at(zip, at) != Some(CENTRAL) {
            return Err("a damaged central directory".into());
        }
        let method = u16_at(zip, at + 10).ok_or("a cut-off zip")?;
        let packed = u32_at(zip, at + 20).ok_or("a cut-off zip")? as usize;
        let size = u32_at(zip, at + 24).ok_or("a cut-off zip")? as usize;
        let name_len = u16_at(zip, at + 28).ok_or("a cut-off zip")? as usize;
        let extra_len = u16_at(zip, at + 30).ok_or("a cut-off zip")? as usize;
        let comment_len = u16_at(zip, at + 32).ok_or("a cut-off zip")? as usize;
        let local = u32_at(zip, at + 42).ok_or("a cut-off zip")? as usize;
        let this = zip
            .get(at + 46..at + 46 + name_len)
            .ok_or("a cut-off zip")?;
        at += 46 + name_len + extra_len + comment_len;
        if this != name.as_bytes() {
            continue;
        }
        if u32_at(zip, local) != Some(LOCAL) {
            return Err(format!("{name}: a damaged local header"));
        }
        let start = local
            + 30
            + u16_at(zip, local + 26).ok_or("a cut-off zip")? as usize
            + u16_at(zip, local + 28).ok_or("a cut-off zip")? as usize;
        let data = zip
            .get(start..start + packed)
            .ok_or_else(|| format!("{name}: the archive is cut off"))?;
        let out = match method {
            0 => data.to_vec(),
            8 => {
                let mut out = Vec::with_capacity(size);
                flate2::read::DeflateDecoder::new(data)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("{name}: {e}"))?;
                out
            }
            m => return Err(format!("{name}: compression method {m} is not read here")),
        };
        if out.len() != size {
            return Err(format!(
                "{name}: {} bytes, the directory says {size}",
                out.len()
            ));
        }
        return Ok(out);
    }
    Err(format!("no {name} in the archive"))
}

#[cfg(test)]
mod tests {
    use super::read_member;

    /// A zip with one stored and one deflated member, laid out by hand as
    /// zip writers lay them out (the wheel test uses Python's zipfile).
    fn sample() -> Vec<u8> {
        use std::io::Write;
        let mut deflated = Vec::new();
        let mut enc =
            flate2::write::DeflateEncoder::new(&mut deflated, flate2::Compression::default());
        enc.write_all(b"hello hello hello hello").unwrap();
        enc.finish().unwrap();
        let members: [(&str, u16, &[u8], usize); 2] = [
            ("a/stored.txt", 0, b"plain", 5),
            ("b/deflated.txt", 8, &deflated, 23),
        ];
        let mut zip = Vec::new();
        let mut central = Vec::new();
        for (name, method, data, size) in members {
            let offset = zip.len() as u32;
            zip.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            zip.extend_from_slice(&[20, 0, 0, 0]);
            zip.extend_from_slice(&method.to_le_bytes());
            zip.extend_from_slice(&[0; 8]); // time, date, crc (not checked)
            zip.extend_from_slice(&(data.len() as u32).to_le_bytes());
            zip.extend_from_slice(&(size as u32).to_le_bytes());
            zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
            zip.extend_from_slice(&0u16.to_le_bytes());
            zip.extend_from_slice(name.as_bytes());
            zip.extend_from_slice(data);
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(size as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_at = zip.len() as u32;
        zip.extend_from_slice(&central);
        zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        zip.extend_from_slice(&[0; 4]);
        zip.extend_from_slice(&2u16.to_le_bytes());
        zip.extend_from_slice(&2u16.to_le_bytes());
        zip.extend_from_slice(&(central.len() as u32).to_le_bytes());
        zip.extend_from_slice(&cd_at.to_le_bytes());
        zip.extend_from_slice(&0u16.to_le_bytes());
        zip
    }

    #[test]
    fn stored_and_deflated_members_come_out_and_damage_is_named() {
        let z = sample();
        assert_eq!(read_member(&z, "a/stored.txt").unwrap(), b"plain");
        assert_eq!(
            read_member(&z, "b/deflated.txt").unwrap(),
            b"hello hello hello hello"
        );
        assert!(read_member(&z, "c").unwrap_err().contains("no c"));
        assert!(read_member(&z[..z.len() / 2], "a/stored.txt").is_err());
        assert!(
            read_member(b"not a zip at all", "x")
                .unwrap_err()
                .contains("not a zip")
        );
    }
}
