//! Writers for the tests only: a pickle opcode emitter and a zip builder, enough to make
//! `torch.save`-style files with dtypes, strides and offsets the seed checkpoints do not have.

pub struct PickleBuilder {
    pub bytes: Vec<u8>,
}

impl PickleBuilder {
    pub fn new() -> PickleBuilder {
        PickleBuilder {
            bytes: vec![0x80, 2],
        }
    }
    pub fn op(&mut self, op: u8) -> &mut Self {
        self.bytes.push(op);
        self
    }
    pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.bytes.push(b'c');
        self.bytes.extend(format!("{module}\n{name}\n").bytes());
        self
    }
    pub fn unicode(&mut self, s: &str) -> &mut Self {
        self.bytes.push(b'X');
        self.bytes.extend((s.len() as u32).to_le_bytes());
        self.bytes.extend(s.bytes());
        self
    }
    pub fn int(&mut self, v: i64) -> &mut Self {
        if (0..256).contains(&v) {
            self.bytes.extend([b'K', v as u8]);
        } else if (0..65536).contains(&v) {
            self.bytes.push(b'M');
            self.bytes.extend((v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.bytes.push(b'J');
            self.bytes.extend((v as i32).to_le_bytes());
        } else {
            self.bytes.extend([0x8a, 8]);
            self.bytes.extend(v.to_le_bytes());
        }
        self
    }
    pub fn mark(&mut self) -> &mut Self {
        self.op(b'(')
    }
    pub fn tuple(&mut self) -> &mut Self {
        self.op(b't')
    }
    pub fn empty_tuple(&mut self) -> &mut Self {
        self.op(b')')
    }
    pub fn empty_dict(&mut self) -> &mut Self {
        self.op(b'}')
    }
    pub fn reduce(&mut self) -> &mut Self {
        self.op(b'R')
    }
    pub fn build(&mut self) -> &mut Self {
        self.op(b'b')
    }
    pub fn set_items(&mut self) -> &mut Self {
        self.op(b'u')
    }
    pub fn stop(&mut self) -> &mut Self {
        self.op(b'.')
    }
    pub fn put(&mut self, k: u8) -> &mut Self {
        self.bytes.extend([b'q', k]);
        self
    }
    pub fn get(&mut self, k: u8) -> &mut Self {
        self.bytes.extend([b'h', k]);
        self
    }
    pub fn int_tuple(&mut self, values: &[i64]) -> &mut Self {
        self.mark();
        for &v in values {
            self.int(v);
        }
        self.tuple()
    }
}

/// One tensor of a synthetic state_dict: `storage` is a key into the archive's `data/` folder.
pub struct TensorSpec<'a> {
    pub name: &'a str,
    pub storage_class: &'a str,
    pub storage: &'a str,
    pub storage_numel: i64,
    pub offset: i64,
    pub size: &'a [i64],
    pub stride: &'a [i64],
}

/// The pickle `torch.save(state_dict)` writes for these tensors (OrderedDict, rebuild_tensor_v2,
/// persistent storage ids tagged `cuda:0`, an empty `_metadata` set by BUILD).
pub fn state_dict_pickle(tensors: &[TensorSpec]) -> Vec<u8> {
    let mut p = PickleBuilder::new();
    p.global("collections", "OrderedDict")
        .empty_tuple()
        .reduce()
        .mark();
    for t in tensors {
        p.unicode(t.name)
            .global("torch._utils", "_rebuild_tensor_v2")
            .mark();
        p.mark()
            .unicode("storage")
            .global("torch", t.storage_class)
            .unicode(t.storage)
            .unicode("cuda:0");
        p.int(t.storage_numel).tuple().op(b'Q');
        p.int(t.offset)
            .int_tuple(t.size)
            .int_tuple(t.stride)
            .op(0x89);
        p.global("collections", "OrderedDict")
            .empty_tuple()
            .reduce()
            .tuple()
            .reduce();
    }
    p.set_items();
    p.global("collections", "OrderedDict")
        .empty_tuple()
        .reduce()
        .build();
    p.stop();
    p.bytes
}

pub struct ZipBuilder {
    out: Vec<u8>,
    central: Vec<u8>,
    count: u16,
    /// Write sizes and offsets through ZIP64 fields, as writers do for archives over 4 GiB.
    zip64: bool,
}

impl ZipBuilder {
    pub fn new() -> ZipBuilder {
        ZipBuilder {
            out: Vec::new(),
            central: Vec::new(),
            count: 0,
            zip64: false,
        }
    }

    pub fn new_zip64() -> ZipBuilder {
        ZipBuilder {
            zip64: true,
            ..ZipBuilder::new()
        }
    }

    pub fn add_stored(&mut self, name: &str, content: &[u8]) {
        self.add(name, content, content.to_vec(), 0);
    }

    pub fn add_deflated(&mut self, name: &str, content: &[u8]) {
        use std::io::Write;
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(content).unwrap();
        self.add(name, content, enc.finish().unwrap(), 8);
    }

    fn add(&mut self, name: &str, content: &[u8], stored: Vec<u8>, method: u16) {
        let mut crc = flate2::Crc::new();
        crc.update(content);
        let offset = self.out.len() as u64;
        let header = |v: &mut Vec<u8>, sizes: [u32; 2], extra_len: u16| {
            v.extend(20u16.to_le_bytes()); // version needed
            v.extend(0u16.to_le_bytes()); // flags
            v.extend(method.to_le_bytes());
            v.extend([0u8; 4]); // time, date
            v.extend(crc.sum().to_le_bytes());
            v.extend(sizes[0].to_le_bytes()); // compressed
            v.extend(sizes[1].to_le_bytes()); // uncompressed
            v.extend((name.len() as u16).to_le_bytes());
            v.extend(extra_len.to_le_bytes());
        };
        self.out.extend(0x0403_4b50u32.to_le_bytes());
        header(
            &mut self.out,
            [stored.len() as u32, content.len() as u32],
            0,
        );
        self.out.extend(name.bytes());
        self.out.extend(&stored);

        self.central.extend(0x0201_4b50u32.to_le_bytes());
        self.central.extend(45u16.to_le_bytes()); // version made by
        if self.zip64 {
            header(&mut self.central, [u32::MAX, u32::MAX], 28);
        } else {
            header(
                &mut self.central,
                [stored.len() as u32, content.len() as u32],
                0,
            );
        }
        self.central.extend([0u8; 6]); // comment length, disk, internal attributes
        self.central.extend([0u8; 4]); // external attributes
        let offset_field = if self.zip64 { u32::MAX } else { offset as u32 };
        self.central.extend(offset_field.to_le_bytes());
        self.central.extend(name.bytes());
        if self.zip64 {
            self.central.extend(1u16.to_le_bytes());
            self.central.extend(24u16.to_le_bytes());
            self.central.extend((content.len() as u64).to_le_bytes());
            self.central.extend((stored.len() as u64).to_le_bytes());
            self.central.extend(offset.to_le_bytes());
        }
        self.count += 1;
    }

    pub fn finish(mut self) -> Vec<u8> {
        let cd_offset = self.out.len() as u64;
        let cd_size = self.central.len() as u64;
        self.out.extend(&self.central);
        if self.zip64 {
            let record = self.out.len() as u64;
            self.out.extend(0x0606_4b50u32.to_le_bytes());
            self.out.extend(44u64.to_le_bytes());
            self.out.extend([45u8, 0, 45, 0]); // versions
            self.out.extend([0u8; 8]); // disks
            self.out.extend((self.count as u64).to_le_bytes());
            self.out.extend((self.count as u64).to_le_bytes());
            self.out.extend(cd_size.to_le_bytes());
            self.out.extend(cd_offset.to_le_bytes());
            self.out.extend(0x0706_4b50u32.to_le_bytes());
            self.out.extend(0u32.to_le_bytes());
            self.out.extend(record.to_le_bytes());
            self.out.extend(1u32.to_le_bytes());
        }
        let (count, size, offset) = if self.zip64 {
            (u16::MAX, u32::MAX, u32::MAX)
        } else {
            (self.count, cd_size as u32, cd_offset as u32)
        };
        self.out.extend(0x0605_4b50u32.to_le_bytes());
        self.out.extend([0u8; 4]);
        self.out.extend(count.to_le_bytes());
        self.out.extend(count.to_le_bytes());
        self.out.extend(size.to_le_bytes());
        self.out.extend(offset.to_le_bytes());
        self.out.extend(0u16.to_le_bytes());
        self.out
    }
}
