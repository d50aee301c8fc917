//! Whether an executable is statically linked: it has no `PT_INTERP` program header, so it
//! runs in an image that holds no dynamic loader or libraries.

/// `Ok(())` for a static 64-bit little-endian ELF executable, else why not.
pub fn is_static_elf(data: &[u8]) -> Result<(), String> {
    const PT_INTERP: u32 = 3;
    if data.len() < 64 || &data[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if data[4] != 2 || data[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let phoff = data
        .get(0x20..0x28)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .ok_or("truncated ELF header")?;
    let phentsize = u16_at(0x36).ok_or("truncated ELF header")? as usize;
    let phnum = u16_at(0x38).ok_or("truncated ELF header")? as usize;
    let phoff = usize::try_from(phoff).map_err(|_| "bad program header offset")?;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let kind = data
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or("truncated program headers")?;
        if kind == PT_INTERP {
            return Err("dynamically linked (it names a program interpreter)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_pause_binary_is_static() {
        assert_eq!(is_static_elf(crate::image::PAUSE_BINARY), Ok(()));
    }

    #[test]
    fn a_dynamic_binary_and_junk_are_rejected() {
        // Every Debian machine has a dynamically linked /bin/ls.
        let ls = std::fs::read("/bin/ls").unwrap();
        assert!(is_static_elf(&ls)
            .unwrap_err()
            .contains("dynamically linked"));
        assert!(is_static_elf(b"#!/bin/sh\n").is_err());
        assert!(is_static_elf(&ls[..70]).is_err());
    }
}
