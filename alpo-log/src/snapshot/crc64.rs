//! CRC-64/XZ (the ECMA-182 polynomial, reflected), the checksum over a snapshot's whole image.
//!
//! Hand-written rather than a crate: about forty lines, tables built at compile time, and checked
//! against the catalogue's check value. Slicing-by-8 (eight tables of 256 entries, 16 KiB)
//! handles eight bytes per step, so checking an image costs far less than reading it from disk.
//! Parameters: width 64, poly `0x42F0E1EBA9EA3693` (reflected `0xC96C5795D7870F42`), init and
//! xorout all ones, reflected in and out; check value of `"123456789"` is `0x995DC9BBDF1939FA`.

/// The reflected ECMA-182 polynomial.
const POLY_REFLECTED: u64 = 0xC96C_5795_D787_0F42;

/// `TABLES[0]` is the byte-at-a-time table; `TABLES[k][b]` advances `TABLES[k - 1][b]` by one
/// more zero byte, so eight bytes fold in one step.
static TABLES: [[u64; 256]; 8] = build_tables();

#[allow(
    clippy::cast_possible_truncation,
    reason = "indices below 256 fit every width; const fn cannot use try_from"
)]
const fn build_tables() -> [[u64; 256]; 8] {
    let mut tables = [[0u64; 256]; 8];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][byte] = crc;
        byte += 1;
    }
    let mut byte = 0;
    while byte < 256 {
        let mut slice = 1;
        while slice < 8 {
            let previous = tables[slice - 1][byte];
            tables[slice][byte] = (previous >> 8) ^ tables[0][(previous & 0xff) as usize];
            slice += 1;
        }
        byte += 1;
    }
    tables
}

/// A running CRC-64/XZ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Crc64 {
    state: u64,
}

impl Crc64 {
    /// A CRC over no bytes yet.
    pub(crate) fn new() -> Crc64 {
        Crc64 { state: !0 }
    }

    /// Folds `bytes` in.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut crc = self.state;
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(word);
            let b = (crc ^ u64::from_le_bytes(eight)).to_le_bytes();
            crc = TABLES[7][usize::from(b[0])]
                ^ TABLES[6][usize::from(b[1])]
                ^ TABLES[5][usize::from(b[2])]
                ^ TABLES[4][usize::from(b[3])]
                ^ TABLES[3][usize::from(b[4])]
                ^ TABLES[2][usize::from(b[5])]
                ^ TABLES[1][usize::from(b[6])]
                ^ TABLES[0][usize::from(b[7])];
        }
        for byte in words.remainder() {
            let low = crc.to_le_bytes()[0] ^ byte;
            crc = TABLES[0][usize::from(low)] ^ (crc >> 8);
        }
        self.state = crc;
    }

    /// The checksum of every byte folded in so far.
    pub(crate) fn value(&self) -> u64 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc64(bytes: &[u8]) -> u64 {
        let mut crc = Crc64::new();
        crc.update(bytes);
        crc.value()
    }

    #[test]
    fn catalogue_check_value() {
        assert_eq!(crc64(b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(crc64(b""), 0);
    }

    #[test]
    fn slicing_agrees_with_bytewise_at_every_split() {
        let data: Vec<u8> = (0..100u8)
            .map(|i| i.wrapping_mul(7).wrapping_add(3))
            .collect();
        let mut bytewise = Crc64::new();
        for byte in &data {
            bytewise.update(std::slice::from_ref(byte));
        }
        for split in 0..data.len() {
            let mut crc = Crc64::new();
            crc.update(&data[..split]);
            crc.update(&data[split..]);
            assert_eq!(crc.value(), bytewise.value(), "split {split}");
        }
    }
}
